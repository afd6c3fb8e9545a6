"""Sweeps over any problem and any optimizer: a problem class and optimizer factories defined here,
named option axes, cluster configs per point, fingerprints of what defines a sweep folder."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from asyncsim import ClusterConfig, Exponential, make_problem
from asyncsim._fingerprint import describe, fingerprint
from asyncsim.engine import run
from asyncsim.optim import adam
from asyncsim.sweep import COLUMNS, OPTIMIZERS, Sweep, run_sweep
from asyncsim.trace import Trace

# What a user would write in a notebook: a problem the library does not ship, and two optimizer
# factories. The same text runs here (module level, so a process pool can unpickle it) and as the
# __main__ of the killed-and-resumed script below.
DEFINITIONS = '''
import numpy as np
from asyncsim import ClusterConfig
from asyncsim.optim import adam
from asyncsim.problems import Problem
from asyncsim.sweep import Sweep
from asyncsim.yellowfin import yellowfin_tuner


class LogCoshBowl(Problem):
    """f(w) = sum_i a_i log cosh(w_i - c_i) with additive Gaussian gradient noise: not a quadratic."""

    name = "logcosh"

    def __init__(self, dim=20, noise=0.02):
        self.dim, self.noise = dim, noise
        self.scales = np.logspace(0, -2, dim)
        self.centre = np.linspace(-1.0, 1.0, dim)
        self.target = 0.003 * float(self.loss(self.init_params(1))[0])

    def init_params(self, batch):
        return np.zeros((batch, self.dim))

    def loss(self, w):
        return (self.scales * np.log(np.cosh(w - self.centre))).sum(axis=-1)

    def distance(self, w):
        return np.linalg.norm(w - self.centre, axis=-1)

    def draw(self, rngs, steps, max_aggregated):
        return np.stack([rng.standard_normal((steps, self.dim)) for rng in rngs])

    def mean_gradient(self, w):
        return self.scales * np.tanh(w - self.centre)

    def gradient(self, w, randomness, n_aggregated):
        scale = self.noise / np.sqrt(np.asarray(n_aggregated, dtype=float))
        return self.mean_gradient(w) + randomness * (scale[:, None] if scale.ndim else scale)


def closed_loop_yellowfin(lr, momentum, **options):
    return yellowfin_tuner(lr_init=lr, closed_loop=True, **options)


def adam_with_b2(lr, momentum, *, b2):
    return adam(lr, b2=b2)


YELLOWFIN = Sweep(
    LogCoshBowl(),
    lrs=(0.1,),
    workers=(2, 4),
    staleness="cluster",
    seeds=3,
    steps=2000,
    optimizer=closed_loop_yellowfin,
    options={"target_momentum": (0.3, 0.6), "gain": (0.01, 0.1)},
)
ADAM = Sweep(
    LogCoshBowl(),
    lrs=(0.005, 0.02, 0.1),
    workers=(2, 4),
    staleness="cluster",
    seeds=3,
    steps=2000,
    optimizer=adam_with_b2,
    options={"b2": 0.99},
)
'''
_NOTEBOOK: dict = {"__name__": __name__}  # so that pickle finds them in this module
exec(DEFINITIONS, _NOTEBOOK)
LogCoshBowl = _NOTEBOOK["LogCoshBowl"]
closed_loop_yellowfin = _NOTEBOOK["closed_loop_yellowfin"]
adam_with_b2 = _NOTEBOOK["adam_with_b2"]
YELLOWFIN: Sweep = _NOTEBOOK["YELLOWFIN"]
ADAM: Sweep = _NOTEBOOK["ADAM"]


def assert_tables_equal(a, b) -> None:
    assert a.sweep.columns == b.sweep.columns
    for name in a.sweep.columns:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


# ---------------------------------------------------------------------- any problem, any optimizer
@pytest.mark.slow
@pytest.mark.parametrize("name", ["YELLOWFIN", "ADAM"])
def test_serial_and_process_pool_tables_are_identical(name: str, tmp_path: Path) -> None:
    sweep = globals()[name]
    serial = run_sweep(sweep)
    pooled = run_sweep(sweep, tmp_path, jobs=2)
    assert_tables_equal(serial, pooled)
    assert_tables_equal(serial, run_sweep(sweep, tmp_path))  # read back from the folder
    assert np.isfinite(serial["iterations"]).any(), "no configuration reached the target"


def test_option_axes_are_columns_and_enter_best() -> None:
    sweep = dataclasses.replace(YELLOWFIN, workers=(4,), seeds=2, steps=400)
    result = run_sweep(sweep)
    assert sweep.columns == (
        *COLUMNS[:5],
        "target_momentum",
        "gain",
        *COLUMNS[5:],
    )
    assert len(result) == 2 * 2 * 2  # seeds x targets x gains
    np.testing.assert_array_equal(result["target_momentum"][:4], [0.3, 0.3, 0.6, 0.6])
    np.testing.assert_array_equal(result["gain"][:4], [0.01, 0.1, 0.01, 0.1])
    assert result.median_iterations().shape == (1, 1, 1, 2, 2)
    assert set(result.best()) == {"lr", "momentum", "target_momentum", "gain", "iterations"}


def test_each_row_equals_its_single_run() -> None:
    """The chunk hands the factory columns of the grid: row (target μ*, γ) is the run of
    ``closed_loop_yellowfin(lr, 0, target_momentum=μ*, gain=γ)`` on the chunk's own trace and noise."""
    from asyncsim.measure import iterations_to_target
    from asyncsim.sweep import _chunk_trace, chunk_streams

    sweep = dataclasses.replace(YELLOWFIN, workers=(4,), seeds=1, steps=400)
    result = run_sweep(sweep)
    trace_seq, noise_seq = chunk_streams(sweep, 0, 0)
    trace = _chunk_trace(sweep, 0, trace_seq)
    for row in range(len(result)):
        transform = closed_loop_yellowfin(
            0.1, 0.0, target_momentum=result["target_momentum"][row], gain=result["gain"][row]
        )
        history = run(
            sweep.problem,
            transform,
            trace,
            sweep.steps,
            rng=[noise_seq],
            record_every=10,
            stop_at=sweep.problem.target,
        )
        its = iterations_to_target(history, sweep.problem.target)
        assert its[0] == result["iterations"][row]


