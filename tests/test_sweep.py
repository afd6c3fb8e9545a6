"""Sweeps: tidy tables, resuming after a kill, identical tables whatever the executor."""

from __future__ import annotations

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
def test_killed_sweep_resumes_without_loss_or_duplicates(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(out)], start_new_session=True)
    deadline = time.monotonic() + 120
    while len(list(out.glob("chunk-*.npz"))) < 3:
        assert proc.poll() is None, "the sweep finished before it could be interrupted"
        assert time.monotonic() < deadline, "no chunk was written within two minutes"
        time.sleep(0.05)
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
