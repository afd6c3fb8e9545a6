"""What a new user gets: the README's first command in a fresh virtual environment, and every public
module without the optional packages.

The fresh-environment test is the one that catches a core dependency missing from ``pyproject.toml``:
the test extra installs more than the core, so the rest of the suite cannot see such a gap.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
EXTRAS: dict[str, list[str]] = PYPROJECT["project"]["optional-dependencies"]

#: Import names of the distributions the extras bring, where they differ from the distribution name.
IMPORT_NAMES = {"dask[distributed]": ("dask", "distributed"), "jupyterlab": ("jupyterlab",)}

#: The public modules that need an extra: the import names they need and the extra their ImportError
#: names. Every other module works without any extra.
NEEDS_EXTRA = {
    "asyncsim.torch": ({"torch"}, "torch"),
    "asyncsim.torch_cnn": ({"torch"}, "torch"),
    "asyncsim.optax": ({"jax", "optax"}, "jax"),
}


def _import_names(requirement: str) -> tuple[str, ...]:
    name = re.split(r"[<>=!~; ]", requirement, maxsplit=1)[0]
    return IMPORT_NAMES.get(name, (name.replace("-", "_"),))


def _public_modules() -> list[str]:
    """Every module of the two packages whose name has no leading underscore."""
    names = []
    for package in ("asyncsim", "theory"):
        for path in sorted((REPO / package).glob("*.py")):
            if path.stem == "__init__":
                names.append(package)
            elif not path.stem.startswith("_"):
                names.append(f"{package}.{path.stem}")
    return names


def readme_command(n: int) -> str:
    """The n-th (0-based) shell command in the README's ```bash blocks."""
    blocks = re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), re.DOTALL)
    return blocks[n].strip()


# ------------------------------------------------------------------------------- optional packages
BLOCKED_IMPORT = """
import sys
for name in {blocked!r}:
    sys.modules[name] = None  # "import name" now raises ImportError
import importlib
for module in {modules!r}:
    importlib.import_module(module)
for module, extra in {refused!r}:
    try:
        importlib.import_module(module)
    except ImportError as error:
        assert f"pip install 'asyncsim[{{extra}}]'" in str(error), str(error)
    else:
        raise AssertionError(f"{{module}} imported with its extra blocked")
from asyncsim.cli import main
assert main(["staleness", "--workers", "2", "--updates", "200", "--seed", "0"]) == 0
import asyncsim.figures
result = asyncsim.figures.figure("staleness", scale="quick", rng=0, jobs=1)
print("ok", len(result.data))
for name in {blocked!r}:
    assert sys.modules[name] is None, name
"""


@pytest.mark.parametrize("extra", sorted(EXTRAS))
def test_every_public_module_works_without_the_extra(extra: str) -> None:
    """With every package of an extra blocked, each public module imports, the CLI runs and a figure is
    made: no asyncsim or theory module needs an extra, except those of :data:`NEEDS_EXTRA`, which fail
    with an ImportError naming the extra to install."""
    blocked = sorted({name for req in EXTRAS[extra] for name in _import_names(req)})
    refused = [
        (module, needed_extra)
        for module, (needs, needed_extra) in NEEDS_EXTRA.items()
        if needs & set(blocked)
    ]
    modules = [m for m in _public_modules() if m not in dict(refused)]
    code = BLOCKED_IMPORT.format(blocked=blocked, modules=modules, refused=refused)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[-1].startswith("ok ")


def test_the_blocking_itself_works() -> None:
    """The check above can fail: a blocked package really cannot be imported."""
    code = "import sys; sys.modules['numpy'] = None; import asyncsim"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode != 0 and "numpy" in done.stderr


def _guarded(tree: ast.AST) -> set[int]:
    """ids of the import nodes inside a ``try`` whose handlers catch ImportError: optional imports
    with a fallback."""
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
            handler.type is not None
            and {"ImportError", "ModuleNotFoundError"}
            & {n.id for n in ast.walk(handler.type) if isinstance(n, ast.Name)}
            for handler in node.handlers
        ):
            guarded |= {id(inner) for stmt in node.body for inner in ast.walk(stmt)}
    return guarded


