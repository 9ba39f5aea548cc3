"""One view per report (issue 8 point 3): each report's composer builds its view once, from what it computed; render
makes the narrative from that view on every path (rendering on or off), and the HTML page and the PDF only when
rendering is asked; nothing a clinician was shown by either of the two former narratives is lost."""

from __future__ import annotations

import base64
import io
import json
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pypdf import PdfReader

from labinterp.cli.main import cli, read_json
from labinterp.compose.view import View
from labinterp.knowledge import Knowledge
from labinterp.pipeline import interpret_bundle
from labinterp.render.report import attach, render_html
from tests.builders import MG, P, lzd_site
from tests.conftest import NOW, SITE
from tests.golden_tool import PATIENTS
from tests.unit.test_linezolid_safety import SAMPLE, course_with_troughs
from tests.unit.test_render import check_narrative


def _reports(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", []) if e["resource"]["resourceType"] == "DiagnosticReport"]


def _words(div: str) -> str:
    """The narrative's text as a reader sees it (entities decoded, white space collapsed)."""
    return " ".join("".join(ET.fromstring(div).itertext()).split())


def _pdf(report: dict[str, Any]) -> str:
    form = next(f for f in report["presentedForm"] if f["contentType"] == "application/pdf")
    pages = PdfReader(io.BytesIO(base64.b64decode(form["data"]))).pages
    return " ".join(" ".join((page.extract_text() or "").split()) for page in pages)


def _example(pid: str) -> Any:
    return read_json(str(PATIENTS / f"{pid}.json"))


# --- the narrative on both paths ------------------------------------------------------------------------------


def test_without_rendering_the_narrative_is_the_rendered_one_and_there_are_no_forms(site_k: Knowledge) -> None:
    count = 0
    for path in sorted(PATIENTS.glob("*.json")):
        data = read_json(str(path))
        plain = _reports(interpret_bundle(data, site_k, NOW, render=False).bundle)
        rendered = _reports(interpret_bundle(data, site_k, NOW).bundle)
        assert [r["code"]["text"] for r in plain] == [r["code"]["text"] for r in rendered]
        for p, r in zip(plain, rendered, strict=True):
            assert p["text"] == r["text"], (path.stem, p["code"]["text"])
            assert "Patient record" in p["text"]["div"] and p["text"]["div"].startswith(
                '<div xmlns="http://www.w3.org/1999/xhtml">'
            )
            assert "presentedForm" not in p and [f["contentType"] for f in r["presentedForm"]] == ["text/html", "application/pdf"]
            count += 1
    assert count == 38


def test_cli_no_render_writes_the_same_narrative_without_forms(tmp_path: Path) -> None:
    args = ["interpret", "--bundle", str(PATIENTS / "p13.json"), "--now", "2026-01-20T12:00:00Z", "--mappings", str(SITE)]
    outputs = []
    for extra in (["--no-render"], []):
        out = tmp_path / f"out{len(outputs)}.json"
        r = CliRunner().invoke(cli, [*args, *extra, "--out", str(out)])
        assert r.exit_code == 0, r.output
        outputs.append(_reports(json.loads(out.read_text())))
    plain, rendered = outputs
    assert plain and [p["text"] for p in plain] == [r["text"] for r in rendered]
    assert not any("presentedForm" in p for p in plain) and all("presentedForm" in r for r in rendered)
    linezolid = next(p for p in plain if p["code"]["text"].startswith("Linezolid"))
    assert "standard regimen assumed" in linezolid["text"]["div"] and "<th>Sampled</th>" in linezolid["text"]["div"]


# --- the view is built once, by compose -----------------------------------------------------------------------


def test_each_report_view_is_built_once(site_k: Knowledge, monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[str] = []
    init = View.__init__

    def counting(self: View, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        built.append(self.title)

    monkeypatch.setattr(View, "__init__", counting)
    for pid in ("p01", "p08", "p14", "p18"):
        run = interpret_bundle(_example(pid), site_k, NOW)
        reports = [w for p in run.patients for w in p.written if w.resource["resourceType"] == "DiagnosticReport"]
        assert all(w.view is not None for w in reports)
        assert sorted(built) == sorted(r["code"]["text"] for r in _reports(run.bundle)), pid  # one each, none by render
        built.clear()


class NoConclusion(dict[str, Any]):
    """A resource whose conclusion must not be read."""

    def __getitem__(self, key: str) -> Any:
        assert key != "conclusion", "render read the report's conclusion"
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        assert key != "conclusion", "render read the report's conclusion"
        return super().get(key, default)


def test_render_reads_the_view_on_the_written_never_the_conclusion(site_k: Knowledge) -> None:
    for pid in ("p01", "p08", "p14", "p18"):
        run = interpret_bundle(_example(pid), site_k, NOW, render=False)
        for w in (w for p in run.patients for w in p.written if w.view is not None):
            before = w.resource["text"]
            w.resource = NoConclusion({**w.resource, "conclusion": "PLANTED. A SENTENCE. TO SPLIT."})
            attach(w)
            assert w.resource["text"] == before, (pid, w.kind)
            assert w.view is not None
            w.view = replace(w.view, headline="SENTINEL HEADLINE")  # what is shown is the view the Written carries
            attach(w)
            assert "SENTINEL HEADLINE" in w.resource["text"]["div"] and "SENTINEL HEADLINE" in _pdf(w.resource)
            assert "PLANTED" not in w.resource["text"]["div"] + render_html(w.view)


# --- nothing either former narrative showed is lost -----------------------------------------------------------


def _earlier_level_left_out() -> Any:
    p = course_with_troughs([3.0, 4.5, 5.0])
    p.lab(lzd_site(), 15.0, "mg/L", (SAMPLE - timedelta(hours=10)).isoformat(), kind="lzd")  # 2 h after a dose
    return p.bundle()


SHOWN = [
    (
        "p13",
        "Linezolid",
        [
            "Regimen: 600 mg every 12 h (standard regimen assumed: none recorded).",
            "Linezolid levels",
            "Sampled",
            "Result",
            "2026-01-15 08:00 (UTC+01:00)",
            "Therapeutic range 2-8 mg/L; limit of quantification 0.4 mg/L; assay linear to 48 mg/L",
            "Suggestion for the clinician",
            "Renal function",
            "Risks",
        ],
    ),
    ("p07", "Linezolid", ["2026-01-06 08:00 (UTC+01:00)", "2026-01-10 08:00 (UTC+01:00)", "Regimen: 600 mg every 12 h."]),
    (
        "p08",
        "Serum",
        [
            "Guidance (StatPearls: Hypomagnesemia (NCBI Bookshelf, last updated 2023-11-30), Treatment / Management; "
            "the clinician chooses by the patient's state)",
            "Hemodynamically unstable: 1-2 g magnesium sulfate IV over about 15 minutes.",
            "Bands: severe hypomagnesemia",
            "Cardiac arrhythmia",
        ],
    ),
    ("p01", "Pharmacogenetic", ["Reported as", "ig-genotype", "Groups (linezolid cohort)", "CYP3A5: expresser", "Risks"]),
    (
        "p18",
        "Serum",
        [
            "1 result received but not interpretable: no interpretation is given.",
            "Not interpretable: Observation/p18-lab9 valueQuantity.unit: unknown unit 'U/L' for magnesium",
            "Not used",
        ],
    ),
    ("p14", "Renal", ["Weight for Cockcroft-Gault: 82 kg", "Equations and KDIGO categories: CKD-EPI 2021"]),
    ("earlier", "Linezolid", ["Earlier linezolid levels not used in the trend", "not part of the trend"]),
]


@pytest.mark.parametrize(("pid", "title", "facts"), SHOWN, ids=[f"{s[0]}-{s[1]}" for s in SHOWN])
def test_the_narrative_and_the_pdf_show_what_both_former_narratives_showed(
    site_k: Knowledge, pid: str, title: str, facts: list[str]
) -> None:
    data = _earlier_level_left_out() if pid == "earlier" else _example(pid)
    report = next(r for r in _reports(interpret_bundle(data, site_k, NOW).bundle) if r["code"]["text"].startswith(title))
    check_narrative(report["text"]["div"])
    narrative, pdf = _words(report["text"]["div"]), _pdf(report)
    for fact in facts:
        assert fact in narrative, (pid, title, fact)
        assert fact in pdf, (pid, title, fact)


def test_a_view_with_another_status_changes_its_heading_only(site_k: Knowledge) -> None:
    """What the dashboard shows for a report labinterp wrote over an older one ("amended"): the same view."""
    run = interpret_bundle(_example("p01"), site_k, NOW, render=False)
    w = next(w for w in run.patients[0].written if w.kind == "genotype")
    assert w.view is not None and w.view.with_status("final") is w.view
    amended = w.view.with_status("amended")
    assert ("Status", "amended") in amended.header and ("Status", "final") in w.view.header
    assert replace(amended, status="final", header=w.view.header) == w.view
    prelim = w.view.with_status("preliminary")
    assert prelim.preliminary and ("Status", "PRELIMINARY") in prelim.header


@pytest.mark.parametrize(
    ("name", "identifier"), [("A" * 3000, "MRN-1"), ("Ann Smith " * 1500, "MRN-2"), ("Ann Smith", "B" * 20000)]
)
def test_a_huge_name_or_identifier_still_gives_a_pdf(k: Knowledge, name: str, identifier: str) -> None:
    """Data from the FHIR server once made one heading row taller than a page: reportlab's LayoutError, a 500, and
    the patient never got a report. The PDF now cuts the value (and says so); the narrative keeps it whole."""
    p = P("huge", "female", "1960-01-01", "")
    p.lab(MG, 1.1, "mg/dL", "2026-01-15T08:00:00+01:00")
    patient = p.resources[0]
    patient["name"] = [{"text": name}]
    patient["identifier"] = [{"system": "urn:example:mrn", "value": identifier}]
    result = interpret_bundle(p.bundle(), k, NOW)
    (report,) = [e["resource"] for e in result.bundle["entry"] if e["resource"]["resourceType"] == "DiagnosticReport"]
    pdf = next(f for f in report["presentedForm"] if f["contentType"] == "application/pdf")
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(base64.b64decode(pdf["data"]))).pages)
    assert "cut here" in text and "magnesium" in text.lower()
    assert (name[:2000] in report["text"]["div"]) or (identifier[:2000] in report["text"]["div"])
