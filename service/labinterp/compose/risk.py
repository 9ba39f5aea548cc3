"""RiskAssessments: linezolid under/overexposure, arrhythmia with hypomagnesemia (SPEC section 6).

Probabilities are fractions (0.259, not 25.9), as the FHIR R4 and Genomics IG examples write them
(terminology.md open question 8); the cohort they come from is named in the rationale."""

from __future__ import annotations

from typing import Any

from labinterp.compose import narrative as nv
from labinterp.compose.common import Context, Written, concept, instant, ref, status_of
from labinterp.compose.view import RISK_HEADER, Table, lines, table
from labinterp.rules import Findings
from labinterp.rules.exposure import ExposureRisk
from labinterp.rules.magnesium import MagnesiumFinding

RISKS = "Risks"


def _prediction(
    ctx: Context,
    outcome: str,
    risk: str | None,
    probability: float | None,
    relative: float | None,
    rationale: list[str],
    label: str | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"outcome": {"text": outcome}}
    if probability is not None:
        out["probabilityDecimal"] = round(probability, 4)
    if risk:
        out["qualitativeRisk"] = concept(ctx.systems["risk_probability"], risk, ctx.k.output.risk_probability[risk], label)
    else:
        rationale = ["not assessable", *rationale]
    if relative is not None:
        out["relativeRisk"] = relative
    out["rationale"] = "; ".join(rationale)
    return out


def exposure_risk(ctx: Context, f: Findings) -> Written:
    assert f.exposure is not None
    e = f.exposure
    o = ctx.k.output.outcomes
    under, over = e.under, e.over
    under_rat = [
        *under.rationale,
        *(
            [f"relativeRisk {under.relative_risk:.2f}: the share below the range in the group over that in its reference group"]
            if under.relative_risk
            else []
        ),
    ]
    over_rat = list(over.rationale)
    inputs = []
    if f.linezolid:
        inputs += [*f.linezolid.previous, f.linezolid.trough]
    basis_sources = [m.source for m in inputs]
    if f.pgx:
        basis_sources += [c.source for g in f.pgx.genes.values() for c in g.calls]
    if f.renal:
        basis_sources += [m.source for m in (f.renal.creatinine, f.renal.reported) if m is not None]
    basis_sources = list(dict.fromkeys(basis_sources))
    body: dict[str, Any] = {
        "resourceType": "RiskAssessment",
        "status": status_of(inputs + ([c for g in f.pgx.genes.values() for c in g.calls] if f.pgx else [])),
        "code": {"text": "Linezolid exposure risk (under- and overexposure at the standard dose)"},
        "subject": ref(ctx.patient),
        "occurrenceDateTime": f.linezolid.trough.time.text if f.linezolid and f.linezolid.trough.time else instant(ctx.now),
        "basis": [ref(ctx.patient)] + [ref(s) for s in basis_sources],
        "prediction": [
            _prediction(ctx, o.underexposure_text, under.risk, under.probability, under.relative_risk, under_rat, under.label),
            _prediction(ctx, o.overexposure_text, over.risk, over.probability, over.relative_risk, over_rat, over.label),
        ],
    }
    if e.mitigation:
        body["mitigation"] = e.mitigation
    body["text"] = _exposure_narrative(ctx, e, under_rat, over_rat)
    return ctx.new("exposure-risk", body, [ctx.patient, *basis_sources])


def _exposure_narrative(ctx: Context, e: ExposureRisk, under_rat: list[str], over_rat: list[str]) -> dict[str, str]:
    o = ctx.k.output.outcomes
    rows = [
        [text, p.label, f"{p.probability:.3f}" if p.probability is not None else "-", "; ".join(rationale)]
        for text, p, rationale in ((o.underexposure_text, e.under, under_rat), (o.overexposure_text, e.over, over_rat))
    ]
    extra = nv.section("Genotypes with no known effect on linezolid", e.no_effect)
    return nv.div(
        "Linezolid exposure risk", [e.mitigation], nv.table(["Outcome", "Risk", "Probability", "Rationale"], rows), extra
    )


def arrhythmia_risk(ctx: Context, mg: MagnesiumFinding) -> Written:
    risk = mg.arrhythmia_risk
    assert risk is not None
    e = ctx.k.magnesium.electrolytes
    basis = list(dict.fromkeys([mg.mg.source, *[j.m.source for j in mg.judged]]))
    actions = [*mg.guidance[:1]]
    if mg.hypokalemia:
        actions.append(e.hypokalemia_text)
    if mg.hypocalcemia:
        actions.append(e.hypocalcemia_text)
    actions.append("Correct magnesium; consider an ECG and telemetry when symptomatic.")
    body: dict[str, Any] = {
        "resourceType": "RiskAssessment",
        "status": status_of([mg.mg, *[j.m for j in mg.judged]]),
        "code": {"text": "Arrhythmia risk with hypomagnesemia"},
        "subject": ref(ctx.patient),
        "occurrenceDateTime": mg.mg.time.text if mg.mg.time else instant(ctx.now),
        "basis": [ref(ctx.patient)] + [ref(s) for s in basis],
        "prediction": [_prediction(ctx, ctx.k.output.outcomes.arrhythmia_text, risk, None, None, mg.arrhythmia_rationale)],
        "mitigation": " ".join(actions),
    }
    body["text"] = nv.div(
        "Arrhythmia risk with hypomagnesemia", [f"Risk: {risk}."], nv.section("Rationale", mg.arrhythmia_rationale)
    )
    return ctx.new("arrhythmia-risk", body, [ctx.patient, *basis])


def exposure_table(e: ExposureRisk | None) -> list[Table]:
    """The linezolid risks as rows of a report's view (the linezolid and genotype reports)."""
    if e is None:
        return []
    rows = [
        [
            f"Linezolid {p.outcome}",
            p.risk or "not assessable",
            f"{p.probability:.3f}" if p.probability is not None else "-",
            "; ".join(lines(p.rationale)),
        ]
        for p in (e.under, e.over)
    ]
    return table(RISKS, RISK_HEADER, rows)


def arrhythmia_table(mg: MagnesiumFinding) -> list[Table]:
    """The arrhythmia risk with hypomagnesemia as a row of the magnesium report's view."""
    if not mg.hypo:
        return []
    rows = [["Cardiac arrhythmia", mg.arrhythmia_risk or "-", "-", "; ".join(lines(mg.arrhythmia_rationale))]]
    return table(RISKS, RISK_HEADER, rows)
