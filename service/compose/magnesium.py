"""The serum magnesium DiagnosticReport (SPEC section 4)."""

from __future__ import annotations

from service.compose import narrative as nv
from service.compose.common import Context, Written, concept, effective, ref, status_of
from service.compose.renal import renal_line
from service.compose.reports import not_used, report
from service.rules import Findings
from service.rules.magnesium import MagnesiumFinding


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
        not_used(f),
    )
    conclusion = " ".join(lines + ([f"Guidance: {' '.join(guidance)}"] if guidance else []))
    body = report(
        ctx, "magnesium", status_of(mg.inputs), effective(mg.mg.time), [ref(m.source) for m in mg.inputs], conclusion, codes, text
    )
    return ctx.new("magnesium", body, [m.source for m in mg.inputs] + [ctx.patient])
