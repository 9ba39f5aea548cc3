"""Rendered reports a clinician reads: HTML (Jinja2) and PDF (reportlab) for each DiagnosticReport, laid out
as a laboratory report: a PRELIMINARY banner when the report is preliminary; the patient (name, identifier,
birth date, sex and age), the specimen and its collection time, the performer where given, the issue time and
status; then the result against its range (a small range bar), the interpretation, the genotype table with
phenotypes, the risks with their basis and sources, the suggestion, the eGFR and the rule set's version. The
PDF repeats the patient's identification, the banner and "page x of y" on every page.

The HTML body is valid FHIR XHTML and becomes the report's narrative (no empty elements: servers re-serialize
XHTML and an empty <div></div> comes back as <div/>, which an HTML parser reads as an open tag; only elements
and attributes the FHIR narrative allows, no <html>/<head>); both renderings are attached as presentedForm.
Deterministic: the same findings give the same bytes. Pure: no I/O, no clock; the patient's name and
identifier go into the rendering only, never into a log.

Sources are cited in readers' words: the knowledge loader has already replaced every source key of mappings/
by its citation (mappings/sources.toml), and nothing here names a source file or key."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from labinterp import __version__
from labinterp.compose.common import Written
from labinterp.compose.renal import renal_line
from labinterp.extract.facts import FhirTime, GenotypeCall, Measurement
from labinterp.jinja import template
from labinterp.knowledge import Knowledge
from labinterp.render.pdf import render_pdf
from labinterp.render.view import GENOTYPE_HEADER, NOT_RECORDED, PRELIMINARY_NOTE, RISK_HEADER, XHTML, RangeBar, View, when
from labinterp.rules import Findings
from labinterp.rules.renal import RenalFinding


def _get(obj: Any, path: str, default: Any = None) -> Any:
    """obj.a.b.c, or `default` when any step is missing or None: findings of rules in flux never crash a rendering."""
    for name in path.split("."):
        obj = getattr(obj, name, None)
        if obj is None:
            return default
    return obj


def _lines(items: Any) -> list[str]:
    """Non-empty strings only: an empty <li></li> would not survive a server's re-serialization."""
    return [str(x) for x in (items or []) if x is not None and str(x).strip()]


def _cells(row: list[Any]) -> list[str]:
    return [str(c) if c is not None and str(c).strip() else "-" for c in row]


def _risk_rows(f: Findings, kind: str) -> list[list[str]]:
    rows = []
    if kind in ("linezolid", "genotype") and f.exposure:
        for p in (_get(f.exposure, "under"), _get(f.exposure, "over")):
            if p is None:
                continue
            probability = _get(p, "probability")
            prob = f"{probability:.3f}" if isinstance(probability, int | float) else "-"
            rows.append(
                [
                    f"Linezolid {_get(p, 'outcome', '')}",
                    _get(p, "risk") or "not assessable",
                    prob,
                    "; ".join(_lines(_get(p, "rationale"))),
                ]
            )
    if kind == "magnesium" and f.magnesium and _get(f.magnesium, "hypo"):
        rows.append(
            [
                "Cardiac arrhythmia",
                _get(f.magnesium, "arrhythmia_risk") or "-",
                "-",
                "; ".join(_lines(_get(f.magnesium, "arrhythmia_rationale"))),
            ]
        )
    return [_cells(r) for r in rows]


def _genotype_rows(f: Findings) -> list[list[str]]:
    if not f.pgx:
        return []
    rows = []
    for gene, g in (_get(f.pgx, "genes") or {}).items():
        haplotype = _get(g, "haplotype")
        phenotype = _get(g, "phenotype.name") or (f"haplotype {haplotype}" if haplotype else "-")
        groups = ", ".join(f"{factor}: {grp or 'not classifiable'}" for factor, grp in (_get(g, "groups") or {}).items())
        label = g.label() if callable(getattr(g, "label", None)) else str(gene)
        rows.append([gene, label.removeprefix(f"{gene} "), phenotype, groups or "-"])
    return [_cells(r) for r in rows]


