"""Sweeps: tidy tables, resuming after a kill, identical tables whatever the executor."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from asyncsim.sweep import COLUMNS, Sweep, run_sweep

SMALL = Sweep(
    "nq50",
    lrs=(0.05, 0.1, 0.2),
    momenta=(0.0, 0.5),
    workers=(1, 4),
    seeds=3,
    steps=2500,
    record_every=10,
)


def assert_tables_equal(a, b) -> None:
    for name in COLUMNS:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_table_shape_and_content() -> None:
    result = run_sweep(SMALL)
    assert len(result) == 2 * 3 * 3 * 2
    assert set(result.columns) == set(COLUMNS)
    frame = result.to_frame()
    assert list(frame.columns) == list(COLUMNS)
    # every configuration of this small grid converges; more workers never make it faster here
    assert np.isfinite(result["iterations"]).all() and not result["diverged"].any()
    med = result.median_iterations()
    assert med.shape == (2, 3, 2)
    assert result.best()["iterations"][1] >= result.best()["iterations"][0]


def test_sweep_is_reproducible_and_thread_pool_agrees() -> None:
    serial = run_sweep(SMALL)
    with ThreadPoolExecutor(2) as pool:
        threaded = run_sweep(SMALL, executor=pool)
    assert_tables_equal(serial, threaded)


@pytest.mark.slow
def test_process_pool_and_dask_give_the_serial_table(tmp_path: Path) -> None:
    serial = run_sweep(SMALL)
    pooled = run_sweep(SMALL, tmp_path / "pool", jobs=2)
    assert_tables_equal(serial, pooled)
    from dask.distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        distributed = run_sweep(SMALL, executor=client.get_executor())
    assert_tables_equal(serial, distributed)


SCRIPT = """
import sys
from asyncsim.sweep import Sweep, run_sweep
sweep = Sweep("nq50", lrs=(0.05, 0.1), momenta=(0.0, 0.5), workers=(1, 2, 4, 8), seeds=6,
              steps=3000, record_every=10)
