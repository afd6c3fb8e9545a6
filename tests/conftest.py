"""Shared fixtures: the reference data kept in ``tests/data`` (see its README for where each file came
from)."""

from __future__ import annotations

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
