"""The notebooks: committed without outputs, public API only, on the library's experiments, each stating
its run time, executed at a small scale.

Each notebook's first code cell reads the scale from ``ASYNCSIM_NOTEBOOK_SCALE``; the execution tests set
it to ``small`` and run the notebook with nbclient, on a kernel of this very interpreter (ipykernel's own
kernel spec, so no ``python -m ipykernel install`` is needed and no other installed kernel is picked up),
in a temporary working directory, and check that nothing was written into the repository (outside
``figures/``, where notebooks may write). The explorer (07) runs its static grid there
(``ASYNCSIM_EXPLORER_WIDGETS=off``), and once more with its sliders built.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import re
import subprocess
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from traitlets import default

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
EXPECTED = (
    "01-staleness.ipynb",
    "02-asynchrony-begets-momentum.ipynb",
    "03-robust-region.ipynb",
    "04-yellowfin.ipynb",
    "05-closed-loop.ipynb",
    "06-hardware-vs-statistical-efficiency.ipynb",
    "07-explorer.ipynb",
)
SCALE_VARIABLE = "ASYNCSIM_NOTEBOOK_SCALE"
WIDGETS_VARIABLE = "ASYNCSIM_EXPLORER_WIDGETS"
ALLOWED_MODULES = {"os", "numpy", "matplotlib", "pandas", "asyncsim", "theory", "ipywidgets"}
#: Notebooks whose measurements are not experiments of ``asyncsim.experiments``: the explorer draws
#: theory's rate map and one engine run at the point a slider picks.
WITHOUT_EXPERIMENTS = {"07-explorer.ipynb"}
RUN_TIME = re.compile(r"\*\*Run time\*\*[^.]*?about (\d+ (s|min)|a minute)")
CELL_TIMEOUT = 600  # seconds; at the small scale a notebook takes well under a minute
# Folders a notebook may write into (figures/), or that Python and the tools manage themselves.
UNWATCHED = {
    ".git",
    "__pycache__",
    ".pytest_cache",
    ".hypothesis",
    ".ruff_cache",
    ".mypy_cache",
    ".venv",
    "build",
    "dist",
    "figures",
}

by_name = pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _code_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def _python_source(cell: nbformat.NotebookNode) -> str:
    """The cell's source without IPython magics and shell escapes (``%...``, ``!...``)."""
    return "\n".join(
        line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!"))
    )


def test_every_notebook_is_there() -> None:
    assert sorted(p.name for p in NOTEBOOKS if p.name in EXPECTED) == sorted(EXPECTED)


@by_name
def test_committed_without_outputs(path: Path) -> None:
    nbformat.validate(_read(path))
    for i, cell in enumerate(_code_cells(_read(path))):
        assert cell.outputs == [], f"{path.name}: code cell {i} has outputs; strip them"
        assert cell.execution_count is None, f"{path.name}: code cell {i} has an execution count"


@by_name
def test_first_code_cell_reads_the_scale(path: Path) -> None:
    first = _code_cells(_read(path))[0]
    assert SCALE_VARIABLE in first.source
    assert "parameters" in first.metadata.get("tags", [])


@by_name
def test_imports_only_the_public_api(path: Path) -> None:
    for i, cell in enumerate(_code_cells(_read(path))):
        for node in ast.walk(ast.parse(_python_source(cell))):
            where = f"{path.name}, code cell {i}, line {getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    _check_module(alias.name, where)
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0 and node.module, f"{where}: relative import"
                _check_module(node.module, where)
                if node.module.split(".")[0] in ("asyncsim", "theory"):
                    imported = importlib.import_module(node.module)
                    public = getattr(imported, "__all__", ())
                    for alias in node.names:
                        submodule = (
                            not alias.name.startswith("_")
                            and hasattr(imported, "__path__")  # a package
                            and importlib.util.find_spec(f"{node.module}.{alias.name}") is not None
                        )
                        assert alias.name in public or submodule, (
                            f"{where}: {alias.name} is not in {node.module}.__all__ "
                            "nor a public module"
                        )
            elif isinstance(node, ast.Attribute) and node.attr.startswith("_"):
                base = node.value
                while isinstance(base, ast.Attribute):
                    base = base.value
                if isinstance(base, ast.Name) and base.id in _library_names(path):
                    pytest.fail(f"{where}: private name {node.attr}")


