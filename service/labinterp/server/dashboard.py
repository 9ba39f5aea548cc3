"""The dashboard, server-rendered: recent reports, flagged patients (out of range, high risk), a patient
page with the trough trend, and the cohort page with its plots (from `labinterp cohort` output)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

from flask import Blueprint, current_app
from jinja2 import Environment
from werkzeug.exceptions import BadRequest

from labinterp.extract import extract_patient, split_bundle
from labinterp.fhir.search import is_fhir_id, query
from labinterp.server.api.routes import services

dashboard = Blueprint("dashboard", __name__, url_prefix="/dashboard")
FLAGS = {"L", "H", "LL", "HH", "<", ">"}
_env = Environment(autoescape=True)

LAYOUT = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>labinterp · {{ title }}</title>
<style>body{font-family:Helvetica,Arial,sans-serif;margin:0;color:#222}header{background:#234;color:#fff;padding:.7em 1.5em}
header a{color:#cde;margin-right:1.2em;text-decoration:none}main{padding:1em 1.5em;max-width:72em}
table{border-collapse:collapse;margin:.6em 0;width:100%}td,th{border-bottom:1px solid #ddd;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3}.flag{display:inline-block;min-width:1.6em;text-align:center;border-radius:3px;color:#fff;font-weight:bold;padding:0 .3em}
.hi{background:#c00}.lo{background:#06c}.ok{background:#393}.risk-high{background:#c00}.risk-moderate{background:#d80}.risk-low{background:#393}
.muted{color:#777}img{max-width:48%;margin-right:1%}</style></head>
<body><header><b>labinterp</b> &nbsp; <a href="/dashboard">Reports</a><a href="/dashboard/cohort">Cohort</a></header>
<main><h2>{{ title }}</h2>{{ body }}</main></body></html>"""

INDEX = """<h3>Flagged patients</h3>
{% if flagged %}<table><tr><th>Patient</th><th>Why</th></tr>
{% for pid, why in flagged %}<tr><td><a href="/dashboard/Patient/{{ pid }}">{{ pid }}</a></td><td>{% for w in why %}<span class="flag {{ w[1] }}">{{ w[0] }}</span> {% endfor %}</td></tr>{% endfor %}</table>
{% else %}<p class="muted">No patient out of range or at high risk.</p>{% endif %}
<h3>Recent reports</h3>
<table><tr><th>Issued</th><th>Patient</th><th>Report</th><th>Status</th><th>Result</th><th>Conclusion</th></tr>
{% for r in reports %}<tr><td>{{ r.issued }}</td><td><a href="/dashboard/Patient/{{ r.pid }}">{{ r.pid }}</a></td><td>{{ r.title }}</td><td>{{ r.status }}</td>
<td>{% for c in r.codes %}<span class="flag {{ c[1] }}">{{ c[0] }}</span> {% endfor %}</td><td>{{ r.conclusion }}</td></tr>{% endfor %}</table>
{% if not reports %}<p class="muted">No reports yet: POST /Patient/{id}/$interpret, or let the Subscription do it.</p>{% endif %}"""

PATIENT = """<p>{{ sex }}{% if birth %}, born {{ birth }}{% endif %}</p>
<h3>Linezolid trough trend</h3>
{% if trend %}<img alt="trough trend" src="data:image/png;base64,{{ trend }}">
<table><tr><th>Sampled</th><th>Trough</th><th>Status</th></tr>{% for t in troughs %}<tr><td>{{ t[0] }}</td><td>{{ t[1] }}</td><td>{{ t[2] }}</td></tr>{% endfor %}</table>
{% else %}<p class="muted">No linezolid trough.</p>{% endif %}
<h3>Reports</h3>{% for r in reports %}<div style="border:1px solid #ddd;margin:.6em 0;padding:.4em .8em">{{ r }}</div>{% endfor %}
{% if not reports %}<p class="muted">No reports for this patient yet.</p>{% endif %}"""