def _requirement_names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~; \[]", req, maxsplit=1)[0].lower() for req in requirements}


def test_the_core_dependencies_are_what_the_modules_import() -> None:
    """Every third-party package imported anywhere in asyncsim/ or theory/ (at module level or inside a
    function) is a core dependency, except an optional accelerator: imported inside ``try`` /
    ``except ImportError`` (the library falls back without it) and declared in an extra."""
    core = _requirement_names(PYPROJECT["project"]["dependencies"])
    extras = _requirement_names(
        [req for reqs in PYPROJECT["project"]["optional-dependencies"].values() for req in reqs]
    )
    distribution = {"sklearn": "scikit-learn"}
    local = {"asyncsim", "theory"}
    imported: dict[str, str] = {}
    optional: dict[str, str] = {}
    paths = [*(REPO / "asyncsim").rglob("*.py"), *(REPO / "theory").glob("*.py")]
    for path in sorted(paths):
        tree = ast.parse(path.read_text())
        guarded = _guarded(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                tops = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops = [node.module.split(".")[0]]
            else:
                continue
            for top in tops:
                if top not in sys.stdlib_module_names and top not in local:
                    found = optional if id(node) in guarded else imported
                    found.setdefault(distribution.get(top, top).lower(), path.name)
    assert imported, "the scan found no import at all: the pattern is broken"
    missing = {name: where for name, where in imported.items() if name not in core}
    assert not missing, f"imported but not core dependencies: {missing}"
    undeclared = {name: where for name, where in optional.items() if name not in core | extras}
    assert not undeclared, f"optional imports in no extra: {undeclared}"


def test_the_guard_scan_tells_optional_from_required() -> None:
    tree = ast.parse(
        "import numpy\ntry:\n    import numba\nexcept ImportError:\n    numba = None\n"
        "try:\n    import jax\nexcept ValueError:\n    pass\n"
    )
    guarded = _guarded(tree)
    names = {
        alias.name: id(node) in guarded
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    assert names == {"numpy": False, "numba": True, "jax": False}


# ------------------------------------------------------------------------------- fresh environment
@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment with only pip in it: no test extra, nothing inherited from this
    interpreter. Shared by the two installs below (the second finds the dependencies in place and
    replaces only asyncsim), which halves the time the dependencies take to install."""
    env_dir = tmp_path_factory.mktemp("fresh") / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    return env_dir


@pytest.mark.slow
@pytest.mark.parametrize("editable", [True, False], ids=["editable", "non-editable"])
def test_readme_first_command_in_a_fresh_venv(fresh_venv: Path, editable: bool) -> None:
    """The README's first command, install then the main job (at one figure's size), with the install
    as the README writes it and without ``-e``."""
    install, job = (part.strip() for part in readme_command(0).split("&&"))
    assert install.startswith("python -m pip install") and job.startswith("asyncsim figures")
    bin_dir = fresh_venv / "bin"
    environ = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    environ.pop("PYTHONPATH", None)
    args = shlex.split(install)
    if not editable:
        args.remove("-e")
    python = str(bin_dir / "python")
    args[0] = python

    def run(argv: list[str], cwd: Path) -> str:
        done = subprocess.run(
            argv, cwd=cwd, env=environ, capture_output=True, text=True, timeout=1200
        )
        assert done.returncode == 0, f"{argv} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    run(args, REPO)
    work = fresh_venv.parent / ("editable" if editable else "installed")  # outside the repository
    work.mkdir()
    out = run([*shlex.split(job), "--only", "staleness", "--scale", "quick", "--jobs", "1"], work)
    assert "done in" in out
    assert (work / "figures" / "staleness.png").stat().st_size > 0
    assert (work / "figures" / "staleness.csv").stat().st_size > 0
    where = run([python, "-c", "import asyncsim.figures, theory; print(asyncsim.__file__)"], work)
    assert Path(where.strip()).is_relative_to(REPO) == editable
    has_pytest = subprocess.run([python, "-c", "import pytest"], env=environ, capture_output=True)
    assert has_pytest.returncode != 0, "the fresh environment has pytest: it is not fresh"
