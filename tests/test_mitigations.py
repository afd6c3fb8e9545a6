"""Staleness mitigations: the engine's read-point and publication hooks, each method's hand-computed
steps on a 2-D quadratic with a written-out staleness sequence, its batch against its single runs,
its synchronous limit (τ ≡ 0), and its argument checks."""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from asyncsim.cluster import ClusterConfig, simulate
from asyncsim.engine import run
from asyncsim.mitigations import (
    METHODS,
    dana,
    dc_asgd,
    delay_adaptive,
    fedasync,
    fedbuff,
    gap_aware,
    ringmaster,
    staleness_aware,
)
from asyncsim.optim import GradientTransformation, adam, heavy_ball, nesterov, sgd
from asyncsim.problems import NoisyQuadratic
from asyncsim.sweep import Sweep
from asyncsim.trace import StalenessLaw, Trace
from asyncsim.yellowfin import yellowfin_tuner

# f(w) = ½ (w₁² + ½ w₂²): g(w) = (w₁, w₂/2); from w0 = (1, -2), g(w0) = (1, -1).
QUADRATIC = NoisyQuadratic(curvatures=[1.0, 0.5], w0=[1.0, -2.0])
H = np.array([1.0, 0.5])
W0 = np.array([1.0, -2.0])
# Four arrivals with staleness 0, 1, 2, 1: they read versions 0, 0, 0 and 2.
TRACE = Trace.from_staleness(np.array([0, 1, 2, 1]))
NOISY = NoisyQuadratic(curvatures=[1.0, 0.3, 0.1], noise=0.2, w0=[1.0, -1.0, 2.0])


def grad(w: np.ndarray) -> np.ndarray:
    return H * w


def path(transform: GradientTransformation, trace: Trace = TRACE) -> np.ndarray:
    """The parameters after 0, 1, ..., n arrivals of ``trace``, shape (n + 1, 2)."""
    hist = run(QUADRATIC, transform, trace, len(trace), record_every=1, record_params=True)
    return hist.params[:, 0]


def cluster_trace(workers: int = 4, n: int = 300, seed: int = 5) -> Trace:
    return simulate(ClusterConfig(workers), n, rng=seed)


# ------------------------------------------------------------------------------------------ engine
class _Probe(NamedTuple):
    published: np.ndarray


def _probe(seen: list, *, publish: Any = None, read_point: Any = None) -> GradientTransformation:
    """SGD at step 0.5 recording each step's context; ``publish(t)`` says whether arrival t
    publishes (None: a state without ``published``, so every arrival does)."""

    def init(params):
        return _Probe(np.ones(params.shape[0], dtype=bool)) if publish else ()

    def update(grads, state, params, context):
        seen.append(
            (
                context.staleness.copy(),
                context.read_params.copy(),
                context.previous_read_params().copy(),
            )
        )
        if publish is None:
            return -0.5 * grads, state
        keep = np.full(params.shape[0], publish(context.step))
        return np.where(keep[:, None], -0.5 * grads, 0.0), _Probe(keep)

    needs = frozenset({"reads"})
    return GradientTransformation(init, update, None, "probe", {}, needs, read_point)


def test_context_staleness_is_the_trace_staleness_when_every_arrival_publishes():
    seen: list = []
    path(_probe(seen))
    assert [int(tau[0]) for tau, _, _ in seen] == [0, 1, 2, 1]


def test_staleness_counts_published_versions_only():
    # arrival 1 publishes nothing: arrival 2 (read version 0) is 1 published version old, not 2,
    # and arrival 3 (read version 2, which holds version 1's parameters) is 1 old
    seen: list = []
    params = path(_probe(seen, publish=lambda t: t != 1))
    assert [int(tau[0]) for tau, _, _ in seen] == [0, 1, 1, 1]
    assert_array_equal(params[2], params[1])  # the held-back arrival left the parameters
    assert_array_equal(seen[3][1][0], params[1])  # a read between publications: the last one