COHORT = """{% if not stats %}<p class="muted">No cohort statistics yet: run
<code>labinterp cohort --input FILE --out stats.json</code> and set LABINTERP_COHORT_STATS to that file.</p>{% else %}
<p>{{ stats.n }} patients; excluded {{ stats.excluded.below_loq }} below the LOQ and {{ stats.excluded.egfr_below_30 }} with eGFR &lt; 30.
Below / within / above: {{ stats.categories.below }} / {{ stats.categories.within }} / {{ stats.categories.above }}.</p>
{% for name, data in figures.items() %}<img alt="{{ name }}" src="data:image/png;base64,{{ data }}">{% endfor %}
<table><tr><th>Factor</th><th>Group</th><th>n</th><th>below %</th><th>within %</th><th>above %</th><th>p</th></tr>
{% for g in stats.groups %}<tr><td>{{ g.factor }}</td><td>{{ g.group }}</td><td>{{ g.n }}</td><td>{{ g.below }}</td><td>{{ g.within }}</td><td>{{ g.above }}</td>
<td>{{ "%.3f"|format(g.p_chi2) if g.p_chi2 is not none else "-" }}</td></tr>{% endfor %}</table>
<table><tr><th>Factor</th><th>Outcome</th><th>Adjusted for</th><th>OR (95 % CI)</th><th>p</th></tr>
{% for a in stats.associations %}<tr><td>{{ a.factor }} {{ a.group }} vs {{ a.reference }}</td><td>{{ a.outcome }}</td><td>{{ a.adjusted_for|join(", ") or "-" }}</td>
<td>{% if a.odds_ratio is not none %}{{ a.odds_ratio }} ({{ a.ci95[0] }}-{{ a.ci95[1] }}){% else %}{{ a.error }}{% endif %}</td><td>{{ a.p if a.p is not none else "-" }}</td></tr>{% endfor %}</table>{% endif %}"""


_TEMPLATES: dict[str, Any] = {}


def _compiled(source: str) -> Any:
    if source not in _TEMPLATES:
        _TEMPLATES[source] = _env.from_string(source)
    return _TEMPLATES[source]


def page(title: str, template: str, **context: Any) -> str:
    from markupsafe import Markup

    body = Markup(_compiled(template).render(**context))
    return _compiled(LAYOUT).render(title=title, body=body)


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
    return page("Dashboard", INDEX, reports=reports, flagged=sorted(flagged.items()))


def _trend_png(points: list[tuple[str, float]], low: float, high: float) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 2.8), dpi=100)
    ax.axhspan(low, high, color="#9c9", alpha=0.35, label=f"{low:g}-{high:g} mg/L")
    ax.plot([p[0][:10] for p in points], [p[1] for p in points], marker="o", color="#c00")
    ax.set_ylabel("mg/L")
    ax.legend(loc="upper right", fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


@dashboard.get("/Patient/<pid>")
def patient(pid: str) -> str:
    if not is_fhir_id(pid):
        raise BadRequest(f"{pid!r} is not a FHIR resource id")
    s = services()
    k = s.knowledge
    data = s.client().fetch_patient(pid, k.output.systems["series_identifier"])
    parsed = split_bundle(data.bundle)
    record = extract_patient(parsed.patients[0], parsed.medications, k) if parsed.patients else None
    troughs = record.of("linezolid") if record else []
    within = k.linezolid.band("within")
    points = [(m.time.text, m.value) for m in troughs if m.time and m.value is not None]
    trend = _trend_png(points, within.lower or 0.0, within.upper or 0.0) if points else ""
    reports = [r["text"]["div"] for r in data.written if r["resourceType"] == "DiagnosticReport" and r.get("text")]
    from markupsafe import Markup

    p = record.patient if record else None
    return page(
        f"Patient/{pid}",
        PATIENT,
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
        "Cohort: first trough by genotype (the method of the Milan linezolid cohort)", COHORT, stats=stats, figures=figures
    )
