"""Rendered reports: an HTML and a PDF for each example patient's reports, the PDF's text carrying the
key facts, the HTML body as the FHIR narrative, and the same findings giving the same bytes."""

from __future__ import annotations

import base64
import io
import json
import logging
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from pypdf import PdfReader

from labinterp.cli.main import read_json
from labinterp.knowledge import Knowledge
from labinterp.pipeline import interpret_bundle
from labinterp.render import report as report_module
from labinterp.render.report import XHTML, when
from tests.builders import MG, SCR, P
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
        "25.9%",
        "600 mg every 12 h",
        "eGFR 70.1",
        "rule set 2026.11.1",
    ],
    ("p01", "Pharmacogenetic"): ["CYP3A5", "*1/*3", "Intermediate metabolizer", "POR"],
    ("p02", "Linezolid"): ["12.4 ug/mL", "above the therapeutic range", "300 mg every 12 h", "65.0%"],
    ("p05", "Linezolid"): ["52 mg/L", "above the measurable range", "repeat the measurement with dilution"],
    ("p06", "Linezolid"): ["not a trough", "BELOW the MIC"],
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
    assert count == 38  # the 19 examples' DiagnosticReports, every one rendered


def test_range_bar_and_determinism(site_k: Knowledge) -> None:
    first, again = reports(site_k, "p01")["Linezolid"], reports(site_k, "p01")["Linezolid"]
    assert first["presentedForm"] == again["presentedForm"]
    assert "background:#9c9" in first["text"]["div"] and "background:#c00" in first["text"]["div"]


# --- lab-report conventions (issue 7 point 13) --------------------------------------------------

NAME, MRN = "Rossi, Maria Grazia", "MRN-0042"
NARRATIVE_TAGS = {"div", "p", "b", "i", "br", "h3", "ul", "li", "table", "tr", "th", "td", "span"}
NARRATIVE_ATTRS = {"style", "colspan", "xmlns"}


def named(status: str = "preliminary", not_used: int = 0) -> dict[str, Any]:
    """A named patient with a magnesium from a named laboratory on a specimen, and a creatinine; `not_used`
    entered-in-error results make the report run over several pages."""
    p = P("r1", "female", "1950-04-02", "")
    p.resources[0]["name"] = [{"use": "official", "family": "Rossi", "given": ["Maria", "Grazia"]}]
    p.resources[0]["identifier"] = [{"system": "http://hospital.example/mrn", "value": MRN}]
    mg = p.lab(MG, 1.1, "mg/dL", "2026-01-15T08:00:00+01:00", status=status, specimen="Specimen/r1-s1")
    mg["performer"] = [{"reference": "Organization/lab", "display": "Central Laboratory, Ospedale Example"}]
    p.lab(SCR, 1.9, "mg/dL", "2026-01-15T08:00:00+01:00", specimen="Specimen/r1-s1")
    for i in range(not_used):
        p.lab(MG, 1.5, "mg/dL", f"2026-01-{i % 9 + 1:02d}T08:00:00+01:00", status="entered-in-error")
    return p.bundle()


