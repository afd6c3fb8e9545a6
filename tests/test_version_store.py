"""The engine's version store: it holds the versions still to be read, no more (at most 2M + 2 for M
workers), so memory does not grow with the largest staleness (issue 13, goal 4)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from asyncsim.cluster import ClusterConfig, simulate
from asyncsim.engine import _version_slots, run
from asyncsim.optim import heavy_ball
from asyncsim.problems import make_problem
from asyncsim.trace import Trace


def replay(trace: Trace, steps: int) -> tuple[int, int]:
    """Walk the store of ``trace``: every read finds its version in its slot (none was overwritten
    before its last use); return (slots, the most versions still to be read at once)."""
    read, prev = trace.read_version[:steps], trace.previous_read[:steps]
    slot, n_slots = _version_slots(read, prev, steps)
    assert slot.shape == (steps + 1,) and slot.min() == 0 and slot.max() == n_slots - 1
    holder = np.full(n_slots, -1)
    holder[slot[0]] = 0
    last_use = np.arange(steps + 1)
    for t in range(steps):
        for v in (read[t], prev[t]):
            last_use[v] = max(last_use[v], t)
    most = 0
    for t in range(steps):
        needed = [t, read[t]] + ([prev[t]] if prev[t] >= 0 else [])
        for v in needed:
            assert holder[slot[v]] == v, f"step {t}: version {v} was overwritten"
        holder[slot[t + 1]] = t + 1
        # versions still to be read at step t, and the one it writes
        live = np.count_nonzero(last_use[: t + 1] >= t) + 1
        most = max(most, live)
    return n_slots, most


@pytest.mark.parametrize(
    "config",
    [
        ClusterConfig(1),
        ClusterConfig(4),
        ClusterConfig(16),
        ClusterConfig(8, mode="groups", n_groups=4),
    ],
    ids=["M1", "M4", "M16", "M8-groups"],
)
def test_store_holds_only_the_versions_still_to_be_read(config: ClusterConfig) -> None:
    trace = simulate(config, 3000, rng=7)
    n_slots, most = replay(trace, 3000)
    assert n_slots == most  # one slot per version still to be read, at the busiest step
    assert n_slots <= 2 * config.n_workers + 2


def test_store_does_not_grow_with_the_largest_staleness() -> None:
    steps = 5000
    staleness = np.minimum(np.arange(steps), 3)  # four equal workers: staleness 3 after warm-up
    plain = Trace.from_staleness(staleness.copy())
    staleness[-1] = steps - 1  # the last update reads version 0
    stale = Trace.from_staleness(staleness)
    n_plain, _ = replay(plain, steps)
    n_stale, most = replay(stale, steps)
    assert n_plain == 5 and n_stale == n_plain + 1 == most  # version 0 kept, nothing else


def test_results_do_not_depend_on_where_versions_are_kept() -> None:
    """A trace whose staleness reaches back far (a slot kept for long amid reused ones) gives the
    same run as the plain recursion written out with every past version."""
    steps, lr, mu = 400, 0.05, 0.5
    rng = np.random.default_rng(3)
    staleness = np.minimum(np.arange(steps), rng.integers(0, 6, steps))
    staleness[::97] = np.arange(steps)[::97]  # now and then the first version
    trace = Trace.from_staleness(staleness)
    problem = make_problem("q10")
    hist = run(problem, heavy_ball(lr, mu), trace, steps, record_every=None)
    past = [problem.init_params(1)[0]]
    v = np.zeros(problem.dim)
    for t in range(steps):
        g = past[trace.read_version[t]] * problem.curvatures
        v = mu * v - lr * g
        past.append(past[-1] + v)
    np.testing.assert_array_equal(hist.final_params[0], past[-1])


def _peak_bytes(trace: Trace, steps: int) -> int:
    problem = make_problem("nq50")
    transform = heavy_ball(np.full(128, 0.05), 0.5)
    tracemalloc.start()
    try:
        # common random numbers, as a sweep chunk: one noise draw for all 128
        run(
            problem,
            transform,
            trace,
            steps,
            rng=[np.random.SeedSequence(0)] * 128,
            record_every=100,
        )
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_peak_memory_does_not_depend_on_the_largest_staleness() -> None:
    """Goal 4: a 30,000-step nq50 run at B = 128 whose trace has one update of staleness 29,999
    peaks within 25% of the same run without it (with the store: 28.0 MB against 27.9 MB; with the
    ring of max staleness + 2 versions before it: 1.6 GB against 71 MB)."""
    steps = 30_000
    _peak_bytes(Trace.from_staleness(np.minimum(np.arange(100), 3)), 100)  # first-use allocations
    staleness = np.minimum(np.arange(steps), 3)
    plain = _peak_bytes(Trace.from_staleness(staleness.copy()), steps)
    staleness[-1] = steps - 1
    stale = _peak_bytes(Trace.from_staleness(staleness), steps)
    assert stale <= 1.25 * plain, f"peak {stale / 1e6:.1f} MB against {plain / 1e6:.1f} MB"


def test_compiled_and_python_slot_assignment_agree() -> None:
    from asyncsim import _kernels

    compiled = _kernels.compiled_assign_slots()
    if compiled is _kernels.assign_slots:
        pytest.skip(
            "numba unavailable (not installed, or ASYNCSIM_KERNELS=numpy): Python path only"
        )
    trace = simulate(ClusterConfig(6), 2000, rng=2)
    last_use = np.arange(2001)
    np.maximum.at(last_use, trace.read_version, np.arange(2000))
    order = np.argsort(last_use, kind="stable")
    slot, n = compiled(order, last_use, 2000)
    slot_py, n_py = _kernels.assign_slots(order, last_use, 2000)
    assert n == n_py
    np.testing.assert_array_equal(slot, slot_py)
