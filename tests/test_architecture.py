"""The layers of asyncsim: each module imports only from its own layer or below.

:data:`LAYERS` is the one place the order is written. Every module under ``asyncsim/`` must be in it
(a new module fails until it is placed), and every import of an asyncsim module, parsed with
:mod:`ast` wherever it stands (module level, inside functions, under ``if TYPE_CHECKING:``), must go
to the same layer or a lower one. TYPE_CHECKING-only imports count: an annotation that names a
higher layer's type is a dependency on it all the same, and the stricter rule keeps the picture
simple. Dynamic imports (``importlib.import_module``) are not seen; the code base has none.

Around the layers: ``theory/`` never imports asyncsim, and no asyncsim module below
:data:`THEORY_FROM` (the experiments) imports ``theory``; the simulator and the theory meet only where
a prediction is held against a measurement.

``asyncsim/__init__.py`` may import anything; what it imports sets its own layer (the highest it
imports from), which is the layer of ``import asyncsim`` and ``from asyncsim import <a name that is
not a module>`` anywhere else.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "asyncsim"

#: The layers, lowest first: the one statement of the order. A name is a module (``sweep`` for
#: ``sweep.py``) or a subpackage (``experiments`` for ``experiments/``, every file inside it).
LAYERS: dict[int, tuple[str, ...]] = {
    0: ("_validate", "_rng", "_parallel", "_fingerprint", "_kernels", "_progress"),
    1: ("distributions", "trace"),
    2: ("cluster", "problems", "optim", "measure"),
    3: ("yellowfin", "mitigations", "engine", "hogwild"),
    4: ("sweep", "comparisons", "sweep_config"),
    5: ("experiments",),
    6: ("figures", "torch", "torch_cnn", "optax"),
    7: ("cli",),
}
#: The first layer that may import ``theory``: the experiments, and figures and the CLI above them.
THEORY_FROM = 5

ROOT = "__init__"  # the package itself


def _layer_of() -> dict[str, int]:
    names = [name for modules in LAYERS.values() for name in modules]
    repeated = sorted({name for name in names if names.count(name) > 1})
    assert not repeated, f"modules placed in more than one layer: {repeated}"
    assert ROOT not in names, "__init__ takes the layer of what it imports; do not place it"
    return {name: layer for layer, modules in LAYERS.items() for name in modules}


LAYER = _layer_of()


# ------------------------------------------------------------------------------------------ parsing
def imported_names(source: str, package: str) -> list[tuple[str, int]]:
    """Every name ``source`` imports, absolute and dotted, with its line: ``import a.b`` gives
    ``a.b``; ``from a.b import c`` gives ``a.b.c`` (``c`` may be a module or an attribute); relative
    imports are resolved against ``package``, the package the file belongs to. Every ``Import`` and
    ``ImportFrom`` node of the tree counts, wherever it stands."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                if node.level - 1 >= len(parts):
                    raise ValueError(f"line {node.lineno}: relative import beyond the top package")
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            found += [(f"{base}.{alias.name}", node.lineno) for alias in node.names]
    return found


def module_of(relative: str) -> tuple[str, str]:
    """``(module, package)`` of a file given relative to ``asyncsim/``: ``sweep.py`` is module
    ``sweep`` in package ``asyncsim``; ``experiments/run.py`` module ``experiments`` in package
    ``asyncsim.experiments``; ``__init__.py`` the root."""
    parts = relative.removesuffix(".py").split("/")
    return parts[0], ".".join([PACKAGE, *parts[:-1]])


