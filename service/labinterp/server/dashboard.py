"""The dashboard, server-rendered: recent reports, flagged patients (out of range, high risk), a patient
page with the trough trend, the cohort page with its plots (from `labinterp cohort` output), and the comparison
of recent formulation batches (their QC measures side by side, their release profiles overlaid).

**Nothing from the FHIR server is trusted as HTML.** Anyone who can write to the FHIR server can store a
DiagnosticReport, so the dashboard is rendered from labinterp's own data:

- Fields read from stored resources (titles, statuses, conclusions, codes, patient ids) are plain text in
  autoescaped templates; a patient id that is not a FHIR id is shown but never put into a link.
- A stored report is shown as labinterp's only when it is *provably* labinterp's (`provably_labinterps`): it
  carries labinterp's content identifier (a name-based UUID) and the series identifier labinterp derives for that
  patient and report kind, and a Provenance whose agent is labinterp's Device (by its identifier system) targets
  that report (the same version when the target is versioned) and was recorded at the report's `issued` time —
  labinterp writes the report and its Provenance in one transaction with both set to the same instant, and an
  amendment writes a new Provenance.
- Such a report is then shown as labinterp renders it *now* from the patient's data read for this page
  (interpreted again at the report's `issued` time): when that computation gives the same content identifier,
  the stored report was derived from exactly these inputs by this rule set, and what is shown is labinterp's own
  template with labinterp's own findings, not the stored narrative. When it does not (the inputs changed since,
  or an older rule set wrote it), the stored narrative is shown sanitized by nh3 with an explicit allow-list
  (`SAFE_TAGS`, `SAFE_ATTRIBUTES`: text structure and tables only; no script, style, event handler, link, image,
  frame, form or SVG), labelled as the stored report. Any other report shows its text fields only.

The limits of "provably": every part of that proof can be forged by anyone with write access to the FHIR server
(a Device with labinterp's identifier, a Provenance pointing at it, identifiers computed as labinterp computes
them): it tells labinterp's reports from other software's and from careless edits, not from a determined writer.
That is why no stored XHTML is ever marked safe without nh3, the page's Content-Security-Policy runs no script at
all (labinterp.server.security), and a verified report is shown from labinterp's own computation whenever it can
be. An equation setting changed since a report was written is not seen (the content identifier does not carry it)."""

from __future__ import annotations

import base64
import io
import json
import logging
import math
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nh3
from flask import Blueprint, Response, current_app
from markupsafe import Markup
from werkzeug.exceptions import BadRequest

from labinterp.compose.ids import series_uuid
from labinterp.compose.view import PRELIMINARY_NOTE, Curve, Plot, RangeBar, View
from labinterp.errors import FhirError, InputError, LabinterpError
from labinterp.extract.fhirtime import parse_now
from labinterp.fhir.client import FhirClient
from labinterp.fhir.search import is_fhir_id
from labinterp.jinja import template as jinja_template
from labinterp.knowledge import Knowledge
from labinterp.pipeline import interpret_bundle, records_of
from labinterp.render.report import render_svg
from labinterp.rules.qc import FAIL, MISSING, NO_LIMIT, NOT_GRADED, PASS, BatchFinding, MeasureResult, number
from labinterp.server.api.outcome import status_for
from labinterp.server.api.routes import services

log = logging.getLogger("labinterp.dashboard")
dashboard = Blueprint("dashboard", __name__, url_prefix="/dashboard")
FLAGS = {"L", "H", "LL", "HH", "<", ">"}
STYLESHEET = "dashboard_style.css.html"  # CSS; named .html so the package data (templates/*.html) ships it