def test_read_point_is_what_workers_read_and_their_previous_read():
    # read point x + (1, 1); two workers alternating, each reading after its own write
    trace = Trace.from_delays([0, 1, 1, 1], workers=[0, 1, 0, 1])  # reads versions 0, 0, 1, 2
    seen: list = []
    params = path(_probe(seen, read_point=lambda state, x: x + 1.0), trace)
    reads = [read[0] for _, read, _ in seen]
    for t, version in enumerate([0, 0, 1, 2]):
        assert_array_equal(reads[t], params[version] + 1.0)
    # the previous read of the writer of arrival 2 (worker 0) is its read at arrival 0
    assert_array_equal(seen[2][2][0], params[0] + 1.0)
    assert_allclose(params[1], W0 - 0.5 * grad(W0 + 1.0))  # the gradient is taken at the read


def test_expected_dynamics_refuses_methods_that_need_reads():
    law = StalenessLaw.geometric(4)
    for transform in (staleness_aware(0.1), dana(0.1, 0.5)):
        with pytest.raises(ValueError, match="realized reads"):
            run(QUADRATIC, transform, law, 10)


def test_dana_refuses_a_trace_without_writers():
    with pytest.raises(ValueError, match="writer ids"):
        run(QUADRATIC, dana(0.1, 0.5), TRACE, 4)


def test_fedbuff_with_one_slot_and_thresholding_above_every_staleness_are_async_sgd_exactly():
    trace = cluster_trace(workers=8)
    lr = np.array([0.05, 0.1, 0.2])
    baseline = run(NOISY, sgd(lr), trace, len(trace), rng=[3] * 3).final_params
    for transform in (
        fedbuff(lr, 1, staleness_weight=False),
        ringmaster(lr, int(trace.staleness.max()) + 1),
    ):
        assert_array_equal(
            run(NOISY, transform, trace, len(trace), rng=[3] * 3).final_params, baseline
        )


# ------------------------------------------------------------------------------------------ hand steps
def test_staleness_aware_hand_steps():
    # steps 0.5 g / max(τ, 1): g(w0) three times at 0.5, 0.5, 0.25; then g(w2) = (0, -0.5) at 0.5
    expected = [[1, -2], [0.5, -1.5], [0, -1], [-0.25, -0.75], [-0.25, -0.5]]
    assert_allclose(path(staleness_aware(0.5)), expected)


def test_delay_adaptive_hand_steps():
    # τ_C = 0.5: factors 1, 0.5/1, 0.5/2, 0.5/1; the last reads w2 = (0.25, -1.25)
    expected = [[1, -2], [0.5, -1.5], [0.25, -1.25], [0.125, -1.125], [0.0625, -0.96875]]
    assert_allclose(path(delay_adaptive(0.5, 0.5)), expected)


def test_ringmaster_hand_steps():
    # R = 2: arrival 2 (τ = 2) is discarded; arrival 3 read version 2 and nothing was published
    # since, so its τ is 0 and g(w2) = (0, -0.5) is applied
    expected = [[1, -2], [0.5, -1.5], [0, -1], [0, -1], [0, -0.75]]
    assert_allclose(path(ringmaster(0.5, 2)), expected)


def test_fedbuff_hand_steps():
    # K = 2: arrivals 0, 1 (τ = 0, 0: nothing was published in between) make one step with the mean
    # of two g(w0); arrival 2 (τ = 1, weight 1/√2) waits; arrival 3 reads w2, τ = 0
    w2 = W0 - 0.5 * grad(W0)
    buffered = grad(W0) / np.sqrt(2.0) + grad(w2)
    expected = [W0, W0, w2, w2, w2 - 0.5 * buffered / 2]
    assert_allclose(path(fedbuff(0.5, 2)), expected)
    assert_allclose(expected[-1], [0.19822330, -1.13572330], atol=1e-8)


