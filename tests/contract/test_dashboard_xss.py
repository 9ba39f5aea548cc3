"""The dashboard cannot be turned against its users (issue 9 point 4): reports planted on the FHIR server with
script in every field reach the page as text or sanitized by nh3, never as anything a browser runs; a report is
shown as labinterp's only with labinterp's identifiers and a Provenance of labinterp's Device, and then as
labinterp renders it from its own findings."""

from __future__ import annotations

import copy
import json
import uuid
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import responses

from labinterp.compose.ids import series_uuid
from labinterp.knowledge import Knowledge
from labinterp.pipeline import interpret_bundle
from labinterp.server.app import create_app
from labinterp.writeback import rewrite_references
from tests.conftest import NOW, SITE
from tests.contract.test_api import BASE, EXAMPLES, batch_response_for

PAYLOADS = [
    "<script>alert('s')</script>",
    "<img src=x onerror=alert('i')>",
    "<a href=\"javascript:alert('a')\">click</a>",
    "<svg onload=alert('v')><rect/></svg>",
    "<style>body{display:none}</style>",
    "</div></div></main><script>alert('closed')</script><div>",
    '<iframe src="https://evil.example/"></iframe><form action="https://evil.example/"><input name=x></form>',
    '<p style="position:fixed;top:0" onclick="alert(\'p\')">PLANTED-TEXT</p>',
]
EVIL = "".join(PAYLOADS)
NARRATIVE = f'<div xmlns="http://www.w3.org/1999/xhtml"><p>PLANTED-NARRATIVE</p>{EVIL}</div>'


class Page(HTMLParser):
    """Every element and attribute a browser would build from the page."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.ends: list[str] = []
        self.text: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        self.ends.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


OWN_SVG = {
    "svg": {"class", "width", "height", "viewbox", "role", "aria-label"},
    "rect": {"x", "y", "width", "height", "fill", "stroke"},
}
NEVER = {"script", "style", "iframe", "frame", "object", "embed", "form", "input", "base", "meta", "math", "template"}


def assert_nothing_executable(html: str) -> Page:
    page = Page(html)
    for tag, attrs in page.tags:
        assert tag not in NEVER or (tag == "meta" and set(attrs) == {"charset"}), (tag, attrs)
        assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
        assert "style" not in attrs, (tag, attrs)
        if tag in OWN_SVG:
            assert set(attrs) <= OWN_SVG[tag], (tag, attrs)
        if tag == "link":
            assert attrs == {"rel": "stylesheet", "href": "/dashboard/style.css"}
        if tag == "a":
            assert attrs["href"].startswith("/dashboard"), attrs
        if tag == "img":
            assert attrs["src"].startswith("data:image/png;base64,"), attrs
        for name in ("href", "src", "action", "formaction", "xlink:href"):
            assert not attrs.get(name, "").strip().lower().startswith(("javascript:", "vbscript:")), (tag, attrs)
    assert page.tags.count(("div", {})) + len([t for t, a in page.tags if t == "div" and a]) == page.ends.count("div")
    assert page.ends[-3:] == ["main", "body", "html"]  # nothing closed the page early
    return page


def stored_state(k: Knowledge, patient_file: str = "p01.json") -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """The patient's Bundle, and what a FHIR server holds after labinterp wrote its reports: server ids, versions,
    the transaction's urn:uuid references resolved (as HAPI stores them)."""
    bundle = json.loads((EXAMPLES / patient_file).read_text())
    run = interpret_bundle(bundle, k, NOW)
    refs: dict[str, str] = {}
    stored: list[dict[str, Any]] = []
    for i, e in enumerate(run.bundle["entry"]):
        r = copy.deepcopy(e["resource"])
        r["id"] = r.get("id") or f"w{i}"
        r["meta"] = {"versionId": "1", "lastUpdated": "2026-01-20T12:00:01.000+00:00"}
        refs[e["fullUrl"]] = f"{r['resourceType']}/{r['id']}"
        stored.append(r)
    by_type: dict[str, list[dict[str, Any]]] = {}
    for r in stored:
        by_type.setdefault(r["resourceType"], []).append(rewrite_references(r, refs))
    return bundle, by_type