# What of a stored narrative may reach the page: text structure and tables, nothing that loads, links or runs.
SAFE_TAGS = frozenset(
    {"div", "span", "p", "br", "hr", "b", "strong", "i", "em", "u", "small", "sub", "sup", "code", "pre", "blockquote"}
    | {"h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "dl", "dt", "dd"}
    | {"table", "caption", "thead", "tbody", "tfoot", "tr", "th", "td"}
)
SAFE_ATTRIBUTES = {"td": {"colspan", "rowspan"}, "th": {"colspan", "rowspan"}}
# dropped with everything inside them (other tags not allowed are dropped and their text kept, escaped)
DROPPED_WITH_CONTENT = frozenset(
    {"script", "style", "template", "noscript", "iframe", "frame", "frameset", "object", "embed", "applet"}
    | {"svg", "math", "textarea", "select", "option", "title", "xmp", "noembed", "noframes", "plaintext"}
)


def sanitized(xhtml: str) -> Markup:
    """Foreign XHTML as the dashboard may show it: nh3 (ammonia) with the allow-list above. The only HTML from the
    FHIR server that is ever marked safe, and only after this."""
    cleaned = nh3.clean(
        xhtml,
        tags=set(SAFE_TAGS),
        attributes={tag: set(names) for tag, names in SAFE_ATTRIBUTES.items()},
        clean_content_tags=set(DROPPED_WITH_CONTENT),
        url_schemes=set(),
        strip_comments=True,
        link_rel=None,
    )
    return Markup(cleaned)


def page(title: str, name: str, **context: Any) -> str:
    body = Markup(jinja_template(name).render(**context))
    return jinja_template("dashboard_layout.html").render(title=title, body=body)


@dashboard.get("/style.css")
def stylesheet() -> Response:
    """The dashboard's styles (the Content-Security-Policy allows no inline style)."""
    css = jinja_template(STYLESHEET).render()
    return Response(css, mimetype="text/css", headers={"Cache-Control": "public, max-age=300"})


def _flag_class(code: str) -> str:
    return "hi" if code in ("H", "HH", ">") else "lo" if code in ("L", "LL", "<") else "ok"


def _text(value: Any) -> str:
    """A field read as plain text: a string, or nothing (an odd shape is not an error on a dashboard)."""
    return value if isinstance(value, str) else ""


def _get(obj: Any, *path: str | int) -> Any:
    for step in path:
        if isinstance(step, int):
            obj = obj[step] if isinstance(obj, list) and len(obj) > step else None
        else:
            obj = obj.get(step) if isinstance(obj, dict) else None
    return obj


def _pid(resource: dict[str, Any]) -> str:
    return _text(_get(resource, "subject", "reference")).removeprefix("Patient/")


def _codes(r: dict[str, Any]) -> list[str]:
    codes = [_text(_get(c, "coding", 0, "code")) for c in r.get("conclusionCode") or [] if isinstance(c, dict)]
    return [c for c in codes if c and len(c) <= 2]  # interpretation codes; LOINC/SNOMED codes stay in the report


@dashboard.get("")
def index() -> str:
    s = services()
    client = s.client()
    series = s.knowledge.output.systems["series_identifier"]
    drs = client.search_page("DiagnosticReport", [("identifier", f"{series}|"), ("_sort", "-_lastUpdated"), ("_count", "50")])
    ras = client.search_page("RiskAssessment", [("identifier", f"{series}|"), ("_sort", "-_lastUpdated"), ("_count", "100")])
    reports: list[dict[str, Any]] = []
    flagged: dict[str, list[tuple[str, str]]] = {}
    for r in drs:
        codes, title = _codes(r), _text(_get(r, "code", "text"))
        reports.append(
            {
                "issued": _text(r.get("issued"))[:16].replace("T", " "),
                "pid": _pid(r),
                "linked": is_fhir_id(_pid(r)),
                "title": title,
                "status": _text(r.get("status")),
                "codes": [(c, _flag_class(c)) for c in codes],
                "conclusion": _text(r.get("conclusion")).split(". ")[0],
            }
        )
        for c in codes:
            if c in FLAGS:
                flagged.setdefault(_pid(r), []).append((f"{title.split(' ')[0]} {c}", _flag_class(c)))
    for ra in ras:
        for p in ra.get("prediction") or []:
            level = _get(p, "qualitativeRisk", "coding", 0, "code")
            if level == "high":
                outcome = _text(_get(p, "outcome", "text")).split(" (")[0]
                flagged.setdefault(_pid(ra), []).append((f"{outcome}: high", "risk-high"))
    rows = [(pid, is_fhir_id(pid), why) for pid, why in sorted(flagged.items())]
    return page("Dashboard", "dashboard_index.html", reports=reports, flagged=rows)


def _trend_png(points: list[tuple[str, float]], low: float, high: float) -> str:
    from matplotlib.figure import Figure  # the object API: no global figure state shared between request threads

    fig = Figure(figsize=(5.5, 2.8), dpi=100)
    ax = fig.subplots()
    ax.axhspan(low, high, color="#9c9", alpha=0.35, label=f"{low:g}-{high:g} mg/L")
    ax.plot([p[0][:10] for p in points], [p[1] for p in points], marker="o", color="#c00")
    ax.set_ylabel("mg/L")
    ax.legend(loc="upper right", fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode()


# --- which stored reports are labinterp's ---------------------------------------------------------------------


def _relative(reference: Any) -> tuple[str, str, str | None] | None:
    """(type, id, version) of a relative reference "Type/id" or "Type/id/_history/v"; None for anything else."""
    if not isinstance(reference, str):
        return None
    parts = reference.split("/")
    if len(parts) == 4 and parts[2] == "_history":
        parts, version = parts[:2], parts[3]
    else:
        version = None
    if len(parts) != 2 or not parts[0].isalpha() or not is_fhir_id(parts[1]):
        return None
    return parts[0], parts[1], version


def _identifier(resource: dict[str, Any], system: str) -> str:
    for i in resource.get("identifier") or []:
        if isinstance(i, dict) and i.get("system") == system and isinstance(i.get("value"), str):
            return str(i["value"])
    return ""


def _instant(text: Any) -> datetime | None:
    try:
        return parse_now(text) if isinstance(text, str) and "T" in text else None
    except InputError:
        return None


def _name_based_uuid(value: str) -> bool:
    try:
        return value.startswith("urn:uuid:") and uuid.UUID(value.removeprefix("urn:uuid:")).version == 5
    except ValueError:
        return False


def labinterp_devices(found: list[dict[str, Any]], k: Knowledge) -> set[str]:
    """ "Device/id" of each Device among `found` that carries labinterp's device identifier."""
    system = k.output.systems["device_identifier"]
    return {
        f"Device/{d['id']}"
        for d in found
        if d.get("resourceType") == "Device" and is_fhir_id(d.get("id")) and _identifier(d, system).startswith("labinterp-")
    }


def provably_labinterps(
    report: dict[str, Any], patient: str, provenances: list[dict[str, Any]], devices: set[str], k: Knowledge
) -> bool:
    """Whether a stored DiagnosticReport is labinterp's, as far as the FHIR server's data can show (see the
    module's docstring for what this proves and what it does not)."""
    systems = k.output.systems
    if not _name_based_uuid(_identifier(report, systems["content_identifier"])):
        return False
    kind, _, series = _identifier(report, systems["series_identifier"]).partition(":")
    if kind not in k.output.reports or series != series_uuid(kind, f"Patient/{patient}"):
        return False
    if _pid(report) != patient or not is_fhir_id(report.get("id")):
        return False
    version, issued = _get(report, "meta", "versionId"), _instant(report.get("issued"))
    if issued is None:
        return False
    for prov in provenances:
        if _instant(prov.get("recorded")) != issued:
            continue
        targets = [_relative(_get(t, "reference")) for t in prov.get("target") or []]
        if not any(t and t[:2] == ("DiagnosticReport", report["id"]) and t[2] in (None, version) for t in targets):
            continue
        agents = [_relative(_get(a, "who", "reference")) for a in prov.get("agent") or []]
        if any(a and f"{a[0]}/{a[1]}" in devices for a in agents):
            return True
    return False


def _provenances(client: FhirClient, reports: list[dict[str, Any]], k: Knowledge) -> tuple[list[dict[str, Any]], set[str]]:
    """The Provenances that target the reports, and labinterp's Devices among their agents (one search)."""
    targets = [f"DiagnosticReport/{r['id']}" for r in reports if is_fhir_id(r.get("id"))]
    if not targets:
        return [], set()
    try:
        found = client.search("Provenance", [("target", ",".join(targets)), ("_include", "Provenance:agent"), ("_count", "200")])
    except LabinterpError as exc:  # the reports are then shown as text only
        log.warning("dashboard: Provenance not read (%s): reports shown as text", type(exc).__name__)
        return [], set()
    return [r for r in found if r.get("resourceType") == "Provenance"], labinterp_devices(found, k)


# --- how a report is shown -------------------------------------------------------------------------------------


@dataclass
class Bar:
    """A view's range bar as SVG geometry (the CSP allows no inline style): a 320 px scale inside a 1 px frame."""

    band_x: float
    band_width: float
    marker_x: float
    label: str
    text: str

    @classmethod
    def of(cls, bar: RangeBar | None) -> Bar | None:
        if bar is None:
            return None
        low, high, value = bar.position(bar.low), bar.position(bar.high), bar.position(bar.value)
        censored = " (censored: the marker is at the limit)" if bar.comparator else ""
        text = (
            f"{bar.label}: {bar.comparator}{bar.value} {bar.unit}{censored}; range {bar.low}-{bar.high} {bar.unit} (green); "
            f"scale to {bar.top} {bar.unit}"
        )
        return cls(round(1 + 3.2 * low, 1), round(3.2 * (high - low), 1), round(1 + 3.2 * value, 1), bar.label, text)


@dataclass
class Shown:
    """One report as the dashboard shows it (dashboard_report.html): plain strings from labinterp's own view."""

    title: str
    preliminary: bool
    note: str
    header_rows: list[list[tuple[str, str, int]]]
    headline: str
    bar: Bar | None
    interpretation: list[str]
    tables: list[tuple[str, list[str], list[list[str]]]] = field(default_factory=list)
    sections: list[tuple[str, list[str], bool]] = field(default_factory=list)
    footer: str = ""

    @classmethod
    def of(cls, v: View) -> Shown:
        return cls(
            title=v.title,
            preliminary=v.preliminary,
            note=PRELIMINARY_NOTE,
            header_rows=v.header_rows(),
            headline=v.headline,
            bar=Bar.of(v.bar),
            interpretation=list(v.interpretation),
            tables=[(t.title, list(t.header), [list(r) for r in t.rows]) for t in v.tables],
            sections=[(s.title, list(s.lines), len(s.lines) == 1) for s in v.sections],  # one line: after its title
            footer=v.footer,
        )


def _own_views(data: Any, k: Knowledge, equation: str | None, reports: list[dict[str, Any]]) -> dict[tuple[str, str], Shown]:
    """labinterp's own rendering of each report it would write from the data read, at each stored report's issued
    time: (content identifier, issued) -> what to show."""
    out: dict[tuple[str, str], Shown] = {}
    status_of = {_identifier(r, k.output.systems["content_identifier"]): _text(r.get("status")) for r in reports}
    for issued_text in dict.fromkeys(_text(r.get("issued")) for r in reports):
        now = _instant(issued_text)
        if now is None:
            continue
        try:
            run = interpret_bundle(data.bundle, k, now, equation=equation, validate=False, with_provenance=False, render=False)
        except LabinterpError as exc:
            log.info("dashboard: the data could not be interpreted again (%s)", type(exc).__name__)
            continue
        for result in run.patients:
            for w in result.written:
                content = f"urn:uuid:{w.uuid}"
                if w.resource.get("resourceType") != "DiagnosticReport" or content not in status_of:
                    continue
                # labinterp's own view, but "amended" when the stored report is (labinterp PUT it over an older one)
                if w.view is not None:
                    status = "amended" if status_of[content] == "amended" else w.view.status
                    out[(content, issued_text)] = Shown.of(w.view.with_status(status))
    return out


def _present(r: dict[str, Any], verified: bool, views: dict[tuple[str, str], Shown], content_system: str) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "title": _text(_get(r, "code", "text")) or "Report",
        "status": _text(r.get("status")),
        "issued": _text(r.get("issued")),
        "conclusion": _text(r.get("conclusion")),
        "codes": [(c, _flag_class(c)) for c in _codes(r)],
        "origin": "unverified",
    }
    if not verified:
        return shown
    view = views.get((_identifier(r, content_system), shown["issued"]))
    if view is not None:
        return shown | {"origin": "labinterp", "v": view}
    div = _get(r, "text", "div")
    return shown | {"origin": "stored", "narrative": sanitized(div) if isinstance(div, str) else None}


@dashboard.get("/Patient/<pid>")
def patient(pid: str) -> str:
    if not is_fhir_id(pid):
        raise BadRequest("the patient id is not a FHIR resource id")
    s = services()
    k = s.knowledge
    client = s.client()
    data = client.fetch_patient(pid, k.output.systems["series_identifier"])
    record = next(records_of(data.bundle, k), None)
    troughs = record.of("linezolid") if record else []
    within = k.linezolid.band("within")
    points = [(m.time.text, m.value) for m in troughs if m.time and m.value is not None]
    trend = _trend_png(points, within.lower or 0.0, within.upper or 0.0) if points else ""
    stored = [r for r in data.written if r.get("resourceType") == "DiagnosticReport"]
    provenances, devices = _provenances(client, stored, k)
    verified = [r for r in stored if provably_labinterps(r, pid, provenances, devices, k)]
    views = _own_views(data, k, s.equation, verified) if verified else {}
    content_system = k.output.systems["content_identifier"]
    p = record.patient if record else None
    return page(
        f"Patient/{pid}",
        "dashboard_patient.html",
        sex=p.sex if p else "unknown",
        birth=p.birth_date if p else None,
        trend=trend,
        troughs=[(m.time.text if m.time else "-", m.original, m.status) for m in troughs],
        reports=[_present(r, any(r is v for v in verified), views, content_system) for r in stored],
    )


@dashboard.get("/cohort")
def cohort() -> str:
    path = current_app.config.get("COHORT_STATS")
    stats, figures = None, {}
    if path and Path(path).exists():
        stats = json.loads(Path(path).read_text())
        figures = {
            name: base64.b64encode(Path(p).read_bytes()).decode()
            for name, p in (stats.get("plots") or {}).items()
            if Path(p).exists()
        }
    return page(
        "Cohort: first trough by genotype (the method of the Milan linezolid cohort)",
        "dashboard_cohort.html",
        stats=stats,
        figures=figures,
    )


# --- formulation batches side by side ---------------------------------------------------------------------------

BATCH_COUNT = 20  # the most recently updated batches compared
# the measures compared (keys of MeasureResult.measure), in the table's order; "best_model" is the best release
# model's name (not graded); the share outside the microsphere range is labelled with the range of mappings/qc.toml
BATCH_MEASURES = (
    ("volume_mean_diameter", "Volume mean diameter"),
    ("d50", "D50"),
    ("span", "Span"),
    ("share_outside_range", "Outside {range}"),
    ("entrapment_efficiency", "Entrapment efficiency"),
    ("t50", "t50"),
    ("t80", "t80"),
    ("best_model", "Best release model"),
    ("release_exponent", "Release exponent n"),
    ("retained_drug_content", "Lowest retained drug content"),
)
STATUS_CLASS = {PASS: "ok", FAIL: "hi", NO_LIMIT: "nolimit", MISSING: "missing", NOT_GRADED: "nolimit"}
CONCLUSION_CLASS = {"released": "ok", "not released": "hi", "incomplete": "missing"}
_WORST_FIRST = (FAIL, MISSING, PASS, NO_LIMIT, NOT_GRADED)


@dataclass(frozen=True)
class Cell:
    """One measure of one batch as the comparison shows it: plain text, its status and the CSS class of that."""

    text: str
    status: str = ""  # "" for what is not graded (the best model's name)
    css: str = ""
    detail: str = ""  # under the value: the storage condition of the lowest retained drug content
    limit: str = ""  # the limit, as a tooltip


@dataclass(frozen=True)
class BatchRow:
    product: str
    lot: str
    batch_id: str
    linked: bool  # the Substance id is a FHIR id: it may go into a link
    conclusion: str
    conclusion_css: str
    why: str  # the conclusion's reasons, as a tooltip
    preliminary: bool
    cells: list[Cell]


def _cell(result: MeasureResult, detail: bool = False) -> Cell:
    status = _text(result.status)
    return Cell(
        _text(result.shown) or "-",
        status,
        STATUS_CLASS.get(status, "nolimit"),
        _text(result.detail) if detail else "",
        _text(result.limit),
    )


def _measure_cell(finding: BatchFinding, measure: str) -> Cell:
    """A measure's cell: its result (the worst of several), the lowest retained drug content with its storage
    condition, the best model's name; "-" and "missing" when the batch has no result for it."""
    if measure == "best_model":
        return Cell(_text(finding.best_model) or "-")
    results = [r for r in finding.results if r.measure == measure]
    if measure == "retained_drug_content":
        valued = [(r.value, i) for i, r in enumerate(results) if r.value is not None and math.isfinite(r.value)]
        if valued:
            return _cell(results[min(valued)[1]], detail=True)
    if not results:
        if measure == "release_exponent" and finding.peppas is not None and "n" in finding.peppas.params:
            return Cell(number(finding.peppas.params["n"]), NO_LIMIT, STATUS_CLASS[NO_LIMIT])
        return Cell("-", MISSING, STATUS_CLASS[MISSING])
    worst = min(results, key=lambda r: _WORST_FIRST.index(r.status) if r.status in _WORST_FIRST else len(_WORST_FIRST))
    return _cell(worst, detail=measure == "retained_drug_content")


def _batch_label(finding: BatchFinding) -> str:
    record = finding.record
    name = _text(record.product_name) or "Batch"
    return f"{name} lot {record.lot}" if _text(record.lot) else f"{name} ({record.batch.id})"


def batch_row(finding: BatchFinding) -> BatchRow:
    record = finding.record
    sid = _text(record.batch.id)
    return BatchRow(
        product=_text(record.product_name) or "-",
        lot=_text(record.lot) or "-",
        batch_id=sid,
        linked=is_fhir_id(sid),
        conclusion=_text(finding.conclusion),
        conclusion_css=CONCLUSION_CLASS.get(finding.conclusion, "missing"),
        why="; ".join(_text(r) for r in finding.reasons),
        preliminary=bool(finding.preliminary),
        cells=[_measure_cell(finding, measure) for measure, _ in BATCH_MEASURES],
    )


def release_overlay(findings: list[BatchFinding]) -> Plot | None:
    """The batches' observed release profiles on one plot (None when no batch has one)."""
    curves = [Curve(_batch_label(f), tuple(f.release.points)) for f in findings if f.release is not None and f.release.points]
    if not curves:
        return None
    x_max = max(x for c in curves for x, _ in c.points)
    y_max = max([100.0, *(y for c in curves for _, y in c.points)])
    return Plot("In-vitro release profiles", "Time (h)", "Released (%)", tuple(curves), x_max, y_max)


def _unavailable(exc: LabinterpError, title: str) -> Response:
    """The FHIR server could not be read: a page that says so, with the status of the API's errors (502, 503 or
    504 when the server failed, never a 500), and nothing of the error's text (it can quote the server's answer)."""
    status = status_for(exc)[0] if isinstance(exc, FhirError) else 502  # InputError: the server's data is unusable
    temporary = status in (503, 504)
    log.warning("dashboard: %s not read (%s)", title.lower(), type(exc).__name__)
    body = page(title, "dashboard_unavailable.html", temporary=temporary)
    return Response(body, status=status, mimetype="text/html")


@dashboard.get("/batches")
def batches() -> str | Response:
    """Recent formulation batches side by side: each batch's conclusion and key measures with their status, and
    the release profiles overlaid (an inline SVG: no script, no style, nothing loaded)."""
    from labinterp import pipeline  # recent_batches is the pipeline's; imported here, when the page is asked for

    s = services()
    k = s.knowledge
    try:
        findings = pipeline.recent_batches(s.client(), k, datetime.now(UTC).replace(microsecond=0), BATCH_COUNT)
    except (FhirError, InputError) as exc:
        return _unavailable(exc, "Formulation batches")
    rng = k.qc.microsphere_range
    headers = [label.format(range=f"{number(rng.low_um)}-{number(rng.high_um)} µm") for _, label in BATCH_MEASURES]
    overlay = release_overlay(findings)
    return page(
        "Formulation batches",
        "dashboard_batches.html",
        headers=headers,
        rows=[batch_row(f) for f in findings],
        plot=render_svg(overlay) if overlay is not None else None,
    )
