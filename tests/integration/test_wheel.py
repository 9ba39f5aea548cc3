"""The package as a user installs it (issue 8): a non-editable wheel whose only top-level import name is
`labinterp`, with mappings/ and the examples inside it, interprets a Bundle from another directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.integration


def test_wheel_installs_and_interprets_from_elsewhere(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)], check=True)
    wheel = next(wheels.glob("labinterp-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {"labinterp"}
    assert "labinterp/mappings/linezolid.toml" in names and "labinterp/mappings/pgx/cyp3a5.toml" in names
    assert "labinterp/examples/patients.json" in names and "labinterp/templates/report_fragment.html" in names
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)], check=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = elsewhere / "out.json"
    env = {**os.environ, "PYTHONPATH": str(target)}
    bundle = ROOT / "tests" / "data" / "patients" / "p01.json"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "labinterp.cli",
            "interpret",
            "--bundle",
            str(bundle),
            "--now",
            "2026-01-20T12:00:00Z",
            "--out",
            str(out),
        ],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    where = subprocess.run(
        [sys.executable, "-c", "import labinterp; print(labinterp.__file__)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
    )
    assert where.stdout.startswith(str(target))  # the installed copy, not the checkout
    written = json.loads(out.read_text())
    assert written["type"] == "transaction" and any(e["resource"]["resourceType"] == "DiagnosticReport" for e in written["entry"])