def test_named_optimizers_include_yellowfin_with_options() -> None:
    sweep = Sweep(
        "nq50",
        lrs=(0.05,),
        workers=(4,),
        staleness="cluster",
        steps=300,
        optimizer="yellowfin",
        options={"closed_loop": True, "target_momentum": (0.0, 0.5)},
    )
    result = run_sweep(sweep)
    assert set(OPTIMIZERS) == {"heavy_ball", "nesterov", "adam", "yellowfin"}
    np.testing.assert_array_equal(result["closed_loop"], [True, True])
    np.testing.assert_array_equal(result["target_momentum"], [0.0, 0.5])


def test_the_closed_loop_on_iid_staleness_is_refused_naming_both() -> None:
    with pytest.raises(
        ValueError, match=r"closed_loop_yellowfin.*writer ids.*staleness='geometric'"
    ):
        dataclasses.replace(YELLOWFIN, staleness="geometric")
    transform = closed_loop_yellowfin(0.1, 0.0, target_momentum=0.3, gain=0.01)
    trace = Trace.geometric(4, 50, rng=0)
    with pytest.raises(ValueError, match=r"'yellowfin_tuner' needs writer ids.*unknown writers"):
        run(LogCoshBowl(), transform, trace, 50, rng=0)


def test_cluster_configs_per_point() -> None:
    """Two points of 4 workers, one with a straggler: the same streams (common random numbers), so
    the straggler point's staleness is larger where the trace differs at all."""
    plain = ClusterConfig(4)
    straggler = ClusterConfig(4, time_multipliers=(1.0, 1.0, 1.0, 8.0))
    sweep = Sweep(
        "nq50",
        lrs=(0.05,),
        staleness="cluster",
        cluster=(plain, straggler, ClusterConfig(4, mode="sync")),
        steps=400,
    )
    assert sweep.workers == (4, 4, 4)
    assert sweep.points() == [(4, 4), (4, 4), (4, 1)]
    result = run_sweep(sweep)
    per_update = result["time_per_update"]
    assert per_update[1] > per_update[0]  # the straggler slows the cluster down
    with pytest.raises(ValueError, match="leave workers and groups out"):
        Sweep("nq50", lrs=(0.05,), workers=(4,), staleness="cluster", cluster=(plain,))
    with pytest.raises(ValueError, match="staleness='cluster'"):
        Sweep("nq50", lrs=(0.05,), cluster=(plain,))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"options": {"lr": (0.1,)}}, ValueError, "options: name 'lr'"),
        ({"options": {"b2": [[0.9]]}}, ValueError, r"options\['b2'\] must be a number"),
        ({"options": {"b2": ()}}, ValueError, r"options\['b2'\]"),
        ({"optimizer": 3}, TypeError, "optimizer must be a name"),
        ({"problem_options": (("noise", 0.1),)}, ValueError, "problem_options apply"),
        ({"cluster": ("a",), "staleness": "cluster"}, TypeError, "ClusterConfigs"),
        ({"cluster": "a", "staleness": "cluster"}, TypeError, "ClusterConfig or a sequence"),
    ],
)
def test_bad_open_sweeps(kwargs, error, match) -> None:
    base = {"lrs": (0.1,), "optimizer": adam_with_b2, "options": {"b2": 0.99}}
    with pytest.raises(error, match=match):
        Sweep(LogCoshBowl(), **(base | kwargs))


