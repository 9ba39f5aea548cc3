"""Rendered reports: an HTML and a PDF for each example patient's reports, the PDF's text carrying the
key facts, the HTML body as the FHIR narrative, and the same findings giving the same bytes."""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest
from pypdf import PdfReader

from service.cli import read_json
from service.knowledge import Knowledge
from service.pipeline import interpret_bundle
from tests.conftest import NOW
from tests.golden_tool import PATIENTS


def reports(site_k: Knowledge, pid: str) -> dict[str, dict[str, Any]]:
    bundle = interpret_bundle(read_json(str(PATIENTS / f"{pid}.json")), site_k, NOW).bundle
    return {
        e["resource"]["code"]["text"].split(" ")[0]: e["resource"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "DiagnosticReport"
    }


def pdf_text(report: dict[str, Any]) -> str:
    form = next(f for f in report["presentedForm"] if f["contentType"] == "application/pdf")
    reader = PdfReader(io.BytesIO(base64.b64decode(form["data"])))
    return " ".join((page.extract_text() or "") for page in reader.pages).replace("\n", " ")


def html_text(report: dict[str, Any]) -> str:
    form = next(f for f in report["presentedForm"] if f["contentType"] == "text/html")
    return base64.b64decode(form["data"]).decode()


FACTS = {
    ("p01", "Linezolid"): [
        "1.5 mg/L",
        "below the therapeutic range",
        "CYP3A5 expresser",
        "0.259",
        "600 mg every 8 h",
        "eGFR 70.1",
        "rule set 2026.11.0",
    ],
    ("p01", "Pharmacogenetic"): ["CYP3A5", "*1/*3", "Intermediate metabolizer", "POR"],
    ("p02", "Linezolid"): ["12.4 ug/mL", "above the therapeutic range", "300 mg every 12 h", "0.650"],
    ("p05", "Linezolid"): ["52 mg/L", "above the measurable range", "repeat the measurement with dilution"],
    ("p06", "Linezolid"): ["not a valid steady-state trough", "BELOW the MIC"],
    ("p08", "Serum"): [
        "severe hypomagnesemia",
        "15 minutes",
        "Loop diuretic",
        "Proton pump inhibitor",
        "Cardiac arrhythmia",
        "high",
    ],
    ("p09", "Serum"): ["reduce the magnesium dose by 50 %"],
    ("p12", "Pharmacogenetic"): ["TTT/TTT", "no known effect"],
    ("p14", "Renal"): ["KDIGO G3a", "Cockcroft-Gault"],
}


@pytest.mark.parametrize(("pid", "kind"), sorted(FACTS))
def test_pdf_and_html_carry_the_key_facts(site_k: Knowledge, pid: str, kind: str) -> None:
    report = reports(site_k, pid)[kind]
    text, html = pdf_text(report), html_text(report)
    for fact in FACTS[(pid, kind)]:
        assert fact in text, (pid, kind, fact)
        assert fact.replace("&", "&amp;") in html or fact in html, (pid, kind, fact)


def test_every_report_of_every_example_has_both_renderings(site_k: Knowledge) -> None:
    count = 0
    for path in sorted(PATIENTS.glob("*.json")):
        for report in reports(site_k, path.stem).values():
            kinds = [f["contentType"] for f in report["presentedForm"]]
            assert kinds == ["text/html", "application/pdf"]
            assert report["text"]["div"].startswith('<div xmlns="http://www.w3.org/1999/xhtml">')
            assert base64.b64decode(report["presentedForm"][1]["data"]).startswith(b"%PDF")
            count += 1
    assert count == 29  # the 14 examples produce 29 DiagnosticReports


def test_range_bar_and_determinism(site_k: Knowledge) -> None:
    first, again = reports(site_k, "p01")["Linezolid"], reports(site_k, "p01")["Linezolid"]
    assert first["presentedForm"] == again["presentedForm"]
    assert "background:#9c9" in first["text"]["div"] and "background:#c00" in first["text"]["div"]
