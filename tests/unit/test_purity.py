"""The functional core does no I/O: rules/, extract/, compose/ and render/ import no network, database, web,
file-system, environment or process modules, read no clock and draw no random numbers (ARCHITECTURE
principles 1, 4). render/ may build a PDF in memory (io.BytesIO), nothing more."""

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
    "os",
    "secrets",
    "time",
    "labinterp.fhir",
    "labinterp.server.api",
    "labinterp.pipeline",
    "labinterp.cli.main",
    "labinterp.writeback",
    "pathlib",
    "io",
)
FORBIDDEN_CALLS = {"open", "print", "input"}
FORBIDDEN_ATTRS = {
    ("datetime", "now"),
    ("datetime", "utcnow"),
    ("datetime", "today"),
    ("date", "today"),
    ("uuid", "uuid4"),
    ("uuid", "uuid1"),
    ("time", "time"),
    ("os", "environ"),
    ("os", "getenv"),
}
ALLOWED_IN = {"render": {"io"}}  # a PDF is built in an in-memory buffer


def core_files() -> list[Path]:
    return sorted(p for d in ("rules", "extract", "compose", "render") for p in (CORE / d).rglob("*.py"))


def problems(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        allowed = ALLOWED_IN.get(path.parent.name, set())
        for name in names:
            if name not in allowed and any(name == m or name.startswith(m + ".") for m in FORBIDDEN_MODULES):
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
    worse = tmp_path / "worse.py"
    worse.write_text("import os\nimport random\nimport io\nx = os.environ\n")
    assert len(problems(worse)) == 4  # os, random, io (outside render/), os.environ
