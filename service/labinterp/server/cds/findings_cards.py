"""Cards of the patient's latest interpretations (the patient-view service), one per report kind: linezolid TDM,
pharmacogenetics with the linezolid exposure risk, renal function, magnesium. Each card is made from the same
`Findings` the pipeline composed its reports from, in the same call: its advice is the report's advice, word for
word (the linezolid card's advice is the TDM report's suggestion), and it links to that report on the FHIR server.
A result is shown as its report's headline shows it, with the value in the range's unit beside the reported one
("35 umol/L (11.81 mg/L)"), taken from the report's view (CardContext.as_reported), never recomputed."""

from __future__ import annotations

from labinterp.rules import Findings
from labinterp.rules.exposure import ExposureRisk, Prediction
from labinterp.rules.linezolid import LinezolidFinding
from labinterp.rules.magnesium import MagnesiumFinding
from labinterp.rules.renal import renal_gate
from labinterp.server.cds.cards import (
    INDICATORS,
    Card,
    CardContext,
    detail,
    paragraph,
    risk_indicator,
    section,
    worst,
)


def trough_kind(lz: LinezolidFinding) -> str:
    return "level (not a trough)" if lz.timing.is_trough is False else "trough"


def trough_value(ctx: CardContext, lz: LinezolidFinding) -> str:
    """The level as the TDM report shows it: "35 umol/L (11.81 mg/L)" (the report's own converted value)."""
    words = f"Linezolid {trough_kind(lz)} "
    return ctx.as_reported("linezolid", words + lz.trough.original).removeprefix(words)


def trough_words(ctx: CardContext, lz: LinezolidFinding) -> str:
    return f"Linezolid {trough_kind(lz)} {trough_value(ctx, lz)}"


def trough_category(lz: LinezolidFinding) -> str:
    return lz.band.text if lz.band else lz.why_indeterminate


def magnesium_value(ctx: CardContext, mg: MagnesiumFinding) -> str:
    """The result as the magnesium report shows it: "0.55 mmol/L (1.337 mg/dL)" (the report's own converted value)."""
    words = "Serum magnesium "
    return ctx.as_reported("magnesium", words + mg.mg.original).removeprefix(words)


def linezolid_card(ctx: CardContext, f: Findings, lz: LinezolidFinding, kind: str = "linezolid-tdm", lead: str = "") -> Card:
    band = lz.band
    category = trough_category(lz)
    indicator = INDICATORS.get(band.interpretation, "warning") if band else "info"
    when = lz.trough.time.text if lz.trough.time else "undated"
    mic = ""
    if lz.mic is not None:
        verdict = {True: "the level is below the MIC", False: "the level is not below the MIC", None: "not comparable"}
        mic = f"{lz.mic.original}: {verdict[lz.below_mic]}"
    text = detail(
        paragraph("TDM advice", lz.suggestion.text),
        paragraph("Result", f"{trough_words(ctx, lz)} ({when}): {category}."),
        paragraph("Timing", "; ".join(lz.timing.reasons) + "."),
        paragraph("Trend", lz.trend_text),
        paragraph("MIC of the isolate", mic),
        section("Notes", lz.notes),
        paragraph("Regimen", lz.regimen.label() + ("" if lz.regimen_known else " (standard regimen assumed: none recorded)")),
        paragraph("Basis of the advice", lz.suggestion.basis),
        paragraph("Source", band.source if band else ""),
    )
    return Card(
        kind,
        f"{lead}{trough_words(ctx, lz)}: {category}",
        text,
        indicator,
        "linezolid",
        ctx.report_link("linezolid"),
    )


def prediction_lines(p: Prediction) -> list[str]:
    head = f"{p.outcome}: {p.label}" + (f"; contributors: {', '.join(p.contributors)}" if p.contributors else "")
    return [head, *p.rationale, *([p.caution] if p.caution else [])]


def exposure_sections(exposure: ExposureRisk) -> list[str]:
    return [
        section("Linezolid underexposure risk", prediction_lines(exposure.under)),
        section("Linezolid overexposure risk", prediction_lines(exposure.over)),
        section("No known effect on linezolid", exposure.no_effect),
        paragraph("Mitigation", exposure.mitigation),
    ]


def risk_words(exposure: ExposureRisk) -> str:
    """ "linezolid underexposure risk high, overexposure risk moderate (CYP3A5 expresser; age 73 years)"."""
    under, over = exposure.under.risk or "not assessable", exposure.over.risk or "not assessable"
    contributors = [*exposure.under.contributors, *exposure.over.contributors]
    why = f" ({'; '.join(contributors)})" if contributors else ""
    return f"linezolid underexposure risk {under}, overexposure risk {over}{why}"


def capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def genotype_card(ctx: CardContext, f: Findings) -> Card | None:
    if f.pgx is None:
        return None
    genes = list(f.pgx.genes.values())
    labels = "; ".join(g.label() + (f" ({g.phenotype.name})" if g.phenotype else "") for g in genes)
    notes = [n for g in genes for n in g.notes]
    parts = [paragraph("Genotypes", labels + "."), section("Notes", notes)]
    indicator = "info"
    summary = labels
    if f.exposure is not None:  # the risk and its level first: a long list of genotypes must not cut them off
        parts += exposure_sections(f.exposure)
        indicator = risk_indicator(f.exposure.under.risk, f.exposure.over.risk)
        summary = f"{capital(risk_words(f.exposure))}: {labels}"
    return Card("genotype", summary, detail(*parts), indicator, "genotype", ctx.report_link("genotype"))


def exposure_card(ctx: CardContext, f: Findings) -> Card | None:
    """The linezolid exposure risk on its own: linezolid on record, with neither a level nor a genotype."""
    if f.exposure is None or f.linezolid is not None or f.pgx is not None:
        return None
    exposure = f.exposure
    return Card(
        "exposure-risk",
        capital(risk_words(exposure)),
        detail(*exposure_sections(exposure)),
        risk_indicator(exposure.under.risk, exposure.over.risk),
        None,
        ctx.report_link("exposure-risk"),
    )


def renal_card(ctx: CardContext, f: Findings) -> Card | None:
    renal = f.renal
    if renal is None:
        return None
    k = ctx.k
    threshold = min(k.linezolid.overexposure.renal_egfr_below, k.magnesium.renal.threshold)
    gate = renal_gate(renal, threshold)
    if renal.egfr is not None:
        stage = f", KDIGO {renal.stage.name} ({renal.stage.text})" if renal.stage else ""
        summary = f"eGFR {renal.egfr_words} mL/min/1.73 m2{stage}"
    elif renal.why_not:
        summary = f"No single eGFR: {renal.why_not}"
    else:
        summary = "Renal function: see the detail"
    conclusion = ctx.conclusion("renal")
    text = detail(
        paragraph("Renal function", conclusion or renal.why_not),
        paragraph(f"Below {threshold:g} (linezolid overexposure, magnesium dose reduction)", gate.text),
        paragraph("Earlier result not used", renal.superseded),
    )
    return Card("renal", summary, text, "warning" if gate.met else "info", "renal", ctx.report_link("renal"))


def magnesium_indicator(mg: MagnesiumFinding) -> str:
    base = INDICATORS.get(mg.band.interpretation, "warning") if mg.band else "info"
    return worst(base, "critical" if mg.hypo and mg.arrhythmia_risk == "high" else "info")


def magnesium_lines(mg: MagnesiumFinding) -> list[str]:
    return [
        section("Medications that can cause hypomagnesemia", mg.causes),
        section("Guidance", mg.guidance),
        section("Electrolytes", mg.electrolytes),
        paragraph("FEMg", mg.femg.text if mg.femg else ""),
        section("Arrhythmia risk" + (f": {mg.arrhythmia_risk}" if mg.arrhythmia_risk else ""), mg.arrhythmia_rationale),
        section("Laboratory", [mg.compared_in, mg.conversion_note, mg.lab_note]),
        paragraph("Source", mg.band.source if mg.band else ""),
    ]


def magnesium_card(ctx: CardContext, f: Findings) -> Card | None:
    mg = f.magnesium
    if mg is None:
        return None
    category = mg.band.text if mg.band else mg.why_indeterminate
    value = magnesium_value(ctx, mg)
    summary = f"Serum magnesium {value}: {category}"
    when = mg.mg.time.text if mg.mg.time else "undated"
    text = detail(paragraph("Result", f"{value} ({when}): {category}."), *magnesium_lines(mg))
    return Card("magnesium", summary, text, magnesium_indicator(mg), "magnesium", ctx.report_link("magnesium"))


def patient_view_cards(ctx: CardContext, f: Findings) -> list[Card]:
    """The latest interpretations: linezolid, genotype with exposure risk, magnesium, renal function."""
    cards = [linezolid_card(ctx, f, f.linezolid)] if f.linezolid is not None else []
    for make in (genotype_card, exposure_card, magnesium_card, renal_card):
        card = make(ctx, f)
        if card is not None:
            cards.append(card)
    return cards
