"""The dashboard in a real browser (Debian's chromium, headless) against the service and a real HAPI:
the DOM carries the flagged patients and reports, and the screenshot is inspected pixel by pixel. Under the
service's Content-Security-Policy (no inline style, no script): the colours prove the stylesheet loads, and the
patient page shows labinterp's reports as labinterp's (HAPI's Provenance and Device prove them) while a report
planted with script shows as text."""

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
from tests.integration.conftest import Service, own_copy

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


def plant_a_report(fhir_url: str, patient: str) -> None:
    """A DiagnosticReport written by someone else, with labinterp's series identifier and script in its fields."""
    evil = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    report = {
        "resourceType": "DiagnosticReport",
        "id": "planted-xss",
        "identifier": [{"system": "urn:labinterp:series", "value": "linezolid:planted"}],
        "status": "final",
        "code": {"text": f"Linezolid {evil}"},
        "subject": {"reference": f"Patient/{patient}"},
        "issued": "2026-01-20T12:00:00Z",
        "conclusion": f"planted {evil}",
        "text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p>planted</p></div>'},
    }
    assert requests.put(f"{fhir_url}/DiagnosticReport/planted-xss", json=report, timeout=60).status_code in (200, 201)


def test_dashboard_in_a_real_browser(loaded: str, tmp_path: Path) -> None:
    cohort, stats = tmp_path / "c.json", tmp_path / "stats.json"
    assert CliRunner().invoke(cli, ["cohort", "synth", "--out", str(cohort)]).exit_code == 0
    assert CliRunner().invoke(cli, ["cohort", "--input", str(cohort), "--out", str(stats)]).exit_code == 0
    svc = Service(loaded, tmp_path, worker=False, extra_env={"LABINTERP_COHORT_STATS": str(stats)})
    try:
        for pid in ("p01", "p02", "p08"):
            assert requests.post(f"{svc.url}/Patient/{pid}/$interpret", timeout=60).status_code == 200
        victim = own_copy(loaded, "p02", "xss-")  # planted on its own copy: the examples other tests read stay as loaded
        plant_a_report(loaded, victim)
        answer = requests.get(f"{svc.url}/dashboard", timeout=60)
        assert "default-src 'none'" in answer.headers["Content-Security-Policy"] and answer.headers["X-Frame-Options"] == "DENY"
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
        # labinterp's reports proved by HAPI's Provenance and Device: shown from labinterp's own findings, with the bar
        assert '<svg class="bar"' in page and "Not shown as a labinterp report" not in page and "Stored report" not in page
        patient_shot = tmp_path / "patient.png"
        browser(f"--screenshot={patient_shot}", "--window-size=1100,1100", f"{svc.url}/dashboard/Patient/p01")
        assert near(colours(patient_shot), (0x99, 0xCC, 0x99), tol=2), "the range bar's band (SVG, no inline style)"
        planted = browser("--dump-dom", f"{svc.url}/dashboard/Patient/{victim}").stdout
        assert "Not shown as a labinterp report" in planted and "<script>alert" not in planted
        assert "&lt;script&gt;alert" in planted and '<img src="x"' not in planted
        cohort_dom = browser("--dump-dom", f"{svc.url}/dashboard/cohort").stdout
        assert "190 patients" in cohort_dom and "CYP3A5" in cohort_dom and cohort_dom.count("data:image/png;base64,") == 2
        if os.environ.get("LABINTERP_UPDATE_SCREENSHOTS") == "1":  # refresh the README's screenshots
            shutil.copy(shot, DOCS / "dashboard.png")
            browser(f"--screenshot={DOCS / 'patient.png'}", "--window-size=1100,1100", f"{svc.url}/dashboard/Patient/p01")
    finally:
        svc.stop()
