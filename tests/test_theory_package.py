"""The theory package: its public surface, and that it never imports asyncsim."""

from __future__ import annotations

import subprocess
import sys

import theory


def test_all_names_exist() -> None:
    assert len(set(theory.__all__)) == len(theory.__all__)
    for name in theory.__all__:
        assert callable(getattr(theory, name)), name


def test_theory_never_imports_asyncsim() -> None:
    code = (
        "import sys, theory, theory.numeric, theory.symbols; "
        "from theory import asynchrony, hardware, momentum, staleness, yellowfin; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'asyncsim'); "
        "sys.exit(f'imported {bad}' if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr or result.stdout