def serve(bundle: dict[str, Any], reports: list[dict[str, Any]], provenance_hits: list[dict[str, Any]]) -> None:
    read = batch_response_for(bundle)
    read["entry"][5]["resource"]["entry"] = [{"resource": r} for r in reports]
    responses.post(BASE, json=read)
    responses.get(
        f"{BASE}/Provenance",
        json={"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in provenance_hits]},
    )
    searchset = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in reports]}
    responses.get(f"{BASE}/DiagnosticReport", json=searchset)
    responses.get(f"{BASE}/RiskAssessment", json={"resourceType": "Bundle", "type": "searchset"})


@pytest.fixture
def client(tmp_path: Path) -> Any:
    return create_app({"FHIR_BASE_URL": BASE, "MAPPINGS_DIR": str(SITE), "QUEUE_PATH": str(tmp_path / "q.db")}).test_client()


@pytest.fixture
def k() -> Knowledge:
    from labinterp.knowledge import load_knowledge

    return load_knowledge(SITE)


def foreign_report(patient: str, k: Knowledge) -> dict[str, Any]:
    """A report another writer planted, with labinterp's series identifier so that labinterp reads it back."""
    return {
        "resourceType": "DiagnosticReport",
        "id": "planted",
        "meta": {"versionId": "1"},
        "identifier": [{"system": k.output.systems["series_identifier"], "value": f"linezolid:{uuid.uuid4()}"}],
        "status": f"final{EVIL}",
        "code": {"text": f"Linezolid {EVIL}"},
        "subject": {"reference": f"Patient/{patient}"},
        "issued": "2026-01-20T12:00:00Z",
        "conclusion": f"PLANTED-CONCLUSION {EVIL}",
        "conclusionCode": [{"coding": [{"code": "<b>"}]}, {"coding": [{"code": "H"}]}],
        "text": {"status": "generated", "div": NARRATIVE},
    }


def forged_labinterp(patient: str, k: Knowledge, content: str | None = None) -> list[dict[str, Any]]:
    """A report dressed as labinterp's: its identifiers as labinterp computes them, a Device with labinterp's
    identifier and a Provenance of that Device targeting it, recorded at its issued time."""
    systems = k.output.systems
    report = foreign_report(patient, k) | {
        "id": "forged",
        "identifier": [
            {"system": systems["content_identifier"], "value": content or f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_DNS, 'x')}"},
            {"system": systems["series_identifier"], "value": f"linezolid:{series_uuid('linezolid', f'Patient/{patient}')}"},
        ],
    }
    device = {
        "resourceType": "Device",
        "id": "fake-device",
        "identifier": [{"system": systems["device_identifier"], "value": "labinterp-9.9.9-ruleset-x"}],
    }
    prov = {
        "resourceType": "Provenance",
        "id": "fake-prov",
        "target": [{"reference": "DiagnosticReport/forged/_history/1"}],
        "recorded": "2026-01-20T12:00:00Z",
        "agent": [{"who": {"reference": "Device/fake-device"}}],
    }
    return [report, prov, device]


@responses.activate
def test_labinterps_own_reports_are_shown_from_its_own_findings(client: Any, k: Knowledge) -> None:
    bundle, stored = stored_state(k)
    reports = stored["DiagnosticReport"]
    for r in reports:  # what the FHIR server holds is not what is shown: the stored narrative never reaches the page
        r["text"]["div"] = NARRATIVE
    serve(bundle, reports, stored["Provenance"] + stored["Device"])
    r = client.get("/dashboard/Patient/p01")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    page = assert_nothing_executable(html)
    text = "".join(page.text)
    assert "PLANTED" not in text and "below the therapeutic range" in text and "Linezolid therapeutic drug monitoring" in text
    assert html.count('<svg class="bar"') == 1 and html.count('<div class="report">') == len(reports) == 3
    assert "Not shown as a labinterp report" not in text and "Stored report" not in text
    provenance_search = next(c.request.url for c in responses.calls if "/Provenance" in c.request.url)
    assert "_include=Provenance%3Aagent" in provenance_search or "_include=Provenance:agent" in provenance_search


@responses.activate
def test_a_foreign_report_is_text_only(client: Any, k: Knowledge) -> None:
    bundle, stored = stored_state(k)
    serve(bundle, [foreign_report("p01", k)], stored["Provenance"] + stored["Device"])
    html = client.get("/dashboard/Patient/p01").get_data(as_text=True)
    text = "".join(assert_nothing_executable(html).text)
    assert "PLANTED-CONCLUSION" in text and "<script>alert('s')</script>" in text  # shown as text, escaped
    assert "PLANTED-NARRATIVE" not in text and "Not shown as a labinterp report" in text


