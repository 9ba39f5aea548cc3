"""Serum magnesium: grade, repletion guidance, named causes, FEMg, digoxin and arrhythmia risk (StatPearls: Hypomagnesemia; mappings/magnesium.toml).

The clinical state (stable or not, symptomatic or not) is not in laboratory data, so the guidance lists
each option with the condition it applies to; the clinician picks. Children (below the configured age)
get only the source's mg/kg dose, computed for their weight; renal function is judged by `renal_gate`
on the safe side, and with the gate met every dose sentence carries the reduced figures; the bands are
compared in the unit the laboratory reported, at the source's precision, and a laboratory flag or range that
disagrees with the source's category is stated beside it. Potassium and calcium are judged when taken within
a window around the magnesium sample (mappings/magnesium.toml electrolytes.max_age_hours before it,
max_after_hours after it): a low one anywhere in the window counts, else the one nearest the sample is quoted."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from labinterp.extract.facts import FhirTime, Measurement, MedicationExposure, PatientRecord
from labinterp.knowledge import Knowledge
from labinterp.knowledge.model import Band
from labinterp.knowledge.model.magnesium import ElectrolyteDefault, MagnesiumFile
from labinterp.rules.bands import classify
from labinterp.rules.medications import current_medications
from labinterp.rules.renal import RenalFinding, RenalGate, nearest_weight, renal_gate

HYPO = ("severe_hypomagnesemia", "hypomagnesemia")
LOW_FLAGS = frozenset({"L", "LL", "LU", "<"})  # v3 ObservationInterpretation: low, critical low, significantly low, off scale low
HIGH_FLAGS = frozenset({"H", "HH", "HU", ">"})
NORMAL_FLAGS = frozenset({"N"})


@dataclass
class Femg:
    percent: float
    urine_mg: Measurement
    urine_creatinine: Measurement
    plasma_creatinine: Measurement
    text: str
    renal_wasting: bool | None  # None: renal function not normal or unknown, so not interpretable


@dataclass
class Electrolyte:
    """One potassium or calcium result, judged: state "low" | "high" | "normal" | None (cannot be judged)."""

    name: str  # "potassium" | "total calcium" | "ionized calcium"
    m: Measurement
    state: str | None
    basis: str  # the laboratory's range or flag, or labinterp's default
    default_source: str = ""  # the default's source, when a default decided
    when: str = ""  # its time relative to the magnesium sample ("" when taken at it, or nothing to compare)

    @property
    def words(self) -> str:
        when = f", {self.when}" if self.when else f", {self.m.time.start.date().isoformat()}" if self.m.time else ""
        verdict = self.state or "not judged"
        return f"{self.name} {self.m.original}{when}: {verdict} ({self.basis})"


@dataclass
class MagnesiumFinding:
    mg: Measurement
    band: Band | None
    why_indeterminate: str
    guidance: list[str] = field(default_factory=list)
    renal_reduction: bool = False
    causes: list[str] = field(default_factory=list)
    not_current: list[str] = field(default_factory=list)  # causative drugs on record but not current at the sample
    digoxin: bool = False
    femg: Femg | None = None
    arrhythmia_risk: str | None = None
    arrhythmia_rationale: list[str] = field(default_factory=list)
    electrolytes: list[str] = field(default_factory=list)
    inputs: list[Measurement] = field(default_factory=list)  # every Observation the finding used
    compared_in: str = ""  # how the value was compared with the bands ("" for mg/dL)
    renal_gate: RenalGate | None = None
    age: int | None = None  # completed years at the magnesium sample
    child: bool = False
    weight: Measurement | None = None  # the weight a child's dose was computed for
    judged: list[Electrolyte] = field(default_factory=list)
    hypokalemia: bool = False
    hypocalcemia: bool = False
    conversion_note: str = ""  # why the value converted to mg/dL seems to sit in another band ("" when it does not)
    lab_note: str = ""  # the laboratory's flag or range, when it disagrees with the source's category
    child_dose_mg: tuple[float, float] | None = None  # the child's full dose range in mg, when a weight is known

    @property
    def hypo(self) -> bool:
        return self.band is not None and self.band.name in HYPO


def named_causes(record: PatientRecord, k: Knowledge, meds: list[MedicationExposure] | None = None) -> list[str]:
    """The causative drugs among the medications (the current ones at the sample, when the caller says)."""
    found = []
    for med in record.medications if meds is None else meds:
        for cause in k.mg_causes_of(med.atc, med.name)[:1]:  # the first class it matches names it
            label = f"{cause.display}: {med.name} ({med.kind} {med.source.reference}, status {med.status})"
            if label not in found:
                found.append(label)
    return found


def reported_as(m: Measurement, k: Knowledge) -> tuple[float, str] | None:
    """The value and UCUM unit as the laboratory sent them."""
    if m.reported is None:
        return None
    value, unit = m.reported
    return value, k.ucum(unit.strip())


def classify_magnesium(m: Measurement, k: Knowledge) -> tuple[Band | None, str]:
    """The band, compared in the unit the laboratory reported when the source gives edges in it (at the
    source's precision), else in mg/dL; and the words saying how it was compared ("" for mg/dL)."""
    mgk = k.magnesium
    assert m.value is not None
    sent = reported_as(m, k)
    if sent is not None:
        value, unit = sent
        edges = next((u for u in mgk.unit_edges if u.unit.lower() == unit.lower()), None)
        if edges is not None:
            bands = _bands_in(mgk, edges.edges)
            lower = next(b.lower for b in bands if b.name == "normal")
            upper = next(b.upper for b in bands if b.name == "normal")
            band = classify(value, bands, m.comparator)
            where = f": {_limits_words(band, edges.unit)}" if band is not None and band.name != "normal" else ""
            how = f"compared in {edges.unit} at the source's precision{where} (normal {lower:g}-{upper:g} {edges.unit})"
            return band, how
    return classify(m.value, mgk.bands, m.comparator), ""


def _limits_words(band: Band, unit: str) -> str:
    """Where a band lies, in words, in the given unit: "below A unit", "A to below B unit", "above C unit"."""
    if band.lower is None and band.upper is not None:
        return f"{'at or ' if band.upper_closed else ''}below {band.upper:g} {unit}"
    if band.upper is None and band.lower is not None:
        return f"{'at or ' if band.lower_closed else ''}above {band.lower:g} {unit}"
    return f"{band.lower:g} to {'' if band.upper_closed else 'below '}{band.upper:g} {unit}"


def conversion_note(m: Measurement, band: Band | None, k: Knowledge) -> str:
    """When a result compared in the reported unit would land in another band once converted to mg/dL
    (a result just below the source's mEq/L or mmol/L edge can convert to just above the mg/dL edge): say which
    edge decided and why, so the two figures never read as a contradiction. "" when they agree."""
    mgk = k.magnesium
    sent = reported_as(m, k)
    if band is None or sent is None or m.value is None:
        return ""
    unit = sent[1]
    edges = next((u for u in mgk.unit_edges if u.unit.lower() == unit.lower()), None)
    converted = classify(m.value, mgk.bands, m.comparator)
    if edges is None or converted is None or converted.name == band.name:
        return ""
    names = [b.name for b in mgk.bands]
    i = min(names.index(band.name), names.index(converted.name))
    edge_mg, edge_unit = mgk.bands[i].upper, edges.edges[i]
    assert edge_mg is not None
    side = "above" if m.value > edge_mg else "below" if m.value < edge_mg else "at"
    return (
        f"converted ({m.value:.3f} mg/dL) it lies {side} the {edge_mg:g} mg/dL edge, which at the source's precision "
        f"is {edge_unit:g} {edges.unit}: the result is judged in the unit the laboratory reported"
    )


SOURCE_SIDE = {"severe_hypomagnesemia": "low", "hypomagnesemia": "low", "normal": "normal", "hypermagnesemia": "high"}


def laboratory_note(m: Measurement, band: Band | None, k: Knowledge) -> str:
    """The laboratory's own verdict (its flag, else its reference range) when it disagrees with the source's
    category, with both sets of limits; the source's category is kept. "" when they agree or the laboratory
    says nothing."""
    if band is None or m.value is None:
        return ""
    sent = reported_as(m, k)
    unit = sent[1] if sent is not None else m.unit
    factor = k.unit_factor("magnesium", unit) if sent is not None else None
    if not factor:
        unit, factor = m.unit, 1.0

    def shown(x: float) -> str:
        return f"{x / factor:.4g} {unit}"

    if m.ref_low is not None and m.ref_high is not None:
        range_words = f"its reference range {m.ref_low / factor:.4g}-{shown(m.ref_high)}"
    elif m.ref_low is not None:
        range_words = f"its reference range from {shown(m.ref_low)}"
    elif m.ref_high is not None:
        range_words = f"its reference range up to {shown(m.ref_high)}"
    else:
        range_words = "no reference range given"
    flags = sorted(m.lab_flags & (LOW_FLAGS | HIGH_FLAGS | NORMAL_FLAGS))
    if m.lab_flags & LOW_FLAGS:
        lab, how = "low", f"flags this result low ({', '.join(flags)}; {range_words})"
    elif m.lab_flags & HIGH_FLAGS:
        lab, how = "high", f"flags this result high ({', '.join(flags)}; {range_words})"
    elif m.lab_flags & NORMAL_FLAGS:
        lab, how = "normal", f"flags this result normal ({', '.join(flags)}; {range_words})"
    elif m.ref_low is not None and _surely_below(m.value, m.comparator, m.ref_low):
        lab, how = "low", f"puts this result below {range_words}"
    elif m.ref_high is not None and _surely_above(m.value, m.comparator, m.ref_high):
        lab, how = "high", f"puts this result above {range_words}"
    elif m.ref_low is not None and m.ref_high is not None and not m.comparator:
        lab, how = "normal", f"puts this result within {range_words}"
    else:
        return ""
    if lab == SOURCE_SIDE[band.name]:
        return ""
    mgk = k.magnesium
    normal = next(b for b in mgk.bands if b.name == "normal")
    limits = f"{normal.lower:g}-{normal.upper:g} mg/dL"
    edges = next((u for u in mgk.unit_edges if u.unit.lower() == unit.lower()), None)
    if edges is not None:
        own = _bands_in(mgk, edges.edges)
        lo, hi = (next(getattr(b, side) for b in own if b.name == "normal") for side in ("lower", "upper"))
        limits = f"{lo:g}-{hi:g} {edges.unit}, {limits}"
    category = "normal" if band.name == "normal" else band.text.split(":")[0].split(" (")[0]
    return f"The laboratory {how}; by the source's limits (normal {limits}) it is {category}. {mgk.laboratory.disagrees_text}"


def _bands_in(mgk: MagnesiumFile, edges: tuple[float, ...]) -> list[Band]:
    bands = list(mgk.bands)
    out = []
    for i, b in enumerate(bands):
        update: dict[str, float | None] = {}
        if b.lower is not None:
            update["lower"] = edges[i - 1]
        if b.upper is not None:
            update["upper"] = edges[i]
        out.append(b.model_copy(update=update))
    return out


def _femg(record: PatientRecord, mg: Measurement, renal: RenalFinding | None, k: Knowledge) -> Femg | None:
    f = k.magnesium.femg
    umg = [m for m in record.of("urine_magnesium") if m.value is not None and not m.comparator]
    ucr = [m for m in record.of("urine_creatinine") if m.value is not None and not m.comparator]
    pcr = [m for m in record.of("creatinine") if m.value is not None and not m.comparator]
    if not (umg and ucr and pcr) or mg.value is None or mg.comparator:
        return None
    u_mg, u_cr, p_cr = umg[-1], ucr[-1], pcr[-1]
    assert u_mg.value is not None and u_cr.value is not None and p_cr.value is not None
    percent = (u_mg.value * p_cr.value) / (mg.value * u_cr.value * f.factor) * 100.0
    normal = renal_gate(renal, f.normal_renal_egfr_min)  # met: some measure below the normal-function limit
    if normal.met is not False:
        wasting = None
        state = "unknown" if normal.met is None else f"reduced ({normal.text.removeprefix('met, ')})"
        text = f"FEMg {percent:.1f} %; renal function is {state}, so it cannot be read as renal magnesium wasting"
    elif percent > f.renal_wasting_above_percent:
        wasting, text = True, f"FEMg {percent:.1f} %: {f.text}"
    else:
        wasting = False
        text = f"FEMg {percent:.1f} % (not above {f.renal_wasting_above_percent:g} %): renal magnesium wasting not suggested"
    return Femg(percent, u_mg, u_cr, p_cr, text, wasting)


def judge_electrolyte(name: str, m: Measurement, default: ElectrolyteDefault | None) -> Electrolyte:
    """Low, high or normal by the laboratory's flag, else its reference range, else labinterp's sourced
    default (each side separately: a range with one bound takes the default for the other)."""
    if m.lab_flags & LOW_FLAGS:
        return Electrolyte(name, m, "low", "flagged low by the laboratory")
    if m.lab_flags & HIGH_FLAGS:
        return Electrolyte(name, m, "high", "flagged high by the laboratory")
    if m.value is None:
        return Electrolyte(name, m, None, "no value")
    low, high = m.ref_low, m.ref_high
    lab = low is not None or high is not None
    lab_words, default_words = "the laboratory's reference range", "labinterp's default (no laboratory range or flag)"
    low_basis = high_basis = lab_words
    src = default.source if default is not None else ""
    if low is None and default is not None and default.low is not None:
        low, low_basis = default.low, default_words
    if high is None and default is not None and default.high is not None:
        high, high_basis = default.high, default_words
    v, c = m.value, m.comparator
    if low is not None and _surely_below(v, c, low):
        return Electrolyte(name, m, "low", f"below {low:g} {m.unit}, {low_basis}", src if low_basis != lab_words else "")
    if high is not None and _surely_above(v, c, high):
        return Electrolyte(name, m, "high", f"above {high:g} {m.unit}, {high_basis}", src if high_basis != lab_words else "")
    if c:
        return Electrolyte(name, m, None, "a bound, not a value: cannot be judged")
    if lab or low is not None or high is not None:
        limits = f"{'-' if low is None else f'{low:g}'} to {'-' if high is None else f'{high:g}'} {m.unit}"
        basis = lab_words if lab else default_words
        return Electrolyte(name, m, "normal", f"within {limits}, {basis}", "" if lab else src)
    if m.lab_flags & NORMAL_FLAGS:
        return Electrolyte(name, m, "normal", "flagged normal by the laboratory")
    return Electrolyte(name, m, None, "no reference range, flag or default")


def _surely_below(v: float, comparator: str, limit: float) -> bool:
    """Whether a value, possibly a bound ("<3.0"), lies below the limit whatever its true value."""
    return {"": v < limit, "<": v <= limit, "<=": v < limit}.get(comparator, False)


def _surely_above(v: float, comparator: str, limit: float) -> bool:
    return {"": v > limit, ">": v >= limit, ">=": v > limit}.get(comparator, False)


@dataclass
class Matched:
    """One electrolyte's results set against the magnesium sample: the ones within the window around it
    (at most the configured hours before or after it), nearest first, and the ones on record outside it."""

    within: list[Measurement]  # nearest the sample first; at equal distance, the one before it first
    older: list[Measurement]  # before the window, newest first
    later: list[Measurement]  # after the window, nearest first
    undated: list[Measurement]

    @property
    def any(self) -> bool:
        return bool(self.within or self.older or self.later or self.undated)


def _hours_before(m: FhirTime, sample: FhirTime) -> float:
    """Hours from `m` to the sample (negative: after it); a result dated by day only, or a sample dated by day
    only, on the same calendar day counts as taken at the sample."""
    if (not m.has_time or not sample.has_time) and m.start.date() == sample.start.date():
        return 0.0
    return (sample.start - m.start).total_seconds() / 3600.0


def match_to_sample(
    record: PatientRecord, analyte: str, sample: FhirTime | None, max_hours: float, after_hours: float
) -> Matched:
    """The results of `analyte` at most `max_hours` before the sample and at most `after_hours` after it (none
    when the sample has no date), nearest first, and the rest of its results on record."""
    found = [m for m in record.of(analyte) if m.value is not None]
    if sample is None:
        return Matched([], [m for m in found if m.time is not None][::-1], [], [m for m in found if m.time is None])
    within: list[tuple[float, Measurement]] = []
    older: list[Measurement] = []
    later: list[tuple[float, Measurement]] = []
    undated: list[Measurement] = []
    for m in found:
        if m.time is None:
            undated.append(m)
            continue
        hours = _hours_before(m.time, sample)
        if -after_hours <= hours <= max_hours:
            within.append((hours, m))
        elif hours < 0:
            later.append((-hours, m))
        else:
            older.append(m)
    within.sort(key=lambda hm: (abs(hm[0]), hm[0] < 0))
    later.sort(key=lambda hm: hm[0])
    return Matched([m for _, m in within], older[::-1], [m for _, m in later], undated)


def pick_electrolyte(
    name: str, matched: Matched, default: ElectrolyteDefault | None, sample: FhirTime | None
) -> tuple[Electrolyte | None, Electrolyte | None]:
    """The result judged with the sample, and the one nearest the sample when that is not it (else None): a low
    result anywhere in the window decides (the low one nearest the sample); with none low, the nearest that can
    be judged, else the nearest. Each carries its time relative to the sample."""
    judged = [judge_electrolyte(name, m, default) for m in matched.within]
    for j in judged:
        assert j.m.time is not None and sample is not None  # only dated results fall within a dated sample's window
        hours = _hours_before(j.m.time, sample)
        if hours != 0:
            j.when = _when_words(j.m, sample)
        elif len(judged) > 1:  # beside another result of the window, "at" the sample is said too
            j.when = f"{j.m.time.start.date().isoformat()}, at this sample"
    if not judged:
        return None, None
    chosen = next((j for j in judged if j.state == "low"), None) or next((j for j in judged if j.state), judged[0])
    return chosen, (judged[0] if chosen is not judged[0] else None)


def _when_words(m: Measurement, sample: FhirTime | None) -> str:
    if m.time is None:
        return "undated"
    day = m.time.start.date().isoformat()
    if sample is None:
        return day
    hours = _hours_before(m.time, sample)
    span = abs(hours)
    amount = f"{span:.0f} h" if span < 3 * 24 else f"{span / 24:.0f} days"  # hours while they tell against the window
    return f"{day}, {amount} {'before' if hours >= 0 else 'after'} this sample"


def _not_this_samples(name: str, matched: Matched, sample: FhirTime | None, older: bool) -> str:
    """Words naming the results on record that were not judged with this sample ("" when none): the nearest
    later one, the newest older one (when `older`: nothing was judged instead) and the latest undated one."""
    shown = [*matched.later[:1], *(matched.older[:1] if older else []), *matched.undated[-1:]]
    if not shown:
        return ""
    items = "; ".join(f"{name} {m.original} ({_when_words(m, sample)})" for m in shown)
    return f"On record but not judged with this magnesium sample: {items}."


def _electrolytes(record: PatientRecord, k: Knowledge, finding: MagnesiumFinding) -> None:
    e = k.magnesium.electrolytes
    d = e.defaults
    out: list[str] = []
    judged: list[Electrolyte] = []
    sample = finding.mg.time
    ionized, total, kalium = (
        match_to_sample(record, analyte, sample, e.max_age_hours, e.max_after_hours)
        for analyte in ("calcium_ionized", "calcium_total", "potassium")
    )

    def check(matched: Matched, none_text: str, window_text: str) -> str:
        if not matched.any:
            return none_text
        text = window_text.format(before=e.max_age_hours, after=e.max_after_hours)
        return text + (" The magnesium sample has no date, so no result can be placed against it." if sample is None else "")

    def nearest_too(chosen: Electrolyte, nearest: Electrolyte | None) -> None:
        """With a low result that is not the nearest, the nearest is quoted beside it: both are in view."""
        if nearest is not None and chosen.state == "low":
            out.append(f"Nearest this sample: {nearest.words}; the low result in the window counts.")

    ca_i, ca_i_nearest = pick_electrolyte("ionized calcium", ionized, d.get("calcium_ionized"), sample)
    ca_t, ca_t_nearest = pick_electrolyte("total calcium", total, d.get("calcium_total"), sample)
    judged += [j for j in (ca_i, ca_t) if j is not None]
    deciding = ca_i if ca_i is not None and ca_i.state is not None else ca_t
    if deciding is None:
        both = Matched([], total.older + ionized.older, total.later + ionized.later, total.undated + ionized.undated)
        out.append(check(both, e.check_calcium_text, e.check_calcium_window_text))
    elif deciding.state == "low":
        finding.hypocalcemia = True
        out.append(f"{e.hypocalcemia_text.rstrip('.')} ({deciding.words}).")
        nearest_too(deciding, ca_i_nearest if deciding is ca_i else ca_t_nearest)
    elif deciding.state == "high":
        out.append(f"{e.hypercalcemia_text.rstrip('.')} ({deciding.words}).")
    if ca_t is not None and ca_t.state == "low" and deciding is ca_i and ca_i is not None and ca_i.state != "low":
        out.append(f"Total calcium is low but ionized calcium is not ({ca_t.words}; {ca_i.words}): the ionized decides.")
    for name, matched in (("ionized calcium", ionized), ("total calcium", total)):
        if words := _not_this_samples(name, matched, sample, older=deciding is None):
            out.append(words)
    kj, kj_nearest = pick_electrolyte("potassium", kalium, d.get("potassium"), sample)
    if kj is None:
        out.append(check(kalium, e.check_potassium_text, e.check_potassium_window_text))
    else:
        judged.append(kj)
        if kj.state == "low":
            finding.hypokalemia = True
            out.append(f"{e.hypokalemia_text.rstrip('.')} ({kj.words}).")
            nearest_too(kj, kj_nearest)
        elif kj.state == "high":
            out.append(f"{e.hyperkalemia_text.rstrip('.')} ({kj.words}).")
    if words := _not_this_samples("potassium", kalium, sample, older=kj is None):
        out.append(words)
    finding.electrolytes = out
    finding.judged = judged
    # every result in the window was read to decide (a new one there, a new report); the judged ones first
    used = [j.m for j in judged] + [m for matched in (ionized, total, kalium) for m in matched.within]
    for m in used:
        if not any(m is i for i in finding.inputs):
            finding.inputs.append(m)


def _g(x: float) -> str:
    """A dose in mg without trailing zeros: 500, 1500, 637.5."""
    return f"{x:.1f}".rstrip("0").rstrip(".")


def child_dose(finding: MagnesiumFinding, record: PatientRecord, at: datetime | None, k: Knowledge) -> str:
    """The source's paediatric dose (mg/kg, at most the maximum) for the child's weight nearest at or
    before the sample; "weight needed" when there is none."""
    p = k.magnesium.pediatric
    per_kg = f"{p.mg_per_kg_low:g}-{p.mg_per_kg_high:g} mg/kg magnesium sulfate, at most {p.max_mg / 1000:g} g"
    who = f"Child ({finding.age} years)"
    weight = nearest_weight(record, at, not_after=True)
    if weight is None or not weight.value:
        return f"{who}: {per_kg}; {p.weight_needed}."
    finding.weight = weight
    w = weight.value
    when = weight.time.start.date().isoformat() if weight.time else "undated"
    lo, hi = p.mg_per_kg_low * w, p.mg_per_kg_high * w
    cap = _g(p.max_mg)
    if lo >= p.max_mg:
        dose = f"{cap} mg, the {p.max_mg / 1000:g} g maximum ({p.mg_per_kg_low:g} mg/kg would already be {_g(lo)} mg)"
        lo = hi = p.max_mg
    elif hi > p.max_mg:
        dose = (
            f"{_g(lo)}-{cap} mg: the upper end is capped at the {p.max_mg / 1000:g} g maximum "
            f"({p.mg_per_kg_high:g} mg/kg would be {_g(hi)} mg)"
        )
        hi = p.max_mg
    else:
        dose = f"{_g(lo)}-{_g(hi)} mg"
    which = "the weight nearest before this sample" if at is not None else "the latest weight; the sample is undated"
    finding.child_dose_mg = (lo, hi)
    text = f"{who}, weight {w:g} kg ({when}, {which}): {per_kg} = {dose}."
    if finding.renal_reduction:
        text += f" With renal impairment, reduced by {k.magnesium.renal.percent:g} %: {_reduced_child_dose(finding, k)}."
    return text


def _reduced_child_dose(finding: MagnesiumFinding, k: Knowledge) -> str:
    """The child's dose after the renal reduction: mg for the weight, and the mg/kg and maximum it means."""
    p, keep = k.magnesium.pediatric, 1.0 - k.magnesium.renal.dose_reduction
    per_kg = f"{p.mg_per_kg_low * keep:g}-{p.mg_per_kg_high * keep:g} mg/kg, at most {p.max_mg * keep / 1000:g} g"
    if finding.child_dose_mg is None:
        return per_kg
    lo, hi = finding.child_dose_mg
    return f"{_g(lo * keep)}-{_g(hi * keep)} mg = {per_kg}"


def dose_sentence(key: str, reduced: bool, k: Knowledge) -> str:
    """A guidance sentence with its grams from mappings; with the renal gate met (`reduced`) the reduced grams,
    then the source's full figures and the reduction, in the sentence itself."""
    g, renal = k.magnesium.guidance, k.magnesium.renal
    dose = g.doses_g.get(key)  # type: ignore[call-overload]
    if dose is None:
        text = g.text(key)
        if reduced and key == "oral_outpatient":
            text += " " + renal.oral_reduced_text.format(threshold=renal.threshold, percent=renal.percent)
        return text
    low, high = dose
    full = f"{low:g}-{high:g} g"
    if not reduced:
        return g.text(key, full)
    keep = 1.0 - renal.dose_reduction
    text = g.text(key, f"{low * keep:g}-{high * keep:g} g").rstrip(".")
    return f"{text} (reduced by {renal.percent:g} % for renal impairment from the source's {full})."


def _on_record(m: Measurement) -> str:
    return f"{m.original} of {m.time.start.date().isoformat()}" if m.time else f"{m.original} (undated)"


def _renal_unknown(finding: MagnesiumFinding, renal: RenalFinding | None, gate: RenalGate, k: Knowledge) -> str:
    """The first guidance line when the renal gate cannot be judged: check creatinine only when none is on
    record; with one on record, say which and why it gives no estimate (a child: the paediatric team)."""
    r = k.magnesium.renal
    numbers = {"threshold": r.threshold, "percent": r.percent}
    why = gate.text.removeprefix("not assessable: ")
    if gate.measures:  # a reported bound that may lie on either side of the threshold
        return r.bound_text.format(gate=why, **numbers)
    if renal is None or renal.creatinine is None:
        return r.unknown_text.format(why=why, **numbers)
    creatinine = _on_record(renal.creatinine)
    if finding.child:
        text = r.child_text.format(creatinine=creatinine, why=k.renal.settings.below_minimum_age, **numbers)
        return f"{text.rstrip('.')} (for this child: {_reduced_child_dose(finding, k)})."
    return r.no_estimate_text.format(creatinine=creatinine, why=renal.why_not, **numbers)


def _magnesium_therapy(record: PatientRecord, k: Knowledge) -> list[str]:
    h = k.magnesium.hypermagnesemia
    out = []
    at = record.of("magnesium")[-1].time if record.of("magnesium") else None
    current, _ = current_medications(record, at.start if at else None, k)
    for med in current:
        words = med.name.lower()
        if med.drugs & set(h.drug_keys) or any(n in words for n in h.names):
            label = f"{med.name} ({med.kind} {med.source.reference}, status {med.status})"
            if label not in out:
                out.append(label)
    return out


def _hyper_guidance(finding: MagnesiumFinding, record: PatientRecord, renal: RenalFinding | None, k: Knowledge) -> None:
    h = k.magnesium.hypermagnesemia
    gate = finding.renal_gate
    critical = sorted(finding.mg.lab_flags & set(h.critical_flags))
    first = h.not_graded + (f" {h.lab_critical} ({', '.join(critical)})." if critical else "")
    finding.guidance += [first, h.no_repletion]
    if gate is not None and gate.met:
        finding.guidance.append(f"{h.renal} (renal gate {gate.text})")
    elif gate is None or gate.met is None:
        on_record = renal is not None  # a creatinine or an eGFR is on record, but gives no usable figure
        why = gate.text.removeprefix("not assessable: ") if gate else "no renal result"
        finding.guidance.append((h.renal_unknown_on_record if on_record else h.renal_unknown).format(why=why))
    elif gate.stale or (renal is not None and renal.superseded):
        finding.guidance.append(f"Renal function: {gate.text}.")
    therapy = _magnesium_therapy(record, k)
    finding.guidance.append(f"{h.therapy_found}: {'; '.join(therapy)}." if therapy else h.therapy_none)


def interpret_magnesium(
    record: PatientRecord, renal: RenalFinding | None, age: int | None, k: Knowledge
) -> MagnesiumFinding | None:
    """None when the patient has no serum magnesium."""
    results = record.of("magnesium")
    if not results:
        return None
    mg = results[-1]
    mgk = k.magnesium
    assert mg.value is not None
    at = mg.time.start if mg.time else None
    if at is not None and record.patient.birth_date is not None:
        age = record.patient.age_at(at.date())  # completed years at this sample
    band, how = classify_magnesium(mg, k)
    finding = MagnesiumFinding(mg, band, "" if band else f"{mg.original} spans more than one category", inputs=[mg])
    finding.compared_in, finding.age = how, age
    finding.conversion_note = conversion_note(mg, band, k)
    finding.lab_note = laboratory_note(mg, band, k)
    current, not_current = current_medications(record, at, k)
    finding.causes = named_causes(record, k, current)
    finding.not_current = [why for med, why in not_current if named_causes(record, k, [med])]
    finding.renal_gate = gate = renal_gate(renal, mgk.renal.threshold, at)
    if renal is not None and band is not None and band.name in (*HYPO, "hypermagnesemia"):
        # the guidance depends on renal function (or names the creatinine that gives no estimate): its inputs
        # are the report's inputs (a new creatinine, a new report)
        used = [renal.creatinine, renal.reported]
        if renal.crcl is not None or any(e.crcl is not None for e in renal.by_sex):
            used.append(renal.weight)
        finding.inputs += [m for m in used if m is not None and m not in finding.inputs]
    if band is not None and band.name == "hypermagnesemia":
        _hyper_guidance(finding, record, renal, k)
        return finding
    if not finding.hypo:
        return finding
    assert band is not None
    _hypo_guidance(finding, record, renal, gate, band, at, k)
    _electrolytes(record, k, finding)
    finding.femg = _femg(record, mg, renal, k)
    if finding.femg:
        finding.inputs += [finding.femg.urine_mg, finding.femg.urine_creatinine, finding.femg.plasma_creatinine]
    prefixes = mgk.digoxin.atc_prefixes
    finding.digoxin = any("digoxin" in m.drugs or any(a.startswith(p) for a in m.atc for p in prefixes) for m in current)
    _arrhythmia(finding, band, k)
    return finding


def _hypo_guidance(
    finding: MagnesiumFinding,
    record: PatientRecord,
    renal: RenalFinding | None,
    gate: RenalGate,
    band: Band,
    at: datetime | None,
    k: Knowledge,
) -> None:
    """The replacement guidance for hypomagnesemia: a child's dose in mg/kg, an adult's by severity; the renal
    gate's reduction (or why it cannot be judged) first; the recheck last."""
    g, p, r = k.magnesium.guidance, k.magnesium.pediatric, k.magnesium.renal
    age = finding.age
    finding.renal_reduction = reduced = bool(gate.met)
    finding.child = age is not None and age < p.below_age_years
    if finding.child:
        finding.guidance += [child_dose(finding, record, at, k), p.not_adult]
        if finding.weight is not None:
            finding.inputs.append(finding.weight)
    elif band.name == "severe_hypomagnesemia":
        finding.guidance += [dose_sentence(key, reduced, k) for key in ("unstable", "symptomatic_severe", "non_emergent")]
    else:
        finding.guidance += [dose_sentence(key, reduced, k) for key in ("non_emergent", "oral_outpatient")]
    if age is None:
        finding.guidance.append(p.age_unknown)
    if gate.met:
        # its own line, so the renal line stands alone where it is quoted (the arrhythmia risk's mitigation)
        finding.guidance[0:0] = [
            f"{r.text} Renal gate {gate.text}.",
            r.applied_text.format(threshold=r.threshold, percent=r.percent),
        ]
    elif gate.met is None:
        finding.guidance.insert(0, _renal_unknown(finding, renal, gate, k))
    elif gate.stale or (renal is not None and renal.superseded):
        finding.guidance.insert(0, f"Renal gate {gate.text}.")
    finding.guidance.append(g.recheck)


def _arrhythmia(finding: MagnesiumFinding, band: Band, k: Knowledge) -> None:
    mgk = k.magnesium
    a = mgk.arrhythmia
    finding.arrhythmia_rationale.append(f"{band.text} ({band.source})")
    present = {"digoxin": finding.digoxin, "hypokalemia": finding.hypokalemia, "hypocalcemia": finding.hypocalcemia}
    aggravating = [name for name in a.aggravating if present[name]]
    if band.name == "severe_hypomagnesemia":
        finding.arrhythmia_risk = a.severe_risk
    else:
        finding.arrhythmia_risk = a.mild_with_aggravating_risk if aggravating else a.mild_risk
    if finding.digoxin:
        finding.arrhythmia_rationale.append(f"{mgk.digoxin.text} ({mgk.digoxin.source})")
    words = {j.name: j.words for j in finding.judged}
    if finding.hypokalemia:
        finding.arrhythmia_rationale.append(f"hypokalemia: {words.get('potassium', 'potassium low')}")
    if finding.hypocalcemia:
        ca = words.get("ionized calcium") if "ionized calcium" in words else words.get("total calcium")
        finding.arrhythmia_rationale.append(f"hypocalcemia: {ca}")
    if aggravating and band.name != "severe_hypomagnesemia":
        finding.arrhythmia_rationale.append(
            f"{', '.join(aggravating)} with mild hypomagnesemia: risk {a.mild_with_aggravating_risk} (labinterp's grading)"
        )
    finding.arrhythmia_rationale.append(f"{a.text} ({a.source})")
