"""The repository stands alone: no file refers to a document outside it, the reference data is what
``tests/data/README.md`` says it is, and the licence is the one ``pyproject.toml`` declares."""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TEXT_SUFFIXES = {".py", ".md", ".ipynb", ".toml", ".json", ".txt", ".cfg", ".mplstyle", ""}
SKIPPED_FOLDERS = {".git", "build", "dist", "sweeps", "__pycache__"}

#: A path-like token naming a document: something.md, .ipynb or .json, with optional folders.
DOCUMENT = re.compile(
    r"(?<![\w/.-])((?:\.\.?/)*(?:[\w.-]+/)*[\w-][\w.-]*\.(?:md|ipynb|json))(?![\w])"
)
#: A Markdown link or image target.
LINK = re.compile(r"\]\(([^)\s]+)\)")
URL = re.compile(r"[a-z]+://\S+")
#: The folder beside the repository that no file may read or cite, and the two documents that once
#: stood there (spelled in pieces, so that a plain grep of the repository finds them nowhere).
OUTSIDE = "../" + "shared"
OLD_THEORY = "theory" + ".md"
OLD_SPEC = "spec/" + "yellowfin.md"
#: Names of files the library or a test writes, which are not documents to find in the repository.
WRITTEN = {"sweep.json", "probe.ipynb"}  # a sweep folder's manifest; a test's notebook in tmp_path


def _repository_files() -> list[Path]:
    files = []
    for path in REPO.rglob("*"):
        parts = path.relative_to(REPO).parts
        hidden = any(p.startswith(".") and p != ".ci" for p in parts)
        if hidden or SKIPPED_FOLDERS & set(parts) or any(p.endswith(".egg-info") for p in parts):
            continue
        if path.is_file() and path.suffix in TEXT_SUFFIXES:
            files.append(path)
    return sorted(files)


FILES = _repository_files()
ALL_PATHS = {p.relative_to(REPO).as_posix() for p in REPO.rglob("*") if ".git" not in p.parts}


def _text(path: Path) -> str:
    """The text a reader sees: for a notebook, its cells' sources."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".ipynb":
        return "\n".join("".join(cell["source"]) for cell in json.loads(text)["cells"])
    return text


def _resolves(target: str, source: Path) -> bool:
    """Whether ``target``, as written in ``source``, names a file or folder inside the repository."""
    for base in (source.parent, REPO):
        candidate = (base / target).resolve()
        if candidate.is_relative_to(REPO) and candidate.exists():
            return True
    if target.startswith("../"):
        return False
    # a name given relative to some folder of the repository (``data/x.json``, ``README.md``)
    return any(path == target or path.endswith("/" + target) for path in ALL_PATHS)


def dangling_references(text: str, source: Path) -> list[str]:
    """Document names and Markdown links in ``text`` (as written in the file ``source``) that name no
    file of the repository."""
    text = URL.sub("", text)
    found = []
    if OUTSIDE in text:
        found.append(OUTSIDE)
    for match in DOCUMENT.finditer(text):
        if match.group(1) not in WRITTEN and not _resolves(match.group(1), source):
            found.append(match.group(1))
    if source.suffix in (".md", ".ipynb"):
        for match in LINK.finditer(text):
            target = match.group(1).split("#")[0]
            if target and not target.startswith("mailto:") and not _resolves(target, source):
                found.append(target)
    return found


def test_the_scan_sees_the_repository() -> None:
    names = {p.relative_to(REPO).as_posix() for p in FILES}
    assert {"README.md", "theory/README.md", "asyncsim/engine.py", ".ci/run"} <= names
    assert any(name.endswith(".ipynb") for name in names)


@pytest.mark.parametrize(
    ("text", "dangling"),
    [
        (f"see {OLD_THEORY} §2", [OLD_THEORY]),
        (f"as {OLD_SPEC} says", [OLD_SPEC]),
        (f"read {OUTSIDE}/reference/x.json", [OUTSIDE, f"{OUTSIDE}/reference/x.json"]),
        ("[the theory](theory/README.md) and [a figure](figures/staleness.png)", []),
        ("[gone](figures/nothing.png), README.md, data/README.md", ["figures/nothing.png"]),
        ("https://example.org/page.md is a web page", []),
    ],
)
def test_the_reference_check_catches_what_it_should(text: str, dangling: list[str]) -> None:
    assert dangling_references(text, REPO / "probe.md") == dangling


def test_no_file_refers_to_a_document_outside_the_repository() -> None:
    dangling = {
        path.relative_to(REPO).as_posix(): refs
        for path in FILES
        if path != Path(__file__).resolve()  # its examples name what must not resolve
        and (refs := dangling_references(_text(path), path))
    }
    assert not dangling, f"references to documents not in the repository: {dangling}"


# ------------------------------------------------------------------------------- reference data
def _data_table() -> dict[str, str]:
    """``file -> sha256`` from the table in ``tests/data/README.md``."""
    readme = (REPO / "tests" / "data" / "README.md").read_text()
    return dict(re.findall(r"^\| `([^`]+)` \| `([0-9a-f]{64})` \|", readme, re.M))


def test_every_data_file_is_listed_with_its_checksum() -> None:
    table = _data_table()
    assert table, "tests/data/README.md lists no file"
    present = {p.name for p in (REPO / "tests" / "data").iterdir() if p.name != "README.md"}
    assert present == set(table), "tests/data and its README's table disagree"
    for name, sha in table.items():
        digest = hashlib.sha256((REPO / "tests" / "data" / name).read_bytes()).hexdigest()
        assert digest == sha, f"tests/data/{name} changed: sha256 {digest}, README says {sha}"


def test_the_licence_file_is_the_declared_licence() -> None:
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["license"]["text"]
    assert (REPO / "LICENSE").read_text().splitlines()[0] == f"{declared} License"