@responses.activate
def test_a_forged_labinterp_report_is_sanitized(client: Any, k: Knowledge) -> None:
    bundle, _ = stored_state(k)
    report, prov, device = forged_labinterp("p01", k)
    serve(bundle, [report], [prov, device])
    html = client.get("/dashboard/Patient/p01").get_data(as_text=True)
    text = "".join(assert_nothing_executable(html).text)
    # the forgery carries labinterp's identifiers and Provenance (anyone with write access can copy them), but
    # labinterp cannot reproduce it: its narrative is shown sanitized, under a NOT VERIFIED warning, never as labinterp's
    assert "PLANTED-NARRATIVE" in text and "PLANTED-TEXT" in text and "NOT VERIFIED" in text
    assert "written by labinterp" not in text
    narrative = text.split("without the laboratory's report.")[1]
    assert "alert(" not in narrative and "display:none" not in narrative  # script and style dropped with their bodies


@responses.activate
def test_a_forgery_that_copies_labinterps_content_identifier_shows_labinterps_findings(client: Any, k: Knowledge) -> None:
    bundle, stored = stored_state(k)
    real = next(r for r in stored["DiagnosticReport"] if r["code"]["text"].startswith("Linezolid"))
    content = next(i["value"] for i in real["identifier"] if i["system"] == k.output.systems["content_identifier"])
    report, prov, device = forged_labinterp("p01", k, content)
    serve(bundle, [report], [prov, device])
    html = client.get("/dashboard/Patient/p01").get_data(as_text=True)
    text = "".join(assert_nothing_executable(html).text)
    assert "PLANTED" not in text and "below the therapeutic range" in text


@responses.activate
def test_the_index_shows_planted_fields_as_text(client: Any, k: Knowledge) -> None:
    bundle, _ = stored_state(k)
    planted = foreign_report("p01", k)
    planted["subject"] = {"reference": "Patient/x\" onmouseover=\"alert('u')"}
    serve(bundle, [planted, foreign_report("p01", k)], [])
    html = client.get("/dashboard").get_data(as_text=True)
    page = assert_nothing_executable(html)
    assert "PLANTED-CONCLUSION" in "".join(page.text)
    assert [a["href"] for t, a in page.tags if t == "a" and "Patient" in a["href"]] == ["/dashboard/Patient/p01"] * 2


def _proof_case(k: Knowledge) -> tuple[dict[str, Any], list[dict[str, Any]], set[str]]:
    _, stored = stored_state(k)
    report = next(r for r in stored["DiagnosticReport"] if r["code"]["text"].startswith("Linezolid"))
    return report, stored["Provenance"], {f"Device/{d['id']}" for d in stored["Device"]}


@pytest.mark.parametrize(
    "spoil",
    [
        lambda r, p: r.__setitem__("identifier", r["identifier"][1:]),  # no content identifier
        lambda r, p: r["identifier"][1].__setitem__("value", f"linezolid:{series_uuid('linezolid', 'Patient/other')}"),
        lambda r, p: r.__setitem__("issued", "2026-01-21T12:00:00Z"),  # changed after the Provenance was recorded
        lambda r, p: p[0].__setitem__("agent", [{"who": {"reference": "Practitioner/x"}}]),
        lambda r, p: p[0].__setitem__("target", [{"reference": f"DiagnosticReport/{r['id']}/_history/7"}]),
        lambda r, p: p[0].__setitem__("target", [{"reference": f"http://elsewhere.example/fhir/DiagnosticReport/{r['id']}"}]),
    ],
)
def test_what_makes_a_report_labinterps(k: Knowledge, spoil: Any) -> None:
    from labinterp.server.dashboard import provably_labinterps

    report, provenances, devices = _proof_case(k)
    assert provably_labinterps(report, "p01", provenances, devices, k)
    assert not provably_labinterps(report, "p02", provenances, devices, k)  # another patient's page
    spoil(report, provenances)
    assert not provably_labinterps(report, "p01", provenances, devices, k)


def test_sanitizer_allow_list() -> None:
    from labinterp.server.dashboard import sanitized

    out = str(sanitized(NARRATIVE + '<table><tr><td colspan="2" onclick="x">cell</td></tr></table>'))
    assert "PLANTED-NARRATIVE" in out and '<td colspan="2">cell</td>' in out
    for banned in ("<script", "onerror", "javascript:", "<svg", "<style", "<iframe", "<form", "<a ", "<img", "style=", "xmlns"):
        assert banned not in out, banned