def _library_names(path: Path) -> set[str]:
    """The names a notebook binds to asyncsim and theory and their modules (``asyncsim``,
    ``experiments`` of ``from asyncsim import experiments``, ``ex`` of ``import ... as ex``)."""
    names = {"asyncsim", "theory"}
    for cell in _code_cells(_read(path)):
        for node in ast.walk(ast.parse(_python_source(cell))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                module = node.module if isinstance(node, ast.ImportFrom) else None
                for alias in node.names:
                    root = (module or alias.name).split(".")[0]
                    if root in ("asyncsim", "theory"):
                        names.add(alias.asname or alias.name.split(".")[0])
    return names


def test_a_private_name_through_an_alias_is_caught(tmp_path: Path) -> None:
    """The check above sees private names reached through any name bound to the library."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("from asyncsim import experiments as ex\nex._schedule")]
    probe = tmp_path / "probe.ipynb"
    nbformat.write(nb, probe)
    with pytest.raises(pytest.fail.Exception, match="private name _schedule"):
        test_imports_only_the_public_api(probe)


@by_name
def test_heavy_lifting_is_the_library_experiments(path: Path) -> None:
    """Each notebook calls at least one experiment function of ``asyncsim.experiments`` (through
    ``experiments.<name>(...)``); the explorer is the one exception (see WITHOUT_EXPERIMENTS)."""
    called = {
        node.func.attr
        for cell in _code_cells(_read(path))
        for node in ast.walk(ast.parse(_python_source(cell)))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "experiments"
    }
    import asyncsim.experiments

    experiments = {name for name in called if name in asyncsim.experiments.__all__}
    if path.name in WITHOUT_EXPERIMENTS:
        assert not experiments, f"{path.name} calls {experiments}: drop it from WITHOUT_EXPERIMENTS"
    else:
        assert experiments - {"settings"}, (
            f"{path.name} calls no experiment of asyncsim.experiments"
        )


@by_name
def test_states_its_run_time_at_the_default_scale(path: Path) -> None:
    intro = _read(path).cells[0]
    assert intro.cell_type == "markdown" and RUN_TIME.search(intro.source), (
        f"{path.name}: the first cell must say '**Run time** ... about N s' (or N min)"
    )


def _check_module(name: str, where: str) -> None:
    parts = name.split(".")
    assert parts[0] in ALLOWED_MODULES, f"{where}: imports {name}"
    assert not any(p.startswith("_") for p in parts), f"{where}: imports private module {name}"


def test_readme_links_every_notebook() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert "## Notebooks" in readme
    for name in EXPECTED:
        assert f"(notebooks/{name})" in readme, f"README.md does not link notebooks/{name}"


class _ThisInterpreterKernel(AsyncKernelManager):
    """A kernel of the running interpreter: ipykernel's built-in spec, whatever specs are installed."""

    @default("kernel_spec_manager")
    def _only_the_native_kernel(self) -> KernelSpecManager:
        return KernelSpecManager(kernel_dirs=[])


def _repo_state() -> set[str]:
    """What the repository holds beyond its last commit, outside the unwatched folders.

    In a git checkout: the lines of ``git status`` (new, modified, deleted and ignored paths, one per
    file). Edits to a file that was already modified do not show, so other work going on in the same
    tree is not mistaken for the notebook's. Elsewhere: the set of file paths.
    """
    try:
        listing = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=all", "--ignored"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
        entries = {(line, line[3:]) for line in listing}
    except (OSError, subprocess.CalledProcessError):  # not a git checkout, or no git
        entries = set()
        for root, dirs, names in os.walk(REPO_ROOT):
            dirs[:] = [d for d in dirs if d not in UNWATCHED]
            for name in names:
                path = str(Path(root, name).relative_to(REPO_ROOT))
                entries.add((path, path))
    return {
        entry
        for entry, path in entries
        if not any(part in UNWATCHED or part.endswith(".egg-info") for part in Path(path).parts)
    }


@pytest.mark.slow
@by_name
def test_runs_at_small_scale(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb = _read(path)
    monkeypatch.setenv(SCALE_VARIABLE, "small")  # the kernel inherits this environment
    monkeypatch.setenv(WIDGETS_VARIABLE, "off")  # the explorer's static grid
    _execute(nb, tmp_path)


def _execute(nb: nbformat.NotebookNode, tmp_path: Path, timeout: int = CELL_TIMEOUT) -> None:
    """Run ``nb`` in ``tmp_path``; check that it wrote nothing into the repository and printed no
    RuntimeWarning."""
    before = _repo_state()
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        kernel_manager_class=_ThisInterpreterKernel,
        resources={"metadata": {"path": str(tmp_path)}},  # the kernel's working directory
    )
    client.execute()  # raises CellExecutionError at the first cell that fails
    after = _repo_state()
    assert after == before, (
        "the notebook wrote into the repository (or someone else did meanwhile): "
        f"new {sorted(after - before)}, gone {sorted(before - after)}"
    )
    stderr = [
        out.text
        for cell in _code_cells(nb)
        for out in cell.outputs
        if out.output_type == "stream" and out.name == "stderr"
    ]
    assert not [text for text in stderr if "RuntimeWarning" in text], stderr


@pytest.mark.slow
def test_the_explorer_builds_its_sliders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With ipywidgets (installed with the notebooks extra) the explorer shows three sliders that
    redraw on release, and its first drawing renders."""
    pytest.importorskip("ipywidgets")
    nb = _read(NOTEBOOK_DIR / "07-explorer.ipynb")
    monkeypatch.setenv(SCALE_VARIABLE, "small")
    monkeypatch.setenv(WIDGETS_VARIABLE, "on")
    # 10 s alone; once seen to stall with an idle kernel late in a full run: fail in minutes, not 10
    _execute(nb, tmp_path, timeout=180)
    views = [
        out
        for cell in _code_cells(nb)
        for out in cell.outputs
        if "application/vnd.jupyter.widget-view+json" in out.get("data", {})
    ]
    assert len(views) == 1, "the sliders were not displayed"
    source = "".join(cell.source for cell in _code_cells(nb))
    assert source.count("continuous_update=False") == 3  # redrawn on release, not while dragging
