"""The lock-free runner: its counters and its clock tell one story, one worker is the engine's run,
and nothing outlives a run (processes, shared-memory segments) however it ends: success, a worker
that raises, the timeout, Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from asyncsim import cli
from asyncsim.engine import run
from asyncsim.hogwild import (
    SEGMENT_PREFIX,
    HogwildError,
    HogwildRun,
    ProblemModel,
    SharedHeavyBall,
    available_cores,
    hogwild,
)
from asyncsim.optim import heavy_ball
from asyncsim.problems import make_problem
from asyncsim.trace import Trace

SHM = Path("/dev/shm")
pytestmark = pytest.mark.skipif(
    not SHM.is_dir() or not Path("/proc/self/stat").exists(), reason="needs Linux /dev/shm, /proc"
)

#: A model module for the spawned workers to import (from a temporary folder on sys.path): d = 4,
#: gradient w, parameters of ``dtype``; each worker touches ``ready-<i>`` in ``folder`` when it
#: opens, pauses ``pause`` seconds per gradient, and worker ``fail`` raises after ``after`` of them.
MODELS = """
import pathlib
import time

import numpy as np


class Model:
    dim = 4

    def __init__(self, folder, pause=0.0, fail=-1, after=0, dtype="float64"):
        self.folder, self.pause, self.fail, self.after = str(folder), pause, fail, after
        self.dtype = np.dtype(dtype)

    def initial_parameters(self):
        return np.ones(self.dim, dtype=self.dtype)

    def open(self, worker, seed):
        pathlib.Path(self.folder, f"ready-{worker}").touch()
        calls = [0]

        def gradient(w):
            calls[0] += 1
            if worker == self.fail and calls[0] > self.after:
                raise ValueError(f"worker {worker} gave up at gradient {calls[0]}")
            time.sleep(self.pause)
            return w.copy()

        return gradient

    def loss(self, w):
        return float(w @ w / 2)
"""


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The ``models`` module, importable here and in spawned workers (they inherit sys.path)."""
    (tmp_path / "hogwild_models.py").write_text(MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))
    import hogwild_models

    yield hogwild_models
    sys.modules.pop("hogwild_models", None)


def segments(pid: int) -> list[str]:
    """Shared-memory segments of runs launched by process ``pid``."""
    return sorted(p.name for p in SHM.glob(f"{SEGMENT_PREFIX}{pid}_*"))


def semaphores() -> set[str]:
    """Named semaphores of multiprocessing in /dev/shm (a lock made for spawned processes is one
    until it is released)."""
    return {p.name for p in SHM.glob("sem.mp-*")}