def test_a_problem_without_the_interface_is_named() -> None:
    class Half:
        dim = 3

        def loss(self, w):
            return w.sum(axis=-1)

    lacking = r"lacks the problem interface: name, target, affine_gradient, init_params"
    with pytest.raises(TypeError, match=lacking):
        Sweep(Half(), lrs=(0.1,))


def test_a_factory_rejecting_its_options_fails_when_the_sweep_is_built() -> None:
    with pytest.raises(TypeError, match="b1"):
        Sweep(LogCoshBowl(), lrs=(0.1,), optimizer=adam_with_b2, options={"b1": 0.5})
    with pytest.raises(ValueError, match="b2"):
        Sweep(LogCoshBowl(), lrs=(0.1,), optimizer=adam_with_b2, options={"b2": 1.5})


# ------------------------------------------------------------------------------------------ fingerprints
def test_an_object_without_a_fingerprint_is_named_when_out_is_given(tmp_path: Path) -> None:
    class WithGenerator(LogCoshBowl):
        def __init__(self) -> None:
            super().__init__()
            self.stream = (i for i in range(3))

    sweep = Sweep(WithGenerator(), lrs=(0.1,), steps=100)
    assert len(run_sweep(sweep)) == 1  # in memory, no fingerprint is needed
    with pytest.raises(TypeError, match=r"sweep\.problem\.stream \(generator\) has no fingerprint"):
        run_sweep(sweep, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_fingerprints_tell_what_defines_a_sweep() -> None:
    assert fingerprint(LogCoshBowl()) == fingerprint(LogCoshBowl())
    assert fingerprint(LogCoshBowl(noise=0.03)) != fingerprint(LogCoshBowl())
    assert fingerprint(make_problem("nq50")) != fingerprint(make_problem("nq50", noise=0.01))
    assert fingerprint(functools.partial(adam, b2=0.9)) != fingerprint(
        functools.partial(adam, b2=0.99)
    )
    assert fingerprint(ClusterConfig(4)) != fingerprint(ClusterConfig(4, compute=Exponential(2.0)))
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})
    assert fingerprint(np.arange(3.0)) != fingerprint(np.arange(3))  # dtype counts

    def factory(lr, momentum):
        return adam(lr)

    def edited(lr, momentum):
        return adam(2 * lr)

    assert describe(factory)["code"] != describe(edited)["code"]


def test_fingerprints_agree_across_processes() -> None:
    code = (
        "from asyncsim import make_problem, ClusterConfig\n"
        "from asyncsim._fingerprint import fingerprint\n"
        "print(fingerprint([make_problem('digits-mlp'), ClusterConfig(8), {3, 1, 2}]))"
    )
    env = os.environ | {"PYTHONHASHSEED": "123"}
    theirs = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout.strip()
    assert theirs == fingerprint([make_problem("digits-mlp"), ClusterConfig(8), {3, 1, 2}])


def test_folder_spec_changes_with_the_problem_instance(tmp_path: Path) -> None:
    sweep = Sweep(LogCoshBowl(), lrs=(0.1,), steps=100)
    run_sweep(sweep, tmp_path)
    run_sweep(sweep, tmp_path)  # the same sweep resumes
    with pytest.raises(ValueError, match="holds a different sweep"):
        run_sweep(dataclasses.replace(sweep, problem=LogCoshBowl(noise=0.05)), tmp_path)


# ------------------------------------------------------------------------------ killed and resumed
SCRIPT = (
    DEFINITIONS
    + """
import sys
from pathlib import Path
from asyncsim.sweep import run_sweep
result = run_sweep(YELLOWFIN, sys.argv[1], jobs=int(sys.argv[2]))
np.savez(Path(sys.argv[1]) / "table.npz", **result.columns)
"""
)


@pytest.mark.slow
def test_a_sweep_of_notebook_objects_resumes_after_sigkill(tmp_path: Path, await_chunks) -> None:
    """The class and factory live in ``__main__`` (as in a notebook) and reach a forked pool; the
    run is killed with its pool after two chunks, then run again: the table equals the serial run's."""
    out = tmp_path / "sweep"
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(out), "2"], start_new_session=True)
    try:
        await_chunks(proc, out, 2, seconds=180)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    kept = {p.name: p.stat().st_mtime_ns for p in out.glob("chunk-*.npz")}
    assert 2 <= len(kept) < len(YELLOWFIN.chunks())
    subprocess.run([sys.executable, "-c", SCRIPT, str(out), "1"], check=True, timeout=600)
    after = {p.name: p.stat().st_mtime_ns for p in out.glob("chunk-*.npz")}
    assert len(after) == len(YELLOWFIN.chunks())
    assert all(after[name] == stamp for name, stamp in kept.items())  # finished chunks kept
    with np.load(out / "table.npz") as resumed:
        serial = run_sweep(YELLOWFIN)
        for name in YELLOWFIN.columns:
            np.testing.assert_array_equal(resumed[name], serial[name], err_msg=name)
