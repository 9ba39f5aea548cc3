"""The functional core does no I/O: rules/, extract/ and compose/ import no network, database, web,
file-system or process modules, read no clock and draw no random numbers (ARCHITECTURE principles 1, 4)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "service" / "labinterp"
FORBIDDEN_MODULES = (
    "flask",
    "requests",
    "urllib",
    "http",
    "socket",
    "sqlite3",
    "subprocess",
    "shutil",
    "tempfile",
    "random",
    "labinterp.fhir",
    "labinterp.server.api",
    "labinterp.pipeline",
    "labinterp.cli.main",
    "labinterp.writeback",
    "pathlib",
    "io",
)
FORBIDDEN_CALLS = {"open", "print", "input"}
FORBIDDEN_ATTRS = {("datetime", "now"), ("datetime", "utcnow"), ("date", "today"), ("uuid", "uuid4"), ("time", "time")}


def core_files() -> list[Path]:
    return sorted(p for d in ("rules", "extract", "compose") for p in (CORE / d).rglob("*.py"))


def problems(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            if any(name == m or name.startswith(m + ".") for m in FORBIDDEN_MODULES):
                found.append(f"{path.name}:{node.lineno} imports {name}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_CALLS:
            found.append(f"{path.name}:{node.lineno} calls {node.func.id}()")
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and (node.value.id, node.attr) in FORBIDDEN_ATTRS:
            found.append(f"{path.name}:{node.lineno} uses {node.value.id}.{node.attr}")
    return found


def test_core_files_exist() -> None:
    assert len(core_files()) >= 15


@pytest.mark.parametrize("path", core_files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_core_is_pure(path: Path) -> None:
    assert problems(path) == []


def test_the_checker_catches_io(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import requests\nfrom datetime import datetime\nx = datetime.now()\nopen('f')\n")
    assert len(problems(bad)) == 3
