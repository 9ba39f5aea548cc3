"""Risk of linezolid under- and overexposure: the prior from genotype, rifampicin, age and renal function
(the Milan linezolid cohort), and what a measured trough says, which outranks the prior (SPEC section 2; issue 7
points 1 and 7).

Probabilities are the cohort's frequencies, also written in words ("about 1 in 4"); relative risks come
from Table 2's counts (the share below range in the group over the share in its reference group); odds
ratios are quoted in the rationale only."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from labinterp.extract.facts import PatientRecord
from labinterp.knowledge import Knowledge
from labinterp.knowledge.model import RISK_ORDER, Factor, LinezolidFile
from labinterp.rules.bands import classify
from labinterp.rules.linezolid import LinezolidFinding
from labinterp.rules.medications import rifampicin_exposures
from labinterp.rules.pgx import PgxFinding
from labinterp.rules.renal import RenalFinding, renal_gate


@dataclass
class Prediction:
    outcome: str  # "underexposure" | "overexposure"
    risk: str | None  # risk-probability code; None: could not be assessed
    probability: float | None  # a cohort frequency (only for a prior)
    relative_risk: float | None  # from Table 2's counts (only for a prior)
    rationale: list[str] = field(default_factory=list)
    contributors: list[str] = field(default_factory=list)
    frequency: str = ""  # the probability in words, beside the label: "about 1 in 4 (25.9 %)"
    measured: bool = False  # the risk is what a measured trough shows, not the prior
    prior_risk: str | None = None
    prior_probability: float | None = None
    caution: str = ""  # what a reader must not conclude from the prior (a genotype alone is no reason to raise the dose)

    @property
    def label(self) -> str:
        """The risk level with its basis in words, as a reader sees it beside the code."""
        if self.risk is None:
            return "not assessable"
        return f"{self.risk} ({self.frequency})" if self.frequency else self.risk


@dataclass
class ExposureRisk:
    under: Prediction
    over: Prediction
    no_effect: list[str]  # genotype findings with no known effect on linezolid
    observed: str  # what a measured trough showed, "" without one
    mitigation: str


def in_words(p: float) -> str:
    """A frequency as people say it: "about 1 in 15" for rare ones, else the simplest of k in 2, 3, 4, 5 or 10
    within a tenth of it ("about 1 in 4" for 0.259, "about 2 in 3" for 0.65, "about 3 in 10" for 0.30)."""
    if p <= 0:
        return "none"
    if p < 0.15:
        return f"about 1 in {int(1 / p + 0.5)}"
    for n in (2, 3, 4, 5, 10):
        k = int(p * n + 0.5)
        if 0 < k < n and abs(k / n - p) <= 0.1 * p:
            return f"about {k} in {n}"
    return f"about {int(p * 100 + 0.5)} in 100"


def frequency(p: float, of_whom: str) -> str:
    return f"{in_words(p)}, {p:.1%} {of_whom}"


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


def relative_risk(f: Factor, lz: LinezolidFile) -> float | None:
    """Share below range in the factor's group over the share in its reference group, from Table 2's counts."""
    group, ref = lz.cohort.row(f.factor, f.group), lz.cohort.row(f.factor, f.reference)
    if group is None or ref is None or ref.counts.below == 0:
        return None
    return (group.counts.below / group.counts.n) / (ref.counts.below / ref.counts.n)


def _factor_rationale(f: Factor, lz: LinezolidFile) -> str:
    group, ref = lz.cohort.row(f.factor, f.group), lz.cohort.row(f.factor, f.reference)
    if group is None or ref is None or f.probability is None:
        return f"{f.factor} {f.group}: {_ci(f)} ({f.source})"
    g, r = group.counts, ref.counts
    rr = relative_risk(f, lz)
    # percentages as the source's Table 2 prints them; counts (labinterp's derivation) beside them
    text = (
        f"{f.factor} {f.group} (prior): {frequency(f.probability, 'below the range')} in the cohort "
        f"({g.below} of {g.n}) vs {ref.below:.1%} ({r.below} of {r.n}) of {f.reference}"
        + (f", relative risk {rr:.2f}" if rr is not None else "")
        + f"; odds ratio {_ci(f)}"
    )
    if group.above + group.within > group.below:
        # the same group was mostly within or above the range: a genotype alone never reads as a reason to raise the dose
        text += (
            f"; most of them were not below the range: {group.above:.1%} above ({g.above} of {g.n}) and {group.within:.1%} "
            "within, so the genotype alone is no reason to raise the dose"
        )
    return f"{text} ({f.source})"


def _adult_only(p: Prediction, age: int, lz: LinezolidFile) -> Prediction:
    p.rationale.append(
        f"not assessable for a {age}-year-old: the cohort and its frequencies are adult ({lz.cohort.age_min}-{lz.cohort.age_max} "
        f"years; {lz.cohort.name}), so no adult probability or odds ratio is applied as the child's risk"
    )
    return p


def underexposure(
    record: PatientRecord, pgx: PgxFinding | None, k: Knowledge, child_age: int | None = None, at: datetime | None = None
) -> tuple[Prediction, list[str]]:
    lz = k.linezolid
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
            detail = f" ({_ci(f)}; {f.source})" if group == f.group else ""
            no_effect.append(f"{f.factor} {group}: no known effect on linezolid exposure{detail}")
            continue
        if f.factor == lz.underexposure.requires_factor:
            assessed = True
        if group == f.group and child_age is None:
            assert f.probability is not None
            p.contributors.append(f"{f.factor} {f.group}")
            p.rationale.append(_factor_rationale(f, lz))
            if (
                p.risk is None
                or RISK_ORDER.index(f.risk or "low") > RISK_ORDER.index(p.risk)
                or (f.risk == p.risk and f.probability > (p.probability or 0))
            ):
                rr = relative_risk(f, lz)
                p.risk, p.probability, p.relative_risk = f.risk, f.probability, rr
                times = f", {rr:.1f} times the share of {f.reference} patients" if rr else ""
                p.frequency = frequency(f.probability, f"of {f.factor} {f.group} patients below the range{times}")
                row = lz.cohort.row(f.factor, f.group)
                if row is not None and row.above + row.within > row.below:
                    p.caution = (
                        f"most {f.factor} {f.group} patients of the cohort were not below the range ({row.above:.1%} above, "
                        f"{row.within:.1%} within): the genotype alone is no reason to raise the dose"
                    )
        elif group == f.group:
            p.contributors.append(f"{f.factor} {f.group}")
    if child_age is not None:
        return _adult_only(p, child_age, lz), no_effect
    if p.risk is None and assessed:
        u = lz.underexposure
        p.risk, p.probability = u.baseline_risk, u.baseline_probability
        p.frequency = frequency(u.baseline_probability, "of CYP3A5 non-expresser patients below the range")
        p.rationale.append(
            f"no genotype associated with underexposure (prior): {u.baseline_basis}, {in_words(u.baseline_probability)} "
            f"({u.source})"
        )
    elif p.risk is None:
        p.rationale.append(
            f"the underexposure risk could not be assessed from genotype: no {lz.underexposure.requires_factor} genotype is available"
        )
    rif, stopped = rifampicin_exposures(record, k, at)
    p.rationale += stopped
    if rif:
        r = lz.rifampicin
        p.contributors.append("rifampicin")
        p.rationale.append(f"{r.text} ({r.source})")
        raised = _max_risk(p.risk, r.minimum_risk)
        if raised != p.risk:
            p.risk, p.probability, p.relative_risk, p.frequency = raised, None, None, "rifampicin, no cohort frequency"
    return p, no_effect


def overexposure(
    age: int | None, renal: RenalFinding | None, k: Knowledge, child: bool = False, at: datetime | None = None
) -> Prediction:
    lz = k.linezolid
    o = lz.overexposure
    p = Prediction("overexposure", None, None, None)
    if child and age is not None:
        _adult_only(p, age, lz)
    elif age is not None:
        band = classify(float(age), o.age_bands)
        assert band is not None and band.risk is not None and band.probability is not None
        p.risk, p.probability = band.risk, band.probability
        order = ("the lowest", "the middle", "the highest")
        rank = order[min(o.age_bands.index(band), len(order) - 1)] if len(o.age_bands) == len(order) else "one"
        p.frequency = frequency(
            band.probability, f"of patients of this age with a supra-therapeutic first trough, {rank} of the age bands"
        )
        p.rationale.append(
            f"age {age} years (prior): supra-therapeutic trough at the first TDM in {in_words(band.probability)} "
            f"({band.probability:.0%}) of patients of this age band ({o.age_source})"
        )
        if band.risk != "low":
            p.contributors.append(f"age {age} years")
    else:
        p.rationale.append("age unknown (no birth date): the age-related risk could not be assessed")
    gate = renal_gate(renal, o.renal_egfr_below, at)
    if gate.met:
        # on the safe side: the eGFR, either sex's eGFR when the sex is unknown, or the Cockcroft-Gault clearance
        p.contributors.append(f"renal function below {o.renal_egfr_below:g}")
        p.rationale.append(f"renal function {gate.text}: {o.renal_text} ({o.renal_source})")
        if _max_risk(p.risk, o.renal_risk) != p.risk:
            p.risk, p.probability, p.frequency = o.renal_risk, None, "renal function, no cohort frequency"
    elif gate.met is None:
        p.rationale.append(f"renal function unknown: {gate.text}")
    elif gate.stale:
        p.rationale.append(f"renal function {gate.text}")
    return p


def _measured(p: Prediction, level: str, observed: str, caveat: str) -> None:
    """The measured trough decides the risk; the prior stays in the rationale as a prior."""
    prior = p.label
    p.prior_risk, p.prior_probability = p.risk, p.probability
    p.risk, p.probability, p.relative_risk, p.measured = level, None, None, True
    on_side = level == "high"
    why = f"likely contributors found: {', '.join(p.contributors) or 'none found'}" if on_side else ""
    p.frequency = observed if on_side else "by the measured trough"
    lead = f"{observed}{caveat}: the measurement outranks the prior" + (f"; {why}" if why else "")
    p.rationale.insert(0, lead)
    p.rationale.insert(1, f"prior before the measurement: {prior}")


def _censored(under: Prediction, over: Prediction, lzf: LinezolidFinding, observed: str, lz: LinezolidFile) -> None:
    """A censored trough that spans bands ("<=2", ">=8") still says something: "<=2" cannot be above the range
    (that side low), and may be below it (that side at least the censored-value risk, never the prior's "low")."""
    c = lz.comparators
    for p, side, words in ((under, c.low_side, "below the range"), (over, c.high_side, "above the range")):
        if not lzf.possible:
            p.rationale.insert(0, f"{observed}; the prior stands")
        elif not set(lzf.possible) & set(side):
            _measured(p, "low", f"{observed}; it cannot be {words}", "")
        else:
            level = _max_risk(p.risk, c.may_be_risk) or c.may_be_risk
            _measured(p, level, f"{observed}; it may be {words}", "")


def assess_exposure(
    record: PatientRecord,
    lzf: LinezolidFinding | None,
    pgx: PgxFinding | None,
    renal: RenalFinding | None,
    age: int | None,
    k: Knowledge,
) -> ExposureRisk:
    lz = k.linezolid
    child_age = age if age is not None and age < lz.cohort.age_min else None
    at = lzf.trough.time.start if lzf is not None and lzf.trough.time else None
    under, no_effect = underexposure(record, pgx, k, child_age, at)
    over = overexposure(age, renal, k, child_age is not None, at)
    observed = ""
    mitigation = ""
    if lzf is not None:
        band = lzf.band
        if band is not None:
            observed = f"measured trough {lzf.trough.original}: {band.text}"
            caveat = ""
            if lzf.timing.is_trough is None:
                caveat = " (if the sample was a trough: the time since the last dose is not recorded)"
            elif lzf.timing.status != "valid":
                caveat = f" (steady state {lzf.timing.steady_state.replace('_', ' ')})"
            level = lz.measured_risk(band.name)
            _measured(under, level.underexposure, observed, caveat)
            _measured(over, level.overexposure, observed, caveat)
            if lzf.below_mic and lzf.mic is not None:
                # the outcome is "trough below the range"; below the isolate's MIC is said beside it, not merged into it
                under.rationale.insert(
                    1,
                    f"the trough is below the MIC of the patient's isolate ({lzf.mic.original}): exposure is likely insufficient for it",
                )
        elif lzf.last_trough is not None:  # the latest level is not a trough: the course's last trough is the measurement
            m, last = lzf.last_trough
            when = m.time.text if m.time else "undated"
            observed = f"the latest level is not a trough; the last trough of this course, {m.original} ({when}): {last.text}"
            level = lz.measured_risk(last.name)
            _measured(under, level.underexposure, observed, "")
            _measured(over, level.overexposure, observed, "")
        else:
            observed = f"latest linezolid level {lzf.trough.original}: {lzf.why_indeterminate}"
            _censored(under, over, lzf, observed, lz)
        mitigation = lzf.suggestion.text
    elif under.risk == "high":
        mitigation = (
            "Measure a steady-state linezolid trough early (one dosing interval after a dose, "
            f"after >= {lz.trough.steady_state_h:g} h of therapy)."
        )
    elif over.risk in ("moderate", "high"):
        mitigation = "Monitor the linezolid trough and platelet count; consider an early trough."
    return ExposureRisk(under, over, no_effect, observed, mitigation)