def _primary(w: Written, f: Findings) -> Measurement | None:
    """The measurement the report is about: the trough, the magnesium, the creatinine (or reported eGFR);
    else the first of the report's results that is a measurement."""
    by_kind = {
        "linezolid": ("linezolid.trough",),
        "magnesium": ("magnesium.mg",),
        "renal": ("renal.creatinine", "renal.reported"),
    }
    for path in by_kind.get(w.kind, ()):
        found = _get(f, path)
        if isinstance(found, Measurement):
            return found
    results = _results(w, f)
    return results[0] if results else None


def _results(w: Written, f: Findings) -> list[Measurement]:
    refs = [r.get("reference") for r in w.resource.get("result", []) or [] if isinstance(r, dict)]
    by_ref = {m.source.reference: m for m in f.record.measurements}
    return [by_ref[r] for r in refs if r in by_ref]


def _result_times(w: Written, f: Findings) -> list[str]:
    """When the report's results (measurements and genotypes) were collected, latest last."""
    refs = {r.get("reference") for r in w.resource.get("result", []) or [] if isinstance(r, dict)}
    dated: list[Measurement | GenotypeCall] = [*f.record.measurements, *f.record.genotypes]
    times: list[FhirTime] = [x.time for x in dated if x.source.reference in refs and x.time is not None]
    return [t.text for t in sorted(times, key=lambda t: t.start)]


def _header(w: Written, f: Findings) -> list[tuple[str, str]]:
    """The heading block of a laboratory report. Patient name and identifier appear here only."""
    r, p = w.resource, f.record.patient
    birth = p.birth_date.isoformat() if p.birth_date else ""
    if birth and p.birth_precision in ("year", "month"):
        birth = birth[: 4 if p.birth_precision == "year" else 7]
    age = f", {f.age} years" if f.age is not None else ", age unknown"
    primary = _primary(w, f)
    measured = ([primary] if primary else []) + _results(w, f)
    specimen = _get(primary, "specimen") or ""
    if display := _get(primary, "specimen_display"):  # when extract keeps Observation.specimen.display
        specimen = f"{display} ({specimen})" if specimen else str(display)
    performers = list(dict.fromkeys(_get(m, "performer") or "" for m in measured))
    collected = _get(primary, "time.text") or r.get("effectiveDateTime", "") or next(reversed(_result_times(w, f)), "")
    status = str(r.get("status", ""))
    header = [
        ("Patient", p.name or NOT_RECORDED),
        ("Identifier", p.identifier or NOT_RECORDED),
        ("Birth date", birth or NOT_RECORDED),
        ("Sex, age", f"{p.sex}{age}"),
        ("Specimen", specimen or NOT_RECORDED),
        ("Collected", when(collected) or NOT_RECORDED),
    ]
    if performer := ", ".join(x for x in performers if x):
        header.append(("Performer", performer))
    header += [
        ("Issued", when(r.get("issued", "")) or NOT_RECORDED),
        ("Status", "PRELIMINARY" if status == "preliminary" else status),
        ("Patient record", p.source.reference),
    ]
    return header