def test_fedasync_hand_steps():
    # x ← x + α_t ((x_read - η g(x_read)) - x), η = 0.5, α = 0.6 s(τ), τ = 0, 1, 2, 1
    def steps(alphas):
        w = [W0]
        for alpha, version in zip(alphas, [0, 0, 0, 2], strict=True):
            read = w[version]
            w.append(w[-1] + alpha * ((read - 0.5 * grad(read)) - w[-1]))
        return np.array(w)

    taus = np.array([0, 1, 2, 1])
    assert_allclose(path(fedasync(0.5, 0.6, "constant")), steps(np.full(4, 0.6)))
    assert_allclose(path(fedasync(0.5)), [[1, -2], [0.7, -1.7], [0.58, -1.58], [0.532, -1.532],
                                          [0.3868, -1.3238]])  # fmt: skip
    assert_allclose(path(fedasync(0.5, 0.6, "polynomial")), steps(0.6 / np.sqrt(taus + 1)))
    hinge = np.where(taus <= 1, 1.0, 1.0 / (10 * (taus - 1) + 1))  # a = 10, b = 1
    assert_allclose(path(fedasync(0.5, 0.6, "hinge", b=1.0)), steps(0.6 * hinge))


def test_dc_asgd_hand_steps():
    # λ = 1: g̃ = g + g ⊙ g ⊙ (x - x_read)
    expected = [[1, -2], [0.5, -1.5], [0.25, -1.25], [0.125, -1.125], [0.00390625, -0.8369140625]]
    assert_allclose(path(dc_asgd(0.5, 1.0)), expected)


def test_dc_asgd_adaptive_hand_steps():
    # λ_t = λ₀/√(MS_t + ε), MS_t = m MS_{t-1} + (1 - m) g ⊙ g; λ₀ = 1, m = 0.5, ε = 1e-7
    w, ms = [W0], np.zeros(2)
    for version in [0, 0, 0, 2]:
        g = grad(w[version])
        ms = 0.5 * ms + 0.5 * g * g
        compensated = g + g * g * (w[-1] - w[version]) / np.sqrt(ms + 1e-7)
        w.append(w[-1] - 0.5 * compensated)
    assert_allclose(path(dc_asgd(0.5, 1.0, adaptive=True, decay=0.5)), w)
    # the first stale step by hand: MS = 0.75, λ = 1/√0.75, x - x_read = (-0.5, 0.5)
    first = 1 - 0.5 / np.sqrt(0.75 + 1e-7)
    assert_allclose(w[2], [0.5 - 0.5 * first, -1.5 + 0.5 * first])


def test_gap_aware_hand_steps():
    # β = 0.5: v̂ = 1 for the three g(w0); C = η (1 + ε); gaps |x - x_read| = 0, 0.5, 0.75
    # divide g(w0) by 1, 2, 2.5
    expected_first = [[1, -2], [0.5, -1.5], [0.25, -1.25], [0.05, -1.05]]
    got = path(gap_aware(0.5, beta=0.5))
    assert_allclose(got[:4], expected_first, rtol=1e-7)
    g = grad(np.array([0.25, -1.25]))  # arrival 3 reads w2
    v = (0.5 * 0.875 + 0.5 * g * g) / (1 - 0.5**4)  # 0.875: the EMA after three g ⊙ g = 1
    gap = 1 + np.abs(got[3] - got[2]) / (0.5 * (np.sqrt(v) + 1e-8))
    assert_allclose(got[4], got[3] - 0.5 * g / gap)


def test_gap_aware_with_momentum_hand_steps():
    w, v, u = [W0], np.zeros(2), np.zeros(2)
    for k, version in enumerate([0, 0, 0, 2], start=1):
        g = grad(w[version])
        v = 0.9 * v + 0.1 * g * g
        gap = 1 + np.abs(w[-1] - w[version]) / (0.5 * (np.sqrt(v / (1 - 0.9**k)) + 1e-8))
        u = 0.5 * u - 0.5 * g / gap
        w.append(w[-1] + u)
    assert_allclose(path(gap_aware(0.5, 0.5, beta=0.9)), w)


def test_dana_hand_steps():
    # two workers alternating; γ = 0.5; workers read x + γ (u₀ + u₁)
    trace = Trace.from_delays([0, 1, 1, 1], workers=[0, 1, 0, 1])  # reads versions 0, 0, 1, 2
    expected = [[1, -2], [0.5, -1.5], [0, -1], [-0.375, -0.4375], [-0.375, -0.0625]]
    assert_allclose(path(dana(0.5, 0.5), trace), expected)


# ------------------------------------------------------------------------------------------ batches
def _yellowfin_closed(lr, **options):
    return yellowfin_tuner(lr_init=lr, closed_loop=True, **options)