def target_of(name: str, modules: set[str]) -> str | None:
    """The asyncsim module an imported dotted name belongs to, the root for ``asyncsim`` itself and
    for names that are no module of it, None outside asyncsim."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    if len(parts) > 1 and parts[1] in modules:
        return parts[1]
    return ROOT


def imports_theory(name: str) -> bool:
    return name == "theory" or name.startswith("theory.")


def layer_violations(files: dict[str, str]) -> list[str]:
    """What breaks the layers in ``files`` (path relative to ``asyncsim/`` -> source): modules not
    in :data:`LAYERS`, imports of a higher layer, and imports of ``theory`` below
    :data:`THEORY_FROM`. Empty when the package keeps its layers."""
    parsed = {}
    for relative, source in sorted(files.items()):
        module, package = module_of(relative)
        parsed[relative] = (module, imported_names(source, package))
    modules = {module for module, _ in parsed.values()} | set(LAYER)
    problems = sorted(
        f"{relative}: module {module!r} is in no layer of tests/test_architecture.py"
        for relative, (module, _) in parsed.items()
        if module != ROOT and module not in LAYER
    )
    root_layer = max(  # without the root's source, assume it exports every layer
        (
            LAYER.get(target, max(LAYERS))
            for module, names in parsed.values()
            if module == ROOT
            for name, _ in names
            if (target := target_of(name, modules)) not in (None, ROOT)
        ),
        default=0 if "__init__.py" in files else max(LAYERS),
    )
    layer = LAYER | {ROOT: root_layer}
    for relative, (module, names) in sorted(parsed.items()):
        own = layer.get(module)
        if own is None:
            continue  # reported above
        for name, line in names:
            if imports_theory(name) and own < THEORY_FROM:
                problems.append(
                    f"{relative}:{line}: {module} (layer {own}) imports {name}; only layer "
                    f"{THEORY_FROM} and above may import theory"
                )
            target = target_of(name, modules)
            if target is None or module == ROOT:
                continue
            if target not in layer:
                problems.append(f"{relative}:{line}: imports {name}, which is in no layer")
            elif layer[target] > own:
                problems.append(
                    f"{relative}:{line}: {module} (layer {own}) imports {name} "
                    f"({target}, layer {layer[target]})"
                )
    return problems


def theory_violations(files: dict[str, str]) -> list[str]:
    """Imports of asyncsim in ``files`` (path relative to ``theory/`` -> source)."""
    return [
        f"{relative}:{line}: theory imports {name}"
        for relative, source in sorted(files.items())
        for name, line in imported_names(source, "theory")
        if target_of(name, set()) is not None
    ]


def _sources(folder: str) -> dict[str, str]:
    root = REPO / folder
    return {
        path.relative_to(root).as_posix(): path.read_text(encoding="utf-8")
        for path in sorted(root.rglob("*.py"))
        if "__pycache__" not in path.parts
    }


# ------------------------------------------------------------------------------------------ the package
def test_every_module_is_placed_and_imports_only_its_layer_or_below() -> None:
    files = _sources(PACKAGE)
    assert {"__init__.py", "yellowfin.py", "sweep.py", "cli.py"} <= files.keys()
    problems = layer_violations(files)
    assert not problems, "layers broken:\n" + "\n".join(problems)


def test_yellowfin_is_an_optimizer_module() -> None:
    """The tuner imports nothing above the optimizers and measurements (layer 2)."""
    source = (REPO / PACKAGE / "yellowfin.py").read_text(encoding="utf-8")
    targets = {target_of(name, set(LAYER)) for name, _ in imported_names(source, PACKAGE)}
    targets.discard(None)
    assert targets <= {"_validate", "optim", "measure"}, targets
    assert not layer_violations({"yellowfin.py": source})


def test_theory_never_imports_asyncsim() -> None:
    files = _sources("theory")
    assert "__init__.py" in files
    problems = theory_violations(files)
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------------------------------ the checker
@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"trace.py": "from asyncsim.engine import run\n"}, ["trace (layer 1) imports"]),
        (  # inside a function
            {"optim.py": "def f():\n    import asyncsim.sweep as s\n    return s\n"},
            ["optim.py:2: optim (layer 2) imports asyncsim.sweep (sweep, layer 4)"],
        ),
        (  # under TYPE_CHECKING
            {"trace.py": "if TYPE_CHECKING:\n    from asyncsim.cluster import ClusterConfig\n"},
            ["trace.py:2: trace (layer 1) imports asyncsim.cluster.ClusterConfig"],
        ),
        ({"measure.py": "from . import engine\n"}, ["measure (layer 2) imports asyncsim.engine "]),
        ({"measure.py": "from .sweep import Sweep\n"}, ["imports asyncsim.sweep.Sweep (sweep"]),
        ({"experiments/a.py": "from ..figures import x\n"}, ["imports asyncsim.figures.x"]),
        ({"cluster.py": "from asyncsim import Trace\n"}, ["imports asyncsim.Trace (__init__"]),
        ({"engine.py": "import theory.numeric\n"}, ["only layer 5 and above may import theory"]),
        ({"gadget.py": "import numpy\n"}, ["module 'gadget' is in no layer"]),
        # allowed: same layer, lower layers, relative within a subpackage, the root from the top
        ({"sweep.py": "from asyncsim.comparisons import x\nfrom . import trace\n"}, []),
        ({"experiments/b.py": "from .a import y\nfrom theory import numeric\n"}, []),
        (
            {
                "cli.py": "from asyncsim import __version__\n",
                "__init__.py": "import asyncsim.sweep",
            },
            [],
        ),
        ({"__init__.py": "from asyncsim.cli import main\n"}, []),
    ],
)
def test_the_checker_catches_what_it_should(files: dict[str, str], expected: list[str]) -> None:
    problems = layer_violations(files)
    assert len(problems) == len(expected), problems
    for problem, part in zip(problems, expected, strict=True):
        assert part in problem, (problem, part)


def test_the_root_takes_the_layer_of_what_it_exports() -> None:
    """``from asyncsim import X`` is an import of everything ``__init__`` imports."""
    root = {"__init__.py": "from asyncsim.sweep import Sweep\n"}
    assert layer_violations(root | {"engine.py": "import asyncsim\n"})
    assert not layer_violations(root | {"sweep.py": "import asyncsim\n"})


def test_the_theory_check_catches_an_import_of_asyncsim() -> None:
    files = {
        "numeric.py": "def f():\n    from asyncsim.trace import Trace\n",
        "a.py": "from . import b",
    }
    assert theory_violations(files) == ["numeric.py:2: theory imports asyncsim.trace.Trace"]
