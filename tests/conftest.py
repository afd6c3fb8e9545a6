"""Shared fixtures: the reference data beside the repository."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared_reference() -> Path:
    """The folder ``../shared/reference`` beside the repository; fails (never skips) when missing."""
    path = SHARED / "reference"
    if not path.is_dir():
        pytest.fail(
            f"reference data not found at {path}: clone the repository beside the shared/ folder",
            pytrace=False,
        )
    return path