BATCHED = {  # every method of the bench, baselines included
    "asgd": (sgd, {}),
    "heavy_ball": (heavy_ball, {"momentum": [0.9, 0.5, -0.3]}),
    "adam": (adam, {}),
    "yellowfin_closed": (_yellowfin_closed, {"gain": [0.01, 0.001, 0.1]}),
    "staleness_aware": (staleness_aware, {}),
    "delay_adaptive": (delay_adaptive, {"concurrency": [2.0, 4.0, 8.0]}),
    "ringmaster": (ringmaster, {"threshold": [2, 4, 8]}),
    "fedbuff": (fedbuff, {"buffer": [1, 2, 3]}),
    "fedasync": (fedasync, {"staleness_function": ["constant", "polynomial", "hinge"]}),
    "dc_asgd": (dc_asgd, {"variance_control": [0.0, 0.5, 2.0]}),
    "dc_asgd_adaptive": (dc_asgd, {"variance_control": [0.5, 1.0, 2.0], "adaptive": True}),
    "gap_aware": (gap_aware, {"momentum": [0.0, 0.5, -0.3], "beta": [0.999, 0.9, 0.5]}),
    "dana": (dana, {"momentum": [0.0, 0.5, 0.9]}),
}


@pytest.mark.parametrize("name", BATCHED)
def test_a_batch_equals_its_single_runs(name):
    factory, options = BATCHED[name]
    trace = cluster_trace(workers=4, n=120)
    lrs = [0.05, 0.1, 0.2]
    batch = run(NOISY, factory(lrs, **options), trace, 120, rng=[7] * 3).final_params
    for b in range(3):
        single = {k: v[b] if isinstance(v, list) else v for k, v in options.items()}
        alone = run(NOISY, factory(lrs[b], **single), trace, 120, rng=[7]).final_params
        assert_allclose(batch[b], alone[0], rtol=1e-13, atol=1e-15)


# ------------------------------------------------------------------------------------------ τ ≡ 0
SYNCHRONOUS = {  # method at τ ≡ 0 -> the synchronous method its docstring names
    "staleness_aware": (staleness_aware(0.1), sgd(0.1)),
    "delay_adaptive": (delay_adaptive(0.1, 0.5), sgd(0.1)),
    "ringmaster": (ringmaster(0.1, 1), sgd(0.1)),
    "fedbuff": (fedbuff(0.1, 1), sgd(0.1)),
    "fedasync": (fedasync(0.1, 0.6, "polynomial"), sgd(0.06)),
    "dc_asgd": (dc_asgd(0.1, 2.0), sgd(0.1)),
    "dc_asgd_adaptive": (dc_asgd(0.1, adaptive=True), sgd(0.1)),
    "gap_aware": (gap_aware(0.1, 0.5), heavy_ball(0.1, 0.5)),
}


@pytest.mark.parametrize("name", SYNCHRONOUS)
def test_without_staleness_each_method_is_its_synchronous_method(name):
    method, synchronous = SYNCHRONOUS[name]
    got = run(NOISY, method, None, 150, rng=4).final_params
    assert_allclose(got, run(NOISY, synchronous, None, 150, rng=4).final_params, rtol=1e-12)


def test_dana_with_one_worker_reads_nesterovs_iterates():
    trace = Trace.from_delays(np.zeros(150, dtype=int), workers=np.zeros(150, dtype=int))
    last, before = (run(NOISY, dana(0.1, 0.6), trace, n, rng=4).final_params for n in (150, 149))
    reference = run(NOISY, nesterov(0.1, 0.6), None, 150, rng=4).final_params
    # the read point of the last version: x + γ u, u the one worker's buffer (its last update)
    assert_allclose(last + 0.6 * (last - before), reference, rtol=1e-12)


def test_fedbuff_without_staleness_is_minibatch_sgd_every_k_arrivals():
    got = run(QUADRATIC, fedbuff(0.5, 3), None, 30, record_every=3)
    reference = run(QUADRATIC, sgd(0.5), None, 10, record_every=1)
    assert_allclose(got.loss[:, 0], reference.loss[:, 0])


