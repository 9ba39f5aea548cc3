"""The serum magnesium DiagnosticReport (SPEC section 4) and its view."""

from __future__ import annotations

from typing import Any

from labinterp.compose.common import Context, Written, concept, effective, ref, status_of
from labinterp.compose.renal import renal_section
from labinterp.compose.reports import report, report_view
from labinterp.compose.risk import arrhythmia_table
from labinterp.compose.view import BASIS, RangeBar, Section, section
from labinterp.knowledge import Knowledge
from labinterp.rules import Findings
from labinterp.rules.magnesium import MagnesiumFinding

SCALE_TOP_MG_DL = 5.0  # right end of the range bar's scale (a layout choice, not a threshold)


def magnesium_report(ctx: Context, f: Findings, mg: MagnesiumFinding) -> Written:
    lines = _lines(ctx.k, mg)
    guidance = mg.guidance + mg.electrolytes
    conclusion = " ".join(lines + ([f"Guidance: {' '.join(guidance)}"] if guidance else []))
    status = status_of(mg.inputs)
    body = report(
        ctx, "magnesium", status, effective(mg.mg.time), [ref(m.source) for m in mg.inputs], conclusion, _codes(ctx, mg)
    )
    view = report_view(
        ctx,
        f,
        "magnesium",
        status,
        lines[0],
        about=mg.mg,
        measured=mg.inputs,
        bar=_bar(ctx.k, mg),
        interpretation=lines[1:],
        tables=arrhythmia_table(mg),
        sections=_sections(ctx.k, f, mg, guidance),
    )
    return ctx.new("magnesium", body, [m.source for m in mg.inputs] + [ctx.patient], view)


def _lines(k: Knowledge, mg: MagnesiumFinding) -> list[str]:
    """The headline (the result and its band), then what else the report found."""
    band = mg.band
    # a converted value is shown to 3 decimals, so it never looks as if it sat on a band edge it does not
    lines = [
        f"Serum magnesium {mg.mg.original}"
        + (f" ({mg.mg.value:.3f} mg/dL)" if not mg.mg.original.endswith("mg/dL") else "")
        + f": {band.text if band else 'indeterminate: ' + mg.why_indeterminate}"
        + (f"; {mg.compared_in}" if mg.compared_in else "")
        + (f"; {mg.conversion_note}" if mg.conversion_note else "")
        + "."
    ]
    if mg.lab_note:
        lines.append(mg.lab_note)
    if mg.child:
        lines.append(f"Patient aged {mg.age} years: the children's dose of the source applies, not the adult doses.")
    if mg.causes:
        lines.append("Medications that can cause hypomagnesemia: " + "; ".join(mg.causes) + ".")
    if mg.not_current:
        lines.append("On record but not current at the sample, so not named as a cause: " + "; ".join(mg.not_current) + ".")
    if mg.digoxin and mg.hypo:
        lines.append(k.magnesium.digoxin.text)
    if mg.hypo:
        named = [w for w, on in (("hypokalemia", mg.hypokalemia), ("hypocalcemia", mg.hypocalcemia)) if on]
        if named:
            lines.append(f"Also present: {' and '.join(named)}.")
    if mg.femg:
        lines.append(mg.femg.text.rstrip(".") + ".")
    if mg.hypo and mg.arrhythmia_risk:
        lines.append(f"Arrhythmia risk: {mg.arrhythmia_risk} (see the linked RiskAssessment).")
    if mg.mg.preliminary:
        lines.append("Note: the result is preliminary.")
    return lines


def _codes(ctx: Context, mg: MagnesiumFinding) -> list[dict[str, Any]]:
    band = mg.band
    if band is None:
        return []
    codes = [ctx.interpretation(band.interpretation)]
    if band.snomed:
        codes.append(concept(ctx.systems["snomed"], band.snomed, None, band.text.split(":")[0].split(" (")[0]))
    return codes


def _bar(k: Knowledge, mg: MagnesiumFinding) -> RangeBar | None:
    normal = next(b for b in k.magnesium.bands if b.name == "normal")
    if mg.mg.value is None or normal.lower is None or normal.upper is None:
        return None
    return RangeBar(
        "Serum magnesium", round(mg.mg.value, 2), "mg/dL", normal.lower, normal.upper, SCALE_TOP_MG_DL, mg.mg.comparator
    )


def _sections(k: Knowledge, f: Findings, mg: MagnesiumFinding, guidance: list[str]) -> list[Section]:
    mgk = k.magnesium
    at = mg.mg.time.start if mg.mg.time else None
    return [
        *section(f"Guidance ({mgk.guidance.source}; the clinician chooses by the patient's state)", guidance),
        *renal_section(f.renal, at),
        *section(BASIS, _basis(k, mg)),
    ]


def _band_basis(k: Knowledge) -> tuple[str, ...]:
    """The bands and their edges in each unit: the same lines on every magnesium report (made once per Knowledge)."""
    hit: tuple[str, ...] | None = k.memo("magnesium_band_basis")
    if hit is None:
        mgk = k.magnesium
        hit = k.remember(
            "magnesium_band_basis",
            (
                f"Bands: {', '.join(b.text for b in mgk.bands)} ({mgk.meta.source}).",
                *[
                    f"Edges in {u.unit}: {', '.join(f'{e:g}' for e in u.edges)} ({u.derivation}; {u.source})."
                    for u in mgk.unit_edges
                ],
            ),
        )
    return hit


def _basis(k: Knowledge, mg: MagnesiumFinding) -> list[str]:
    mgk = k.magnesium
    basis = list(_band_basis(k))
    if mg.renal_gate is not None:
        basis.append(f"Renal gate (below {mgk.renal.threshold:g}): {mg.renal_gate.text}.")
    if mg.hypo:
        e = mgk.electrolytes
        basis.append(
            f"Potassium and calcium: the results from {e.max_age_hours:g} h before to {e.max_after_hours:g} h after this sample; "
            f"a low one counts, else the nearest ({e.max_age_source}; {e.max_after_source})."
        )
    if mg.judged:
        basis.append("Electrolytes: " + "; ".join(j.words for j in mg.judged) + ".")
        basis += [f"Default limits: {src}." for src in dict.fromkeys(j.default_source for j in mg.judged if j.default_source)]
    if mg.child:
        basis.append(f"Children's dose: {mgk.pediatric.source}.")
    return basis
