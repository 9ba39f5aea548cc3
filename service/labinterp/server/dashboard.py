"""The dashboard, server-rendered: recent reports, flagged patients (out of range, high risk), a patient
page with the trough trend, and the cohort page with its plots (from `labinterp cohort` output)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

from flask import Blueprint, current_app
from werkzeug.exceptions import BadRequest

from labinterp.fhir.search import is_fhir_id, query
from labinterp.jinja import template as jinja_template
from labinterp.pipeline import records_of
from labinterp.server.api.routes import services

dashboard = Blueprint("dashboard", __name__, url_prefix="/dashboard")
FLAGS = {"L", "H", "LL", "HH", "<", ">"}


def page(title: str, name: str, **context: Any) -> str:
    from markupsafe import Markup

    body = Markup(jinja_template(name).render(**context))
    return jinja_template("dashboard_layout.html").render(title=title, body=body)


def _flag_class(code: str) -> str:
    return "hi" if code in ("H", "HH", ">") else "lo" if code in ("L", "LL", "<") else "ok"


def _pid(resource: dict[str, Any]) -> str:
    return str((resource.get("subject") or {}).get("reference", "")).removeprefix("Patient/")


@dashboard.get("")
def index() -> str:
    s = services()
    client = s.client()
    series = s.knowledge.output.systems["series_identifier"]
    drs = client.search_page(
        query("DiagnosticReport", [("identifier", f"{series}|"), ("_sort", "-_lastUpdated"), ("_count", "50")])
    )
    ras = client.search_page(
        query("RiskAssessment", [("identifier", f"{series}|"), ("_sort", "-_lastUpdated"), ("_count", "100")])
    )
    reports: list[dict[str, Any]] = []
    flagged: dict[str, list[tuple[str, str]]] = {}
    for r in drs:
        codes = [c["coding"][0]["code"] for c in r.get("conclusionCode", []) if c.get("coding")]
        codes = [c for c in codes if len(c) <= 2]  # interpretation codes; LOINC/SNOMED codes stay in the report
        reports.append(
            {
                "issued": r.get("issued", "")[:16].replace("T", " "),
                "pid": _pid(r),
                "title": r["code"].get("text", ""),
                "status": r.get("status"),
                "codes": [(c, _flag_class(c)) for c in codes],
                "conclusion": r.get("conclusion", "").split(". ")[0],
            }
        )
        for c in codes:
            if c in FLAGS:
                flagged.setdefault(_pid(r), []).append((f"{r['code'].get('text', '').split(' ')[0]} {c}", _flag_class(c)))
    for ra in ras:
        for p in ra.get("prediction", []):
            level = ((p.get("qualitativeRisk") or {}).get("coding") or [{}])[0].get("code")
            if level == "high":
                flagged.setdefault(_pid(ra), []).append((f"{p['outcome']['text'].split(' (')[0]}: high", "risk-high"))
    return page("Dashboard", "dashboard_index.html", reports=reports, flagged=sorted(flagged.items()))


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


@dashboard.get("/Patient/<pid>")
def patient(pid: str) -> str:
    if not is_fhir_id(pid):
        raise BadRequest("the patient id is not a FHIR resource id")
    s = services()
    k = s.knowledge
    data = s.client().fetch_patient(pid, k.output.systems["series_identifier"])
    record = next(records_of(data.bundle, k), None)
    troughs = record.of("linezolid") if record else []
    within = k.linezolid.band("within")
    points = [(m.time.text, m.value) for m in troughs if m.time and m.value is not None]
    trend = _trend_png(points, within.lower or 0.0, within.upper or 0.0) if points else ""
    reports = [r["text"]["div"] for r in data.written if r["resourceType"] == "DiagnosticReport" and r.get("text")]
    from markupsafe import Markup

    p = record.patient if record else None
    return page(
        f"Patient/{pid}",
        "dashboard_patient.html",
        sex=p.sex if p else "unknown",
        birth=p.birth_date if p else None,
        trend=trend,
        troughs=[(m.time.text if m.time else "-", m.original, m.status) for m in troughs],
        reports=[Markup(div) for div in reports],
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
