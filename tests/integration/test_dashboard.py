"""The dashboard in a real browser (Debian's chromium, headless) against the service and a real HAPI:
the DOM carries the flagged patients and reports, and the screenshot is inspected pixel by pixel."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from PIL import Image

from labinterp.cli.main import cli
from tests.integration.conftest import Service

pytestmark = pytest.mark.integration

DOCS = Path(__file__).resolve().parents[2] / "docs"


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("Debian's chromium is needed for the browser test (apt-get install chromium; .ci/run installs it)")
    return found


def browser(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def colours(png: Path) -> set[tuple[int, int, int]]:
    with Image.open(png) as img:
        return {c for _, c in (img.convert("RGB").getcolors(maxcolors=1 << 22) or [])}


def near(found: set[tuple[int, int, int]], rgb: tuple[int, int, int], tol: int = 12) -> bool:
    return any(all(abs(a - b) <= tol for a, b in zip(c, rgb, strict=True)) for c in found)


def test_dashboard_in_a_real_browser(loaded: str, tmp_path: Path) -> None:
    cohort, stats = tmp_path / "c.json", tmp_path / "stats.json"
    assert CliRunner().invoke(cli, ["cohort", "synth", "--out", str(cohort)]).exit_code == 0
    assert CliRunner().invoke(cli, ["cohort", "--input", str(cohort), "--out", str(stats)]).exit_code == 0
    svc = Service(loaded, tmp_path, worker=False, extra_env={"LABINTERP_COHORT_STATS": str(stats)})
    try:
        for pid in ("p01", "p02", "p08"):
            assert requests.post(f"{svc.url}/Patient/{pid}/$interpret", timeout=60).status_code == 200
        dom = browser("--dump-dom", f"{svc.url}/dashboard").stdout
        assert "Flagged patients" in dom and "Recent reports" in dom
        assert 'href="/dashboard/Patient/p01"' in dom and 'class="flag lo"' in dom and "Linezolid underexposure: high" in dom
        shot = tmp_path / "dashboard.png"
        browser(f"--screenshot={shot}", "--window-size=1280,900", f"{svc.url}/dashboard")
        with Image.open(shot) as img:
            assert img.size == (1280, 900)
        found = colours(shot)
        assert near(found, (0x22, 0x33, 0x44)) and near(found, (0xCC, 0x00, 0x00)) and near(found, (0x00, 0x66, 0xCC)), (
            "header and flags"
        )
        page = browser("--dump-dom", f"{svc.url}/dashboard/Patient/p01").stdout
        assert "Linezolid trough trend" in page and "data:image/png;base64," in page and "below the therapeutic range" in page
        cohort_dom = browser("--dump-dom", f"{svc.url}/dashboard/cohort").stdout
        assert "190 patients" in cohort_dom and "CYP3A5" in cohort_dom and cohort_dom.count("data:image/png;base64,") == 2
        if os.environ.get("LABINTERP_UPDATE_SCREENSHOTS") == "1":  # refresh the README's screenshots
            shutil.copy(shot, DOCS / "dashboard.png")
            browser(f"--screenshot={DOCS / 'patient.png'}", "--window-size=1100,1100", f"{svc.url}/dashboard/Patient/p01")
    finally:
        svc.stop()
