"""Rendered reports a clinician reads: HTML (Jinja2) and PDF (reportlab) for each DiagnosticReport, with
the patient and sample, the result against its range (a small range bar), the interpretation, the
genotype table with phenotypes, the risks with their basis and sources, the suggestion, the eGFR and the
rule set's version. The HTML body is valid FHIR XHTML and becomes the report's narrative (no empty elements: servers re-serialize
XHTML and an empty <div></div> comes back as <div/>, which an HTML parser reads as an open tag); both renderings
are attached as presentedForm. Deterministic: the same findings give the same bytes."""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass, field
from typing import Any

from jinja2 import Environment

from service import __version__
from service.compose.common import Written
from service.knowledge import Knowledge
from service.rules import Findings

XHTML = "http://www.w3.org/1999/xhtml"


@dataclass
class RangeBar:
    label: str
    value: float
    unit: str
    low: float
    high: float
    top: float  # right end of the scale

    def position(self, v: float) -> float:
        """0..100 on a log scale from top/100 to top (troughs and concentrations span decades)."""
        lo = self.top / 100.0
        v = min(max(v, lo), self.top)
        return round(100.0 * (math.log(v) - math.log(lo)) / (math.log(self.top) - math.log(lo)), 1)


@dataclass
class View:
    title: str
    patient: str
    sample: str
    issued: str
    status: str
    headline: str
    bar: RangeBar | None = None
    interpretation: list[str] = field(default_factory=list)
    genotypes: list[list[str]] = field(default_factory=list)
    risks: list[list[str]] = field(default_factory=list)
    suggestion: str = ""
    egfr: str = ""
    basis: list[str] = field(default_factory=list)
    not_used: list[str] = field(default_factory=list)
    footer: str = ""


FRAGMENT = """<div xmlns="{{ xhtml }}">
<h3>{{ v.title }}</h3>
<p><b>Patient</b> {{ v.patient }} &#183; <b>Sample</b> {{ v.sample }} &#183; <b>Status</b> {{ v.status }}</p>
<p><b>{{ v.headline }}</b></p>
{% if v.bar %}<div style="position:relative;height:14px;width:320px;background:#eee;border:1px solid #999">
<div style="position:absolute;left:{{ v.bar.position(v.bar.low) }}%;width:{{ v.bar.position(v.bar.high) - v.bar.position(v.bar.low) }}%;height:14px;background:#9c9;font-size:1px">&#160;</div>
<div style="position:absolute;left:{{ v.bar.position(v.bar.value) }}%;width:3px;height:14px;background:#c00;font-size:1px">&#160;</div></div>
<p>{{ v.bar.label }}: {{ v.bar.value }} {{ v.bar.unit }}; range {{ v.bar.low }}-{{ v.bar.high }} {{ v.bar.unit }} (green); scale to {{ v.bar.top }} {{ v.bar.unit }}</p>{% endif %}
{% if v.interpretation %}<p><b>Interpretation</b></p><ul>{% for line in v.interpretation %}<li>{{ line }}</li>{% endfor %}</ul>{% endif %}
{% if v.genotypes %}<table><tr><th>Gene</th><th>Genotype</th><th>Phenotype</th><th>Groups of seed 000</th></tr>
{% for row in v.genotypes %}<tr>{% for cell in row %}<td>{{ cell }}</td>{% endfor %}</tr>{% endfor %}</table>{% endif %}
{% if v.risks %}<table><tr><th>Risk</th><th>Level</th><th>Probability</th><th>Basis and source</th></tr>
{% for row in v.risks %}<tr>{% for cell in row %}<td>{{ cell }}</td>{% endfor %}</tr>{% endfor %}</table>{% endif %}
{% if v.suggestion %}<p><b>Suggestion for the clinician</b>: {{ v.suggestion }}</p>{% endif %}
{% if v.egfr %}<p><b>Renal function</b>: {{ v.egfr }}</p>{% endif %}
{% if v.basis %}<p><b>Basis</b></p><ul>{% for line in v.basis %}<li>{{ line }}</li>{% endfor %}</ul>{% endif %}
{% if v.not_used %}<p><b>Not used</b></p><ul>{% for line in v.not_used %}<li>{{ line }}</li>{% endfor %}</ul>{% endif %}
<p>{{ v.footer }}</p>
</div>"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"/><title>{{ v.title }}</title>
<style>body{font-family:Helvetica,Arial,sans-serif;margin:2em;max-width:50em;color:#222}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #bbb;padding:.2em .5em;vertical-align:top;text-align:left}
th{background:#eee}h3{margin-top:0}</style></head>
<body>{{ fragment }}</body></html>"""

_env = Environment(autoescape=True)


def _risk_rows(f: Findings, kind: str) -> list[list[str]]:
    rows = []
    if kind in ("linezolid", "genotype") and f.exposure:
        for p in (f.exposure.under, f.exposure.over):
            prob = f"{p.probability:.3f}" if p.probability is not None else "-"
            rows.append([f"Linezolid {p.outcome}", p.risk or "not assessable", prob, "; ".join(p.rationale)])
    if kind == "magnesium" and f.magnesium and f.magnesium.hypo:
        rows.append(["Cardiac arrhythmia", f.magnesium.arrhythmia_risk or "-", "-", "; ".join(f.magnesium.arrhythmia_rationale)])
    return rows