def build_view(w: Written, f: Findings, k: Knowledge) -> View:
    r = w.resource
    p = f.record.patient
    header = _header(w, f)
    fields = dict(header)
    sample = r.get("effectiveDateTime", "-")
    view = View(
        title=(r.get("code") or {}).get("text") or "Report",
        patient=" · ".join((p.name or "name not recorded", p.identifier or p.source.reference, f"born {fields['Birth date']}")),
        sample=sample,
        issued=r.get("issued", ""),
        status=r.get("status", ""),
        headline=r.get("conclusion", "").split(". ")[0].rstrip(".") + ".",
        header=header,
        preliminary=r.get("status") == "preliminary",
        footer=f"labinterp {__version__}, rule set {k.ruleset_version}; issued {when(r.get('issued', '')) or '-'}. Decision "
        "support for clinicians and pharmacists: every suggestion states its basis.",
    )
    view.not_used = [f"{i.source.reference}: {i.why}" for i in f.record.ignored]
    view.not_used += [f"{pr.where}: {pr.what} (not interpreted)" for pr in f.record.problems]
    if isinstance(f.renal, RenalFinding):  # the sentence the report's conclusion carries: bounds, both sexes, staleness
        view.egfr = renal_line(f.renal, _sampled_at(w, f)).removeprefix("Renal function: ")
    if w.kind == "linezolid" and f.linezolid:
        lz, band = f.linezolid, _get(f.linezolid, "band")
        within = k.linezolid.band("within")
        value = _get(lz, "trough.value")
        not_trough = _get(lz, "timing.is_trough") is False  # a post-dose level is not set against the trough range
        if value is not None and not not_trough and within.lower is not None and within.upper is not None:
            view.bar = RangeBar(
                "Linezolid trough",
                round(value, 2),
                "mg/L",
                within.lower,
                within.upper,
                k.linezolid.assay.linearity_upper_mg_per_l * 1.25,
                _get(lz, "trough.comparator", "") or "",
            )
        view.interpretation = [band.text if band else _get(lz, "why_indeterminate", ""), *(_get(lz, "timing.reasons") or ())]
        if _get(lz, "trend_text"):
            view.interpretation.append(lz.trend_text)
        mic = _get(lz, "mic")
        if mic is not None:
            view.interpretation.append(
                f"MIC {mic.original}: "
                + ("level" if not_trough else "trough")
                + (" BELOW the MIC" if _get(lz, "below_mic") else " not below the MIC")
            )
        view.suggestion = (_get(lz, "suggestion.text") or "").removeprefix("Suggestion for the clinician: ")
        basis = list(dict.fromkeys(b for b in (_get(lz, "suggestion.basis"), within.source) if b))
        view.basis = [b for b in basis if not any(b != other and b in other for other in basis)]  # a citation said once
        view.not_used += [f"{m.source.reference} ({m.original}): {why}" for m, why in _get(lz, "not_used") or ()]
        view.risks = _risk_rows(f, "linezolid")
    elif w.kind == "magnesium" and f.magnesium:
        mg = f.magnesium
        normal = next(b for b in k.magnesium.bands if b.name == "normal")
        value = _get(mg, "mg.value")
        if value is not None and normal.lower is not None and normal.upper is not None:
            comparator = _get(mg, "mg.comparator", "") or ""
            view.bar = RangeBar("Serum magnesium", round(value, 2), "mg/dL", normal.lower, normal.upper, 5.0, comparator)
        band = _get(mg, "band")
        view.interpretation = [
            band.text if band else _get(mg, "why_indeterminate", ""),
            _get(mg, "conversion_note"),
            _get(mg, "lab_note"),
            *(_get(mg, "causes") or ()),
            *(f"not current at the sample, so not named as a cause: {why}" for why in _get(mg, "not_current") or ()),
            _get(mg, "femg.text"),
        ]
        view.suggestion = " ".join(_lines([*(_get(mg, "guidance") or ()), *(_get(mg, "electrolytes") or ())]))
        view.basis = [k.magnesium.meta.source]
        view.risks = _risk_rows(f, "magnesium")
    elif w.kind == "genotype":
        view.genotypes = _genotype_rows(f)
        view.interpretation = [line for line in r.get("conclusion", "").split(". ") if line][1:]
        view.risks = _risk_rows(f, "genotype")
        view.basis = [k.linezolid.meta.source]  # its citation names the cohort
    elif w.kind in ("linezolid", "magnesium"):  # received but not interpretable: the report says which and why
        view.interpretation = [line for line in r.get("conclusion", "").split(". ") if line][1:]
    elif w.kind == "renal":
        view.interpretation = [r.get("conclusion", "")]
        view.basis = [k.renal.meta.source]
    view.interpretation, view.basis, view.not_used = _lines(view.interpretation), _lines(view.basis), _lines(view.not_used)
    return view


def _sampled_at(w: Written, f: Findings) -> datetime | None:
    """The time of the sample a report is about (for the staleness of the renal result beside it)."""
    m = {"linezolid": _get(f, "linezolid.trough"), "magnesium": _get(f, "magnesium.mg")}.get(w.kind)
    t = _get(m, "time") if m is not None else None
    return t.start if t is not None else None


_FRAGMENT = template("report_fragment.html")  # compiled once: compiling per report cost ~70 % of the rendering time
_PAGE = template("report_page.html")


def render_fragment(view: View) -> str:
    return _FRAGMENT.render(v=view, xhtml=XHTML, note=PRELIMINARY_NOTE, genotype_header=GENOTYPE_HEADER, risk_header=RISK_HEADER)


def render_html(view: View, fragment: str | None = None) -> str:
    from markupsafe import Markup

    return _PAGE.render(v=view, fragment=Markup(fragment if fragment is not None else render_fragment(view)))


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