run_sweep(sweep, sys.argv[1])
"""


@pytest.mark.slow
def test_killed_sweep_resumes_without_loss_or_duplicates(tmp_path: Path, await_chunks) -> None:
    out = tmp_path / "sweep"
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(out)], start_new_session=True)
    await_chunks(proc, out, 3)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = sorted(out.glob("chunk-*.npz"))
    assert 3 <= len(finished) < 24
    before = {p.name: p.stat().st_mtime_ns for p in finished}

    namespace: dict = {}
    exec(SCRIPT.replace("run_sweep(sweep, sys.argv[1])", ""), namespace)
    sweep = namespace["sweep"]
    resumed = run_sweep(sweep, out)
    after = {p.name: p.stat().st_mtime_ns for p in out.glob("chunk-*.npz")}
    assert len(after) == 24
    assert all(after[name] == stamp for name, stamp in before.items())  # finished chunks kept
    keys = list(
        zip(resumed["point"], resumed["seed"], resumed["lr"], resumed["momentum"], strict=True)
    )
    assert len(keys) == len(set(keys)) == 24 * 4
    assert_tables_equal(resumed, run_sweep(sweep))


def test_a_different_sweep_in_the_same_folder_is_refused(tmp_path: Path) -> None:
    run_sweep(Sweep("q10", lrs=(0.5,), steps=50), tmp_path)
    with pytest.raises(ValueError, match="holds a different sweep"):
        run_sweep(Sweep("q10", lrs=(0.25,), steps=50), tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lrs": (0.0,)}, "lrs"),
        ({"lrs": (0.1,), "momenta": (1.0,)}, "momenta"),
        ({"lrs": (0.1,), "workers": (0,)}, "workers"),
        ({"lrs": (0.1,), "workers": (16,), "groups": (3,), "staleness": "cluster"}, "divide"),
        ({"lrs": (0.1,), "workers": (16,), "groups": (4,)}, "staleness='cluster'"),
        ({"lrs": (0.1,), "staleness": "poisson"}, "staleness must be one of"),
        ({"lrs": (0.1,), "optimizer": "rmsprop"}, "optimizer must be one of"),
        ({"lrs": (0.1,), "seeds": 0}, "seeds"),
    ],
)
def test_bad_sweeps(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        Sweep("nq50", **kwargs)


# ------------------------------------------------------------------------------------------ store
def _truncate(path: Path, other: Path) -> None:
    path.write_bytes(path.read_bytes()[:200])


def _empty(path: Path, other: Path) -> None:
    path.write_bytes(b"")


def _corrupt(path: Path, other: Path) -> None:
    data = bytearray(path.read_bytes())
    data[40:400] = bytes(360)  # zeros over the first member's header and data
    path.write_bytes(bytes(data))


def _foreign(path: Path, other: Path) -> None:
    path.write_bytes(other.read_bytes())  # another chunk's file copied over this one


def _short(path: Path, other: Path) -> None:
    with np.load(path) as data:
        stored = {name: data[name] for name in data.files}
    np.savez(path, **{k: v if k in ("key", "fingerprint") else v[:-1] for k, v in stored.items()})


def _unkeyed(path: Path, other: Path) -> None:
    with np.load(path) as data:
        np.savez(path, **{name: data[name] for name in COLUMNS})


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_truncate, "not a readable chunk"),
        (_empty, "not a readable chunk"),
        (_corrupt, "not a readable chunk|columns of the wrong length|holds chunk"),
        (_foreign, r"holds chunk \(0, 0\), not \(1, 2\)"),
        (_short, r"columns of the wrong length \(expected 6 rows\)"),
        (_unkeyed, "no chunk key or sweep fingerprint"),
    ],
    ids=["truncated", "empty", "corrupt", "foreign", "short", "unkeyed"],
)
def test_a_damaged_chunk_is_named_and_recomputed(tmp_path: Path, damage, reason) -> None:
    from asyncsim.sweep import StoreWarning

    whole = run_sweep(SMALL, tmp_path)
    damaged = tmp_path / "chunk-p001-s0002.npz"
    damage(damaged, tmp_path / "chunk-p000-s0000.npz")
    with pytest.warns(StoreWarning, match=rf"{damaged.name}: ({reason}).*; recomputing it"):
        again = run_sweep(SMALL, tmp_path)
    assert_tables_equal(again, whole)
    with np.load(damaged) as data:  # written anew, whole
        assert tuple(data["key"]) == (1, 2) and data["lr"].shape == (6,)


def test_a_chunk_of_another_sweep_is_not_used(tmp_path: Path) -> None:
    """Same grid shape, another seed: the fingerprint tells the files apart."""
    from asyncsim.sweep import StoreWarning

    run_sweep(SMALL, tmp_path / "a")
    other = Sweep(**{**SMALL.__dict__, "seed": SMALL.seed + 1})
    run_sweep(other, tmp_path / "b")
    (tmp_path / "a" / "chunk-p000-s0000.npz").write_bytes(
        (tmp_path / "b" / "chunk-p000-s0000.npz").read_bytes()
    )
    with pytest.warns(StoreWarning, match="written by another sweep"):
        assert_tables_equal(run_sweep(SMALL, tmp_path / "a"), run_sweep(SMALL))


def test_only_the_writes_of_dead_processes_are_cleared(tmp_path: Path) -> None:
    run_sweep(SMALL, tmp_path)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
        live_write = tmp_path / f"chunk-p000-s0000.npz.{sleeper.pid}.tmp"
        dead_write = tmp_path / f"chunk-p000-s0001.npz.{dead}.tmp"
        for path in (live_write, dead_write):
            path.write_bytes(b"partial")
        run_sweep(SMALL, tmp_path)
        assert live_write.exists() and not dead_write.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


COUNTING_RUNNER = """
import os, sys
import asyncsim.sweep as sweep_module
computed = []
compute = sweep_module.run_chunk
def counted(sweep, point, seed):
    computed.append((point, seed))
    return compute(sweep, point, seed)