def _genotype_rows(f: Findings) -> list[list[str]]:
    if not f.pgx:
        return []
    rows = []
    for gene, g in f.pgx.genes.items():
        phenotype = g.phenotype.name if g.phenotype else (f"haplotype {g.haplotype}" if g.haplotype else "-")
        groups = ", ".join(f"{factor}: {grp or 'not classifiable'}" for factor, grp in g.groups.items())
        rows.append([gene, g.label().removeprefix(f"{gene} "), phenotype, groups or "-"])
    return rows


def build_view(w: Written, f: Findings, k: Knowledge) -> View:
    r = w.resource
    p = f.record.patient
    who = f"{p.source.reference}, {p.sex}" + (f", {f.age} years" if f.age is not None else ", age unknown")
    sample = r.get("effectiveDateTime", "-")
    view = View(
        title=r["code"].get("text", "Report"),
        patient=who,
        sample=sample,
        issued=r.get("issued", ""),
        status=r["status"],
        headline=r.get("conclusion", "").split(". ")[0] + ".",
        footer=f"labinterp {__version__}, rule set {k.ruleset_version}; issued {r.get('issued', '')}. Decision support for "
        "clinicians and pharmacists: every suggestion states its basis.",
    )
    view.not_used = [f"{i.source.reference}: {i.why}" for i in f.record.ignored]
    view.not_used += [f"{pr.where}: {pr.what} (not interpreted)" for pr in f.record.problems]
    renal = f.renal
    if renal and renal.egfr is not None and renal.stage is not None:
        view.egfr = f"eGFR {renal.egfr:.1f} mL/min/1.73 m2 ({renal.equation}), KDIGO {renal.stage.name}"
    elif renal:
        view.egfr = f"no eGFR: {renal.why_not}"
    if w.kind == "linezolid" and f.linezolid:
        lz, band = f.linezolid, f.linezolid.band
        within = k.linezolid.band("within")
        if lz.trough.value is not None and within.lower is not None and within.upper is not None:
            view.bar = RangeBar(
                "Linezolid trough",
                round(lz.trough.value, 2),
                "mg/L",
                within.lower,
                within.upper,
                k.linezolid.assay.linearity_upper_mg_per_l * 1.25,
            )
        view.interpretation = [band.text if band else lz.why_indeterminate, *lz.timing.reasons]
        if lz.previous:
            view.interpretation.append("Trend: " + ", ".join(m.original for m in [*lz.previous, lz.trough]) + f" ({lz.trend})")
        if lz.mic is not None:
            view.interpretation.append(
                f"MIC {lz.mic.original}: " + ("trough BELOW the MIC" if lz.below_mic else "trough not below the MIC")
            )
        view.suggestion = lz.suggestion.text.removeprefix("Suggestion for the clinician: ")
        view.basis = [b for b in (lz.suggestion.basis, within.source) if b]
        view.risks = _risk_rows(f, "linezolid")
    elif w.kind == "magnesium" and f.magnesium:
        mg = f.magnesium
        normal = next(b for b in k.magnesium.bands if b.name == "normal")
        if mg.mg.value is not None and normal.lower is not None and normal.upper is not None:
            view.bar = RangeBar("Serum magnesium", round(mg.mg.value, 2), "mg/dL", normal.lower, normal.upper, 5.0)
        view.interpretation = [
            mg.band.text if mg.band else mg.why_indeterminate,
            *mg.causes,
            *([mg.femg.text] if mg.femg else []),
        ]
        view.suggestion = " ".join(mg.guidance + mg.electrolytes)
        view.basis = [k.magnesium.meta.source]
        view.risks = _risk_rows(f, "magnesium")
    elif w.kind == "genotype":
        view.genotypes = _genotype_rows(f)
        view.interpretation = [line for line in r.get("conclusion", "").split(". ") if line][1:]
        view.risks = _risk_rows(f, "genotype")
        view.basis = [f"{k.linezolid.cohort.name}; {k.linezolid.meta.source}"]
    elif w.kind == "renal":
        view.interpretation = [r.get("conclusion", "")]
        view.basis = [k.renal.meta.source]
    return view


_FRAGMENT = _env.from_string(FRAGMENT)  # compiled once: compiling per report cost ~70 % of the rendering time
_PAGE = _env.from_string(PAGE)


def render_fragment(view: View) -> str:
    return _FRAGMENT.render(v=view, xhtml=XHTML)


def render_html(view: View, fragment: str | None = None) -> str:
    from markupsafe import Markup

    return _PAGE.render(v=view, fragment=Markup(fragment if fragment is not None else render_fragment(view)))


_STYLES: dict[str, Any] = {}


