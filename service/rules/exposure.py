"""Prior risk of linezolid under- and overexposure from genotype, rifampicin, age and renal function
(seed 000 cohort), and the contributors that explain a measured trough."""

from __future__ import annotations

from dataclasses import dataclass, field

from service.extract.facts import MedicationExposure, PatientRecord
from service.knowledge import Knowledge
from service.knowledge.model import RISK_ORDER, Factor
from service.rules.bands import classify
from service.rules.linezolid import LinezolidFinding
from service.rules.pgx import PgxFinding
from service.rules.renal import RenalFinding


@dataclass
class Prediction:
    outcome: str  # "underexposure" | "overexposure"
    risk: str | None  # risk-probability code; None: could not be assessed
    probability: float | None
    relative_risk: float | None  # the odds ratio of the deciding factor
    rationale: list[str] = field(default_factory=list)
    contributors: list[str] = field(default_factory=list)


@dataclass
class ExposureRisk:
    under: Prediction
    over: Prediction
    no_effect: list[str]  # genotype findings with no known effect on linezolid
    observed: str  # what a measured trough showed, "" without one
    mitigation: str


def _max_risk(a: str | None, b: str | None) -> str | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if RISK_ORDER.index(a) >= RISK_ORDER.index(b) else b


def _ci(f: Factor, both: bool = True) -> str:
    lo, hi = f.ci95
    plain = f"OR {f.odds_ratio:g} (95 % CI {lo:g}-{hi:g}, p = {f.p:g})"
    if not both or f.odds_ratio_adjusted is None or f.ci95_adjusted is None:
        return plain
    alo, ahi = f.ci95_adjusted
    adjusted = f"age-adjusted OR {f.odds_ratio_adjusted:g} (95 % CI {alo:g}-{ahi:g}, p = {f.p_adjusted:g})"
    return f"{adjusted}; unadjusted {plain}" if f.use_adjusted else f"{plain}; {adjusted}"


def rifampicin_exposures(record: PatientRecord, k: Knowledge) -> list[MedicationExposure]:
    prefixes = k.linezolid.rifampicin.atc_prefixes
    return [m for m in record.medications if "rifampicin" in m.drugs or any(a.startswith(p) for a in m.atc for p in prefixes)]


def underexposure(record: PatientRecord, pgx: PgxFinding | None, k: Knowledge) -> tuple[Prediction, list[str]]:
    lz = k.linezolid
    cohort = lz.cohort.name
    p = Prediction("underexposure", None, None, None)
    no_effect: list[str] = []
    assessed = False
    for f in lz.factors:
        group = pgx.group(f.factor) if pgx else None
        if pgx is None or not pgx.has_factor(f.factor):
            continue
        if group is None:
            p.rationale.append(f"{f.factor}: genotype reported but not classifiable, so not used")
            continue
        if f.effect == "none":
            if group == f.group:
                no_effect.append(f"{f.factor} {group}: no known effect on linezolid exposure ({_ci(f)}; {f.source})")
            else:
                no_effect.append(f"{f.factor} {group}: no known effect on linezolid exposure")
            continue
        if f.factor == lz.underexposure.requires_factor:
            assessed = True
        if group == f.group:
            p.contributors.append(f"{f.factor} {f.group}")
            p.rationale.append(
                f"{f.factor} {f.group}: {f.probability:.1%} below range in the cohort vs the reference group "
                f"{f.reference}; {_ci(f)} ({cohort}; {f.source})"
            )
            if (
                p.risk is None
                or RISK_ORDER.index(f.risk or "low") > RISK_ORDER.index(p.risk)
                or (f.risk == p.risk and (f.probability or 0) > (p.probability or 0))
            ):
                p.risk, p.probability, p.relative_risk = f.risk, f.probability, f.quoted_odds_ratio
    if p.risk is None and assessed:
        u = lz.underexposure
        p.risk, p.probability = u.baseline_risk, u.baseline_probability
        p.rationale.append(f"no genotype associated with underexposure: {u.baseline_basis} ({cohort}; {u.source})")
    elif p.risk is None:
        p.rationale.append(
            f"the underexposure risk could not be assessed from genotype: no {lz.underexposure.requires_factor} genotype is available"
        )
    rif = rifampicin_exposures(record, k)
    if rif:
        r = lz.rifampicin
        p.contributors.append("rifampicin")
        p.rationale.append(f"{r.text} ({r.source})")
        raised = _max_risk(p.risk, r.minimum_risk)
        if raised != p.risk:
            p.risk, p.probability, p.relative_risk = raised, None, None
    return p, no_effect


def overexposure(age: int | None, renal: RenalFinding | None, k: Knowledge) -> Prediction:
    o = k.linezolid.overexposure
    p = Prediction("overexposure", None, None, None)
    if age is not None:
        band = classify(float(age), o.age_bands)
        assert band is not None and band.risk is not None
        p.risk, p.probability = band.risk, band.probability
        p.rationale.append(
            f"age {age} years: supra-therapeutic trough at the first TDM in about {band.probability:.0%} of patients "
            f"of this age band ({o.age_source})"
        )
        if band.risk != "low":
            p.contributors.append(f"age {age} years")
    else:
        p.rationale.append("age unknown (no birth date): the age-related risk could not be assessed")
    function = renal.function_value if renal else None
    if function is not None and function < o.renal_egfr_below:
        p.contributors.append(f"eGFR {function:.1f} mL/min/1.73 m2")
        p.rationale.append(f"{o.renal_text} ({o.renal_source})")
        if _max_risk(p.risk, o.renal_risk) != p.risk:
            p.risk, p.probability = o.renal_risk, None
    elif renal is None or function is None:
        p.rationale.append("renal function unknown")
    return p


def assess_exposure(
    record: PatientRecord,
    lzf: LinezolidFinding | None,
    pgx: PgxFinding | None,
    renal: RenalFinding | None,
    age: int | None,
    k: Knowledge,
) -> ExposureRisk:
    under, no_effect = underexposure(record, pgx, k)
    over = overexposure(age, renal, k)
    observed = ""
    mitigation = ""
    if lzf is not None:
        band = lzf.band
        observed = f"measured trough {lzf.trough.original}: {band.text if band else lzf.why_indeterminate}"
        # a measured trough outranks the prior risk: the side it shows names the likely contributors found
        if band and band.name in ("below", "not_quantifiable"):
            under.rationale.insert(0, f"{observed}; likely contributors: {', '.join(under.contributors) or 'none found'}")
        elif band and band.name in ("above", "above_linearity"):
            over.rationale.insert(0, f"{observed}; likely contributors: {', '.join(over.contributors) or 'none found'}")
        else:
            under.rationale.insert(0, observed)
            over.rationale.insert(0, observed)
        mitigation = lzf.suggestion.text
    elif under.risk == "high":
        mitigation = "Measure a steady-state linezolid trough early (12 h after a dose, after >= 72 h of therapy)."
    elif over.risk in ("moderate", "high"):
        mitigation = "Monitor the linezolid trough and platelet count; consider an early trough."
    return ExposureRisk(under, over, no_effect, observed, mitigation)
