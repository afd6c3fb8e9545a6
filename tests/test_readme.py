"""The README's promises: its Python example prints what the README says, and CI runs exactly its test
command."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, re.DOTALL)


def test_the_python_example_prints_what_the_readme_shows() -> None:
    """A change that moves these numbers updates the README in the same commit."""
    (example,) = _blocks("python")
    (shown,) = _blocks("text")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(example, "README.md", "exec"), {"__name__": "readme"})
    assert printed.getvalue() == shown


def test_ci_runs_exactly_the_readme_test_command() -> None:
    install_and_run, install_and_test = (block.strip() for block in _blocks("bash")[:2])
    extras = re.search(r"\.\[([\w,]+)\]", install_and_test)
    # the tests of asyncsim.torch and asyncsim.optax run in CI: their extras are installed there
    assert extras and {"test", "torch", "jax"} <= set(extras.group(1).split(","))
    assert "[" not in install_and_run  # the main job needs the core alone
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert "set -euo pipefail" in ci
    assert ci[-1] == install_and_test