def magnesium_report(site_k: Knowledge, **kw: Any) -> dict[str, Any]:
    bundle = interpret_bundle(named(**kw), site_k, NOW).bundle
    return next(
        e["resource"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "DiagnosticReport" and e["resource"]["code"]["text"].startswith("Serum")
    )


def pdf_pages(report: dict[str, Any]) -> list[str]:
    form = next(f for f in report["presentedForm"] if f["contentType"] == "application/pdf")
    return [
        (page.extract_text() or "").replace("\n", " ") for page in PdfReader(io.BytesIO(base64.b64decode(form["data"]))).pages
    ]


def test_the_heading_names_patient_specimen_performer_and_times(site_k: Knowledge) -> None:
    report = magnesium_report(site_k)
    want = [
        NAME,
        MRN,
        "1950-04-02",
        "female, 75 years",
        "Specimen/r1-s1",
        "2026-01-15 08:00 (UTC+01:00)",  # collected
        "Central Laboratory, Ospedale Example",  # performer
        "2026-01-20 12:00 UTC",  # issued
    ]
    for text in (report["text"]["div"], html_text(report), pdf_text(report)):
        for fact in want:
            assert fact in text, fact


def test_without_name_identifier_or_performer_the_heading_says_so(site_k: Knowledge) -> None:
    report = reports(site_k, "p08")["Serum"]
    div = report["text"]["div"]
    assert "<th" in div and "Patient</th>" in div and "not recorded" in div
    assert "Performer" not in div  # only where given


def test_preliminary_is_prominent_in_html_and_on_every_pdf_page(site_k: Knowledge) -> None:
    report = magnesium_report(site_k, not_used=60)
    assert report["status"] == "preliminary"
    div = report["text"]["div"]
    first = div.split(">", 2)[1] + ">" + div.split(">", 2)[2][:200]
    assert first.startswith("\n<p style=") and "<b>PRELIMINARY REPORT</b>" in first  # the banner comes first
    assert "<b>PRELIMINARY REPORT</b>" in html_text(report)
    pages = pdf_pages(report)
    assert len(pages) >= 2
    for i, page in enumerate(pages, start=1):
        assert "PRELIMINARY REPORT" in page, i
        assert f"Page {i} of {len(pages)}" in page, i
        assert NAME in page and MRN in page, i  # the patient is identified on every page


def test_a_final_report_has_no_banner(site_k: Knowledge) -> None:
    report = magnesium_report(site_k, status="final")
    assert report["status"] == "final"
    assert "PRELIMINARY" not in report["text"]["div"] and "PRELIMINARY" not in pdf_text(report)


def test_every_page_of_every_example_is_numbered(site_k: Knowledge) -> None:
    for path in sorted(PATIENTS.glob("*.json")):
        for kind, report in reports(site_k, path.stem).items():
            pages = pdf_pages(report)
            for i, page in enumerate(pages, start=1):
                assert f"Page {i} of {len(pages)}" in page, (path.stem, kind, i)


def test_a_multi_page_pdf_is_deterministic(site_k: Knowledge) -> None:
    first, again = magnesium_report(site_k, not_used=60), magnesium_report(site_k, not_used=60)
    assert first["presentedForm"] == again["presentedForm"]


def test_name_and_identifier_go_into_the_report_only(site_k: Knowledge, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    bundle = interpret_bundle(named(), site_k, NOW).bundle
    assert NAME not in caplog.text and MRN not in caplog.text
    for entry in bundle["entry"]:
        r = entry["resource"]
        if r["resourceType"] != "DiagnosticReport":
            assert NAME not in json.dumps(r) and MRN not in json.dumps(r), r["resourceType"]


def check_narrative(div: str) -> None:
    """Valid FHIR narrative XHTML: one <div> in the XHTML namespace, only allowed elements and attributes,
    and no empty element (a server re-serializes <td></td> as <td/>, which HTML reads as an open tag)."""
    root = ET.fromstring(div)
    assert root.tag == f"{{{XHTML}}}div"
    for el in root.iter():
        ns, _, tag = el.tag.partition("}")
        assert ns == "{" + XHTML and tag in NARRATIVE_TAGS, el.tag
        assert set(el.attrib) <= NARRATIVE_ATTRS, (tag, el.attrib)
        if tag != "br":
            assert (el.text or "").strip(" \t\r\n") or len(el), f"empty <{tag}> in the narrative"  # &#160; is content


def test_every_narrative_is_fhir_xhtml_without_empty_elements(site_k: Knowledge) -> None:
    checked = 0
    for path in sorted(PATIENTS.glob("*.json")):
        for report in reports(site_k, path.stem).values():
            check_narrative(report["text"]["div"])
            checked += 1
    check_narrative(magnesium_report(site_k, not_used=3)["text"]["div"])
    assert checked >= 20


def test_no_template_is_compiled_per_report(site_k: Knowledge, monkeypatch: pytest.MonkeyPatch) -> None:
    def compile_again(*_: Any, **__: Any) -> Any:
        raise AssertionError("a template compiled while rendering a report")

    from labinterp.jinja import ENV

    assert report_module._FRAGMENT is not None  # the templates are loaded once, when the module is imported
    monkeypatch.setattr(ENV, "from_string", compile_again)
    monkeypatch.setattr(ENV, "get_template", compile_again)
    monkeypatch.setattr(ENV, "_load_template", compile_again)
    assert magnesium_report(site_k)["presentedForm"]
    plain = interpret_bundle(named(), site_k, NOW, render=False).bundle  # the narrative alone, without the forms
    reports = [e["resource"] for e in plain["entry"] if e["resource"]["resourceType"] == "DiagnosticReport"]
    assert reports and all("<h3>" in r["text"]["div"] and "presentedForm" not in r for r in reports)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("2026-01-15T08:00:00+01:00", "2026-01-15 08:00 (UTC+01:00)"),
        ("2026-01-20T12:00:00Z", "2026-01-20 12:00 UTC"),
        ("2026-01-15T08:00:30-05:00", "2026-01-15 08:00:30 (UTC-05:00)"),
        ("2026-01-15", "2026-01-15"),
        ("2026-01", "2026-01"),
        ("", ""),
        ("not a time", "not a time"),
    ],
)
def test_times_as_a_report_prints_them(text: str, shown: str) -> None:
    assert when(text) == shown