# ------------------------------------------------------------------------------------------ checks
BAD = [  # each message names the parameter, the allowed range and the value
    (lambda: staleness_aware(0.0), "lr must be finite and in (0, inf) elementwise, got 0.0"),
    (
        lambda: staleness_aware([0.1, -1.0]),
        "lr must be finite and in (0, inf) elementwise, got -1.0",
    ),
    (
        lambda: staleness_aware([[0.1]]),
        "lr must be a scalar or a 1-D array of shape (B,), got shape",
    ),
    (
        lambda: delay_adaptive(0.1, 0.0),
        "concurrency must be finite and in (0, inf) elementwise, got 0.0",
    ),
    (
        lambda: delay_adaptive(0.1, np.nan),
        "concurrency must be finite and in (0, inf) elementwise, got nan",
    ),
    (lambda: ringmaster(0.1, 0), "threshold must be finite and in [1, inf) elementwise, got 0.0"),
    (lambda: ringmaster(0.1, 2.5), "threshold must be a whole number >= 1, got 2.5"),
    (lambda: fedbuff(0.1, 0), "buffer must be finite and in [1, inf) elementwise, got 0.0"),
    (lambda: fedbuff(0.1, [2, 1.5]), "buffer must be a whole number >= 1, got 1.5"),
    (lambda: fedasync(0.1, 0.0), "mixing must be finite and in (0, 1] elementwise, got 0.0"),
    (lambda: fedasync(0.1, 1.5), "mixing must be finite and in (0, 1] elementwise, got 1.5"),
    (
        lambda: fedasync(0.1, 0.5, "exponential"),
        "staleness_function must be one of constant, polynomial, hinge (or a 1-D array of "
        "them), got 'exponential'",
    ),
    (
        lambda: fedasync(0.1, 0.5, "polynomial", a=0.0),
        "a must be finite and in (0, inf) elementwise, got 0.0",
    ),
    (
        lambda: fedasync(0.1, 0.5, "hinge", b=-1.0),
        "b must be finite and in [0, inf) elementwise, got -1.0",
    ),
    (
        lambda: dc_asgd(0.1, -0.1),
        "variance_control must be finite and in [0, inf) elementwise, got -0.1",
    ),
    (
        lambda: dc_asgd(0.1, adaptive=True, decay=1.0),
        "decay must be a finite number in [0, 1), got 1.0",
    ),
    (
        lambda: dc_asgd(0.1, adaptive=True, eps=0.0),
        "eps must be a finite number in (0, inf), got 0.0",
    ),
    (lambda: gap_aware(0.1, 1.0), "momentum must be finite and in (-1, 1) elementwise, got 1.0"),
    (lambda: gap_aware(0.1, beta=1.0), "beta must be finite and in [0, 1) elementwise, got 1.0"),
    (lambda: gap_aware(0.1, eps=-1.0), "eps must be a finite number in (0, inf), got -1.0"),
    (lambda: dana(0.1, -1.0), "momentum must be finite and in (-1, 1) elementwise, got -1.0"),
    (lambda: dana(np.inf, 0.5), "lr must be finite and in (0, inf) elementwise, got inf"),
]


@pytest.mark.parametrize("index", range(len(BAD)))
def test_bad_hyperparameters_are_rejected_naming_them(index):
    make, message = BAD[index]
    with pytest.raises(ValueError, match=re.escape(message)):
        make()


@pytest.mark.parametrize("flag", ["adaptive", "staleness_weight"])
def test_flags_must_be_booleans(flag):
    make = dc_asgd if flag == "adaptive" else fedbuff
    args = (0.1,) if flag == "adaptive" else (0.1, 2)
    with pytest.raises(TypeError, match=f"{flag} must be True or False, got 'yes'"):
        make(*args, **{flag: "yes"})


def test_every_bench_method_makes_a_sweep_at_each_of_its_values():
    for method in METHODS.values():
        for value in method.values or (None,):
            momenta, options = method.arguments(value, 4)
            sweep = Sweep(
                NOISY, (0.05, 0.1), momenta, workers=(4,), staleness="cluster",
                optimizer=method.factory, options=options,
            )  # fmt: skip
            assert sweep.transform().batch == 2
