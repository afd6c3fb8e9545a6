"""Shared fixtures: the reference data kept in ``tests/data`` (see its README for where each file came
from), and waiting on a sweep run in a subprocess."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def data_file():
    """``data_file(name)``: the path of ``tests/data/<name>``; fails (never skips) when it is missing."""

    def find(name: str) -> Path:
        path = DATA / name
        if not path.is_file():
            pytest.fail(
                f"reference data file missing: {path} (see tests/data/README.md)", pytrace=False
            )
        return path

    return find


@pytest.fixture(scope="session")
def await_chunks():
    """``await_chunks(proc, out, count, seconds=120)``: wait until the sweep running in ``proc`` has
    written ``count`` chunk files into ``out``; fails if it ends first or takes longer."""

    def wait(proc: subprocess.Popen, out: Path, count: int, seconds: float = 120) -> None:
        deadline = time.monotonic() + seconds
        while len(list(out.glob("chunk-*.npz"))) < count:
            assert proc.poll() is None, "the sweep finished before it could be interrupted"
            assert time.monotonic() < deadline, f"not {count} chunks within {seconds} s"
            time.sleep(0.05)

    return wait