def _styles() -> Any:
    """reportlab's stylesheet, built once per process."""
    if not _STYLES:
        from reportlab.lib.styles import getSampleStyleSheet

        sheet = getSampleStyleSheet()
        sheet.add(sheet["BodyText"].clone("small", fontSize=8, leading=10))
        _STYLES["sheet"] = sheet
    return _STYLES["sheet"]


def render_pdf(view: View) -> bytes:
    from reportlab import rl_config

    rl_config.invariant = 1  # no creation date or random id in the file: same findings, same bytes
    from xml.sax.saxutils import escape

    from reportlab.graphics.shapes import Drawing, Line, Rect
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    styles = _styles()
    body, small = styles["BodyText"], styles["small"]
    story: list[Any] = [
        Paragraph(escape(view.title), styles["Heading2"]),
        Paragraph(
            f"<b>Patient</b> {escape(view.patient)} &#183; <b>Sample</b> {escape(view.sample)} &#183; "
            f"<b>Status</b> {escape(view.status)}",
            body,
        ),
        Spacer(1, 3 * mm),
        Paragraph(f"<b>{escape(view.headline)}</b>", body),
    ]
    if view.bar:
        bar, width = view.bar, 120 * mm
        d = Drawing(width, 8 * mm)
        d.add(Rect(0, 2 * mm, width, 4 * mm, fillColor=colors.HexColor("#eeeeee"), strokeColor=colors.grey))
        x0, x1 = width * bar.position(bar.low) / 100, width * bar.position(bar.high) / 100
        d.add(Rect(x0, 2 * mm, x1 - x0, 4 * mm, fillColor=colors.HexColor("#99cc99"), strokeColor=None))
        xv = width * bar.position(bar.value) / 100
        d.add(Line(xv, 0.5 * mm, xv, 7.5 * mm, strokeColor=colors.red, strokeWidth=2))
        story += [
            Spacer(1, 2 * mm),
            d,
            Paragraph(escape(f"{bar.label}: {bar.value} {bar.unit}; range {bar.low}-{bar.high} {bar.unit}"), small),
        ]

    def table(header: list[str], rows: list[list[str]], widths: list[float]) -> Table:
        data = [[Paragraph(f"<b>{escape(h)}</b>", small) for h in header]] + [
            [Paragraph(escape(c), small) for c in row] for row in rows
        ]
        t = Table(data, colWidths=[w * mm for w in widths], repeatRows=1)
        t.setStyle(
            TableStyle(
                [
                    ("GRID", (0, 0), (-1, -1), 0.4, colors.grey),
                    ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eeeeee")),
                    ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ]
            )
        )
        return t

    if view.interpretation:
        story += [Spacer(1, 3 * mm), Paragraph("<b>Interpretation</b>", body)]
        story += [Paragraph("&#8226; " + escape(line), body) for line in view.interpretation if line]
    if view.genotypes:
        story += [
            Spacer(1, 3 * mm),
            table(["Gene", "Genotype", "Phenotype", "Groups of seed 000"], view.genotypes, [22, 45, 45, 60]),
        ]
    if view.risks:
        story += [Spacer(1, 3 * mm), table(["Risk", "Level", "Probability", "Basis and source"], view.risks, [35, 22, 20, 95])]
    for title, text in (("Suggestion for the clinician", view.suggestion), ("Renal function", view.egfr)):
        if text:
            story += [Spacer(1, 3 * mm), Paragraph(f"<b>{title}</b>: {escape(text)}", body)]
    if view.basis:
        story += [Spacer(1, 3 * mm), Paragraph("<b>Basis</b>", body)] + [Paragraph(escape(b), small) for b in view.basis]
    if view.not_used:
        story += [Spacer(1, 3 * mm), Paragraph("<b>Not used</b>", body)] + [Paragraph(escape(b), small) for b in view.not_used]
    story += [Spacer(1, 6 * mm), Paragraph(escape(view.footer), small)]
    buffer = io.BytesIO()
    SimpleDocTemplate(
        buffer,
        pagesize=A4,
        title=view.title,
        author="labinterp",
        leftMargin=18 * mm,
        rightMargin=18 * mm,
        topMargin=15 * mm,
        bottomMargin=15 * mm,
    ).build(story)
    return buffer.getvalue()


def attach(w: Written, f: Findings, k: Knowledge) -> None:
    """Narrative from the rendered HTML; presentedForm with the HTML page and the PDF."""
    view = build_view(w, f, k)
    fragment = render_fragment(view)
    w.resource["text"] = {"status": "generated", "div": fragment}
    forms = [("text/html", render_html(view, fragment).encode("utf-8")), ("application/pdf", render_pdf(view))]
    w.resource["presentedForm"] = [
        {
            "contentType": ct,
            "language": "en",
            "data": base64.b64encode(data).decode("ascii"),
            "title": f"{view.title} ({'HTML' if ct == 'text/html' else 'PDF'})",
        }
        for ct, data in forms
    ]


REPORT_KINDS = ("linezolid", "magnesium", "renal", "genotype")


def render_reports(written: list[Written], f: Findings, k: Knowledge) -> None:
    for w in written:
        if w.kind in REPORT_KINDS:
            attach(w, f, k)