def children(pid: int) -> set[int]:
    """Live child processes of ``pid`` (from /proc), except multiprocessing's resource tracker,
    which lives as long as its parent."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue  # exited while we looked
        if int(fields[1]) == pid and fields[0] != "Z" and b"resource_tracker" not in cmdline:
            found.add(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"


# ------------------------------------------------------------------------------------------ must show 1
@pytest.fixture(scope="module")
def four_workers() -> tuple[HogwildRun, set, set]:
    """A real run of M = 4 workers and 5,000 updates on nq50 (heavy ball), with this process's
    children and the named semaphores before and after it."""
    before = children(os.getpid()), semaphores()
    result = hogwild(make_problem("nq50"), SharedHeavyBall(0.1, 0.5), 4, 5000, rng=0)
    return result, before, (children(os.getpid()), semaphores())


def test_staleness_recomputed_from_counters_and_clock_is_the_trace_column(four_workers) -> None:
    result, _, _ = four_workers
    trace = result.trace
    n = len(trace)
    assert n == 5000 and trace.origin == "measured" and not result.timed_out
    assert set(np.unique(trace.writer)) <= {0, 1, 2, 3} and np.unique(trace.writer).size >= 2
    # The clock readings were taken under the counter's lock: they follow the counter's order.
    applied = trace.apply_time
    assert np.all(np.diff(applied) > 0)
    assert np.all(result.read_time < applied)
    # From the counters: the write numbered t + 1 (its rank by apply time) read version r0.
    version = np.argsort(applied) + 1
    assert np.array_equal(trace.staleness, version - 1 - trace.read_version)
    # From the clock alone: the other writes between the read's start and this write.
    between = np.arange(n) - np.searchsorted(applied, result.read_time, side="right")
    assert np.array_equal(trace.staleness, between)
    # The counter at the read's end counts the writes that landed while the copy was made.
    read_end_time = applied - result.apply_duration - result.compute_time
    landed = np.searchsorted(applied, read_end_time, side="right") - np.searchsorted(
        applied, result.read_time, side="right"
    )
    assert np.array_equal(result.read_end - trace.read_version, landed)
    assert (result.read_end >= trace.read_version).all() and (result.read_end <= np.arange(n)).all()
    assert (result.compute_time > 0).all() and (result.apply_duration > 0).all()


def test_a_run_says_what_it_ran_on_and_learns(four_workers) -> None:
    result, _, _ = four_workers
    assert result.cores == available_cores()
    assert result.oversubscribed == (available_cores() < 4)
    assert result.config["reproducible"] is False
    assert result.steps[0] == 0 and result.steps[-1] == 5000
    assert np.all(np.diff(result.steps) > 0) and result.steps.size == 501
    assert result.loss[-1] < 1e-2 * result.loss[0] and not result.diverged


def test_nothing_outlives_a_successful_run(four_workers) -> None:
    result, before, after = four_workers
    assert result.config["segment"].startswith(f"{SEGMENT_PREFIX}{os.getpid()}_")
    assert not (SHM / result.config["segment"]).exists()
    assert segments(os.getpid()) == []
    assert after[0] <= before[0] and after[1] <= before[1]


def test_a_saved_run_loads_back_as_its_trace(four_workers, tmp_path: Path) -> None:
    result, _, _ = four_workers
    again = Trace.load(result.save(tmp_path / "run.csv"))
    assert np.array_equal(again.staleness, result.trace.staleness)
    assert np.array_equal(again.writer, result.trace.writer)
    np.testing.assert_allclose(again.apply_time, result.trace.apply_time, atol=1e-9)


# ------------------------------------------------------------------------------------------ arithmetic
def test_one_worker_is_the_engine_replaying_its_trace() -> None:
    """With one worker nothing is stale or torn: the run is the engine's on its own trace, with the
    same noise stream (worker 0 and configuration 0 both draw from ``stream(root, 0)``)."""
    problem = make_problem("nq50")
    result = hogwild(problem, SharedHeavyBall(0.1, 0.5), 1, 400, rng=3, record_reads=True)
    assert (result.trace.staleness == 0).all() and (result.read_end == np.arange(400)).all()
    hist = run(problem, heavy_ball(0.1, 0.5), result.trace, 400, rng=3, record_every=10)
    np.testing.assert_allclose(result.final_params, hist.final_params[0], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(result.loss, hist.loss[:, 0], rtol=1e-10)
    # One writer: the estimator's terms are μ exactly (theory/README.md §9).
    steps, estimate = result.total_momentum(every=10)
    np.testing.assert_allclose(estimate[1:], 0.5, atol=1e-9)
    assert steps[-1] == 400


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_model_plugs_in_through_the_protocol(models, tmp_path: Path, dtype: str) -> None:
    """Any object with the protocol's attributes, its parameters float64 or float32 (as a PyTorch
    model's flat buffer would be): w ← w - α w, 40 times, whatever the interleaving."""
    model = models.Model(tmp_path, dtype=dtype)
    result = hogwild(model, SharedHeavyBall(0.25), 2, 40, record_every=None)
    assert sorted(p.name for p in tmp_path.glob("ready-*")) == ["ready-0", "ready-1"]
    assert result.steps.tolist() == [0, 40] and result.final_params.dtype == np.dtype(dtype)
    assert result.loss[-1] < result.loss[0]


# ------------------------------------------------------------------------------------------ cleanup
def test_a_worker_that_raises_stops_the_run_and_leaves_nothing(models, tmp_path: Path) -> None:
    before, named = children(os.getpid()), semaphores()
    model = models.Model(tmp_path, pause=1e-4, fail=1, after=20)
    with pytest.raises(HogwildError, match="worker 1 gave up at gradient 21"):
        hogwild(model, SharedHeavyBall(0.01), 3, 100_000, record_every=None, timeout=60.0)
    assert segments(os.getpid()) == [] and semaphores() <= named
    assert children(os.getpid()) <= before


def test_a_worker_that_fails_to_start_is_reported(models, tmp_path: Path) -> None:
    before, named = children(os.getpid()), semaphores()
    model = models.Model(tmp_path / "missing")  # open() cannot touch its ready file
    with pytest.raises(HogwildError, match="FileNotFoundError"):
        hogwild(model, SharedHeavyBall(0.01), 2, 100, timeout=60.0)
    assert segments(os.getpid()) == [] and semaphores() <= named
    assert children(os.getpid()) <= before