sweep_module.run_chunk = counted
namespace = {}
exec(sys.argv[2], namespace)
sweep_module.run_sweep(namespace["sweep"], sys.argv[1])
print(*(f"{p},{s}" for p, s in computed))
"""


@pytest.mark.slow
def test_two_runners_on_one_folder_share_the_work(tmp_path: Path) -> None:
    """Started together on one folder: each chunk computed once in all, and the same table."""
    definition = SCRIPT.replace("run_sweep(sweep, sys.argv[1])", "")
    argv = [sys.executable, "-c", COUNTING_RUNNER, str(tmp_path), definition]
    runners = [subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [runner.communicate(timeout=600)[0] for runner in runners]
    assert [runner.returncode for runner in runners] == [0, 0]
    computed = [chunk for out in outputs for chunk in out.split()]
    namespace: dict = {}
    exec(definition, namespace)
    sweep = namespace["sweep"]
    assert sorted(computed) == sorted(f"{p},{s}" for p, s in sweep.chunks())  # each exactly once
    assert all(out.split() for out in outputs), "one runner did all the work: no sharing was tested"
    assert not list(tmp_path.glob("*.lock")) and not list(tmp_path.glob("*.tmp"))
    assert_tables_equal(run_sweep(sweep, tmp_path), run_sweep(sweep))


@pytest.mark.slow
def test_a_killed_parent_leaves_no_pool_worker_behind(tmp_path: Path, await_chunks) -> None:
    """SIGKILL of the sweep's process alone (not its group): its pool's workers exit by themselves."""
    script = SCRIPT.replace(
        "run_sweep(sweep, sys.argv[1])", "run_sweep(sweep, sys.argv[1], jobs=2)"
    )
    out = tmp_path / "sweep"
    proc = subprocess.Popen([sys.executable, "-c", script, str(out)], start_new_session=True)
    try:
        await_chunks(proc, out, 1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 10
        while _group_alive(proc.pid):
            assert time.monotonic() < deadline, (
                "pool workers still alive 10 s after the parent died"
            )
            time.sleep(0.1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_final_loss_does_not_depend_on_the_neighbours() -> None:
    """Adam at α = 0.005 alone, and beside α = 50, which never gets there: the chunk runs on for the
    neighbour, yet the configuration's values are those of its own stop (before, 0.005388 alone and
    0.001507 beside)."""
    common = {"optimizer": "adam", "steps": 4000, "record_every": 10, "seeds": 2}
    alone = run_sweep(Sweep("nq50", lrs=(0.005,), **common)).to_frame()
    beside = run_sweep(Sweep("nq50", lrs=(0.005, 50.0), **common)).to_frame()
    beside = beside[beside.lr == 0.005].reset_index(drop=True)
    assert np.isfinite(alone["iterations"]).all()
    assert not np.isfinite(run_sweep(Sweep("nq50", lrs=(50.0,), **common))["iterations"]).any()
    for column in ("iterations", "final_loss", "diverged"):
        np.testing.assert_array_equal(alone[column], beside[column], err_msg=column)


@pytest.mark.parametrize(
    ("problem", "lrs", "steps", "workers"),
    [("nq50", (2.0**-6, 0.5, 4.0), 1200, 4), ("digits-mlp", (0.02, 0.7, 8.0), 800, 1)],
)
def test_a_chunk_is_the_same_whether_its_configurations_stop_each_on_their_own(
    monkeypatch, problem, lrs, steps, workers
) -> None:
    """A chunk stops each configuration where it reaches the target or diverges (``stop_each``):
    every column equals a run that computes them all to the chunk's end, for α that reach the
    target, that do not, and that diverge (nq50's α = 4)."""
    import asyncsim.sweep as sweep_module
    from asyncsim.engine import run as engine_run

    sweep = Sweep(
        problem, lrs=lrs, momenta=(-0.5, 0.0, 0.9), workers=(workers,), steps=steps, record_every=5
    )
    stopping_each = sweep_module.run_chunk(sweep, 0, 0)

    def without_stop_each(*args, **kwargs):
        return engine_run(*args, **(kwargs | {"stop_each": False}))

    monkeypatch.setattr(sweep_module, "run", without_stop_each)
    to_the_end = sweep_module.run_chunk(sweep, 0, 0)
    assert np.isfinite(to_the_end["iterations"]).any() and np.isinf(to_the_end["iterations"]).any()
    if problem == "nq50":
        assert to_the_end["diverged"].any()
    for name, column in to_the_end.items():
        np.testing.assert_array_equal(stopping_each[name], column, err_msg=name)
