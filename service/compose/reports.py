"""DiagnosticReports: linezolid TDM, magnesium, renal function, genotype interpretation (SPEC section 6)."""

from __future__ import annotations

from typing import Any

from service.compose import narrative as nv
from service.compose.common import Context, Written, concept, effective, instant, ref, status_of
from service.extract.facts import Measurement
from service.rules import Findings
from service.rules.linezolid import LinezolidFinding
from service.rules.magnesium import MagnesiumFinding
from service.rules.pgx import PgxFinding
from service.rules.renal import RenalFinding

EQUATIONS = {
    "ckd_epi_2021": "CKD-EPI 2021, race-free",
    "mdrd_idms": "IDMS-traceable MDRD",
    "reported": "reported by the laboratory",
}


def _report(
    ctx: Context,
    kind: str,
    status: str,
    effective_at: dict[str, str],
    results: list[dict[str, str]],
    conclusion: str,
    codes: list[dict[str, Any]],
    text: dict[str, str],
) -> dict[str, Any]:
    rk = ctx.k.output.reports[kind]
    s = ctx.systems
    body: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "status": status,
        "category": [concept(s["diagnostic_service"], rk.category, rk.category_display)],
        "code": concept(s["loinc"], rk.loinc, rk.loinc_display, rk.title),
        "subject": ref(ctx.patient),
        **effective_at,
        "issued": instant(ctx.now),
        "result": results,
        "conclusion": conclusion,
    }
    if codes:
        body["conclusionCode"] = codes
    body["text"] = text
    return body


def renal_line(renal: RenalFinding | None) -> str:
    if renal is None:
        return "Renal function: no creatinine or eGFR result."
    if renal.egfr is None:
        return f"Renal function: no eGFR, because {renal.why_not}."
    assert renal.stage is not None
    line = f"eGFR {renal.egfr:.1f} mL/min/1.73 m2 ({EQUATIONS[renal.equation]}), KDIGO {renal.stage.name} ({renal.stage.text})"
    if renal.crcl is not None:
        line += f"; Cockcroft-Gault creatinine clearance {renal.crcl:.0f} mL/min (actual body weight)"
    return line + "."


def linezolid_report(ctx: Context, f: Findings, lz: LinezolidFinding, risk: Written | None) -> Written:
    k = ctx.k
    t = lz.trough
    band = lz.band
    headline = f"Linezolid trough {t.original}" + (
        f" ({t.value:.2f} mg/L)" if t.unit == "mg/L" and not t.original.startswith(f"{t.value:g} mg/L") else ""
    )
    category = band.text if band else f"indeterminate: {lz.why_indeterminate}"
    lines = [f"{headline}: {category}."]
    timing = {"valid": "Valid trough", "invalid": "Not a valid trough", "unchecked": "Timing could not be checked"}[
        lz.timing.status
    ]
    lines.append(f"{timing}: {'; '.join(lz.timing.reasons)}.")
    if lz.previous:
        series = ", ".join(m.original for m in [*lz.previous, t])
        lines.append(f"Trend ({len(lz.previous) + 1} results, oldest first: {series}): {lz.trend}.")
    if lz.mic is not None:
        verdict = {
            True: "the trough is BELOW the MIC",
            False: "the trough is not below the MIC",
            None: "comparison with the MIC is not possible",
        }[lz.below_mic]
        lines.append(f"Linezolid MIC of the isolate {lz.mic.original}: {verdict}.")
    lines.append(lz.suggestion.text)
    lines += [f"Note: {n}." for n in lz.notes]
    conclusion = " ".join(lines)
    codes = [ctx.interpretation(band.interpretation)] if band else []
    inputs: list[Measurement] = [*lz.previous, t] + ([lz.mic] if lz.mic else [])
    rows = [[m.time.text if m.time else "-", m.original, m.status] for m in [*lz.previous, t]]
    assay = k.linezolid.assay
    facts = [
        f"Therapeutic range {k.linezolid.band('within').lower:g}-{k.linezolid.band('within').upper:g} mg/L; limit of quantification "
        f"{assay.loq_mg_per_l:g} mg/L; assay linear to {assay.linearity_upper_mg_per_l:g} mg/L ({k.linezolid.band('within').source}).",
        f"Regimen: {lz.regimen.label()}" + ("" if lz.regimen_known else " (standard regimen assumed: none recorded)") + ".",
        renal_line(f.renal),
    ]
    if lz.suggestion.basis:
        facts.append(f"Basis of the suggestion: {lz.suggestion.basis}")
    if risk is not None:
        facts.append("Risk of under- and overexposure: see the linked RiskAssessment.")
    text = nv.div(
        k.output.reports["linezolid"].title,
        lines,
        nv.table(["Sampled", "Result", "Status"], rows),
        nv.section("Basis", facts),
        _ignored(f),
    )
    body = _report(
        ctx, "linezolid", status_of(inputs), effective(t.time), [ref(m.source) for m in inputs], conclusion, codes, text
    )
    return ctx.new("linezolid", body, [m.source for m in inputs] + [ctx.patient])