def test_the_timeout_stops_the_run_and_returns_what_it_recorded(models, tmp_path: Path) -> None:
    before, named = children(os.getpid()), semaphores()
    model = models.Model(tmp_path, pause=2e-3)
    result = hogwild(model, SharedHeavyBall(0.01), 2, 100_000, record_every=None, timeout=3.0)
    assert result.timed_out and 0 < len(result.trace) < 100_000
    assert result.steps[-1] == len(result.trace)
    assert segments(os.getpid()) == [] and semaphores() <= named
    assert children(os.getpid()) <= before


def test_ctrl_c_stops_the_run_and_leaves_nothing(models, tmp_path: Path) -> None:
    """SIGINT to the whole process group, as a terminal's Ctrl-C sends it: the workers ignore it, the
    parent stops them, unlinks the segment and exits with KeyboardInterrupt."""
    script = textwrap.dedent(
        f"""
        from asyncsim.hogwild import SharedHeavyBall, hogwild
        from hogwild_models import Model

        if __name__ == "__main__":
            hogwild(Model({str(tmp_path)!r}, pause=1e-3), SharedHeavyBall(0.01), 2, 1_000_000,
                    record_every=None, timeout=120.0)
        """
    )
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    named = semaphores()
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob("ready-*"))) < 2 and proc.poll() is None:
            assert time.monotonic() < deadline, "the workers did not start within 60 s"
            time.sleep(0.05)
        workers = children(proc.pid)
        assert len(workers) == 2 and len(segments(proc.pid)) == 1
        time.sleep(0.5)  # into the loop
        os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode != 0 and "KeyboardInterrupt" in stderr
    assert segments(proc.pid) == [] and semaphores() <= named
    assert "leaked" not in stderr  # the resource tracker had nothing to clean up
    assert not any(alive(pid) for pid in workers)


# ------------------------------------------------------------------------------------------ inputs
@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"n_workers": 0}, "n_workers must be in"),
        ({"n_updates": 0}, "n_updates must be in"),
        ({"timeout": 0.0}, "timeout must be a finite number in"),
        ({"record_every": 0}, "record_every must be in"),
        ({"start_method": "thread"}, "start_method must be one of"),
        ({"n_updates": 10**7, "record_every": 1}, "SNAPSHOT_BUDGET"),
    ],
)
def test_bad_arguments_are_refused_before_any_process_starts(arguments, message) -> None:
    before = children(os.getpid())
    options = {"n_workers": 2, "n_updates": 10} | arguments
    with pytest.raises(ValueError, match=message):
        hogwild(make_problem("q10"), SharedHeavyBall(0.1), **options)
    assert children(os.getpid()) <= before and segments(os.getpid()) == []


def test_models_and_optimizers_are_checked() -> None:
    with pytest.raises(TypeError, match="model must be a HogwildModel"):
        hogwild(object(), SharedHeavyBall(0.1), 1, 1)
    with pytest.raises(TypeError, match="optimizer must be a SharedOptimizer"):
        hogwild(make_problem("q10"), object(), 1, 1)
    with pytest.raises(ValueError, match="momentum must be a finite number in"):
        SharedHeavyBall(0.1, 1.0)
    with pytest.raises(TypeError, match="problem must be an asyncsim Problem"):
        ProblemModel(object())


# ------------------------------------------------------------------------------------------ command
@pytest.mark.parametrize(
    "argv",
    [
        ["--workers", "0"],
        ["--updates", "-5"],
        ["--problem", "cifar"],
        ["--lr", "0"],
        ["--momentum", "1"],
        ["--timeout", "nan"],
        ["--out", "trace.txt"],
        ["--plot", "pmf.gif"],
    ],
)
def test_the_command_refuses_bad_arguments_with_exit_2(argv, capsys) -> None:
    before = children(os.getpid())
    assert cli.main(["hogwild", *argv]) == 2
    err = capsys.readouterr().err
    assert "usage:" in err and "Traceback" not in err
    assert children(os.getpid()) <= before


def test_the_command_runs_saves_and_plots(tmp_path: Path, capsys) -> None:
    out, plot = tmp_path / "trace.csv", tmp_path / "pmf.png"
    argv = ["hogwild", "--workers", "2", "--updates", "600", "--seed", "1"]
    assert cli.main([*argv, "--out", str(out), "--plot", str(plot)]) == 0
    text = capsys.readouterr().out
    assert f"on {available_cores()} core" in text and "not reproducible" in text
    assert "TV distance" in text and "fitted" in text and "geometric" in text
    assert len(Trace.load(out)) == 600
    assert plot.stat().st_size > 10_000