def magnesium_report(ctx: Context, f: Findings, mg: MagnesiumFinding) -> Written:
    k = ctx.k
    band = mg.band
    lines = [
        f"Serum magnesium {mg.mg.original}"
        + (f" ({mg.mg.value:.2f} mg/dL)" if not mg.mg.original.endswith("mg/dL") else "")
        + f": {band.text if band else 'indeterminate: ' + mg.why_indeterminate}."
    ]
    if mg.causes:
        lines.append("Medications that can cause hypomagnesemia: " + "; ".join(mg.causes) + ".")
    if mg.digoxin and mg.hypo:
        lines.append(k.magnesium.digoxin.text)
    if mg.femg:
        lines.append(mg.femg.text + ".")
    if mg.hypo and mg.arrhythmia_risk:
        lines.append(f"Arrhythmia risk: {mg.arrhythmia_risk} (see the linked RiskAssessment).")
    if mg.mg.preliminary:
        lines.append("Note: the result is preliminary.")
    codes = []
    if band:
        codes.append(ctx.interpretation(band.interpretation))
        if band.snomed:
            codes.append(concept(ctx.systems["snomed"], band.snomed, None, band.text.split(":")[0].split(" (")[0]))
    guidance = mg.guidance + mg.electrolytes
    text = nv.div(
        k.output.reports["magnesium"].title,
        lines,
        nv.section("Guidance (seed 001, Treatment / Management; the clinician chooses by the patient's state)", guidance),
        nv.section(
            "Basis", [f"Bands: {', '.join(b.text for b in k.magnesium.bands)} ({k.magnesium.meta.source}).", renal_line(f.renal)]
        ),
        _ignored(f),
    )
    conclusion = " ".join(lines + ([f"Guidance: {' '.join(guidance)}"] if guidance else []))
    body = _report(
        ctx, "magnesium", status_of(mg.inputs), effective(mg.mg.time), [ref(m.source) for m in mg.inputs], conclusion, codes, text
    )
    return ctx.new("magnesium", body, [m.source for m in mg.inputs] + [ctx.patient])


def renal_report(ctx: Context, f: Findings, renal: RenalFinding, egfr: Written) -> Written:
    assert renal.creatinine is not None
    lines = [
        renal_line(renal),
        f"From serum creatinine {renal.creatinine.original}, age {renal.age} years, sex {f.record.patient.sex}.",
    ]
    inputs: list[Measurement] = [renal.creatinine] + ([renal.weight] if renal.weight and renal.crcl is not None else [])
    results = [{"reference": egfr.full_url}] + [ref(m.source) for m in inputs]
    text = nv.div(
        ctx.k.output.reports["renal"].title,
        lines,
        nv.section("Basis", [f"Equations and KDIGO categories: {ctx.k.renal.meta.source}."]),
    )
    body = _report(ctx, "renal", status_of(inputs), effective(renal.creatinine.time), results, " ".join(lines), [], text)
    return ctx.new("renal", body, [m.source for m in inputs] + [ctx.patient])


def genotype_report(ctx: Context, f: Findings, pgx: PgxFinding, risk: Written | None) -> Written:
    k = ctx.k
    lines, rows, codes = [], [], []
    no_effect = {line.split(":")[0]: line for line in (f.exposure.no_effect if f.exposure else [])}
    calls = [c for g in pgx.genes.values() for c in g.calls]
    for gene, g in pgx.genes.items():
        groups = ", ".join(f"{factor}: {grp or 'not classifiable'}" for factor, grp in g.groups.items())
        phenotype = g.phenotype.name if g.phenotype else ""
        if g.haplotype:
            phenotype = f"haplotype {g.haplotype}"
        rows.append(
            [
                gene,
                g.label().removeprefix(f"{gene} "),
                phenotype or "-",
                groups or "-",
                ", ".join(sorted({c.shape for c in g.calls})),
            ]
        )
        line = g.label() + (f": {phenotype}" if phenotype else "")
        effects = [no_effect[key] for key in no_effect if key.startswith(tuple(g.groups))]
        if effects:
            line += "; " + "; ".join(e.split(": ", 1)[1] for e in effects)
        lines.append(line + ".")
        lines += [f"{gene}: {n}." for n in g.notes]
        if g.phenotype and g.phenotype.code:
            codes.append(concept(ctx.systems["loinc"], g.phenotype.code, g.phenotype.name, f"{gene} {g.phenotype.name}"))
    if f.exposure:
        u = f.exposure.under
        lines.append(
            f"Linezolid underexposure risk: {u.risk or 'not assessable'}"
            + (f" ({', '.join(u.contributors)})" if u.contributors else "")
            + "."
        )
    text = nv.div(
        k.output.reports["genotype"].title,
        lines,
        nv.table(["Gene", "Genotype", "Phenotype", "Groups of seed 000", "Reported as"], rows),
        _ignored(f),
    )
    body = _report(ctx, "genotype", status_of(calls), {}, [ref(c.source) for c in calls], " ".join(lines), codes, text)
    if risk is not None:
        body["extension"] = [
            {
                "url": "http://hl7.org/fhir/uv/genomics-reporting/StructureDefinition/genomic-risk-assessment",
                "valueReference": {"reference": risk.full_url},
            }
        ]
        body = {"resourceType": body.pop("resourceType"), "extension": body.pop("extension"), **body}
    return ctx.new("genotype", body, [c.source for c in calls] + [ctx.patient])


def _ignored(f: Findings) -> str:
    items = [f"{i.source.reference}: {i.why}" for i in f.record.ignored]
    items += [f"{p.where}: {p.what} (not interpreted)" for p in f.record.problems]
    return nv.section("Not used", items)
