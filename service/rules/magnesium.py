"""Serum magnesium: grade, repletion guidance, named causes, FEMg, digoxin and arrhythmia risk (StatPearls: Hypomagnesemia; mappings/magnesium.toml).

The clinical state (stable or not, symptomatic or not) is not in laboratory data, so the guidance lists
each option with the condition it applies to; the clinician picks. Children (below the configured age)
get only the source's mg/kg dose, computed for their weight; renal function is judged by `renal_gate`
on the safe side; the bands are compared in the unit the laboratory reported, at the source's precision."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from service.extract.facts import Measurement, MedicationExposure, PatientRecord
from service.knowledge import Knowledge
from service.knowledge.model import Band
from service.knowledge.model.magnesium import ElectrolyteDefault, MagnesiumFile
from service.rules.bands import classify
from service.rules.medications import current_medications
from service.rules.renal import RenalFinding, RenalGate, nearest_weight, renal_gate

HYPO = ("severe_hypomagnesemia", "hypomagnesemia")
LOW_FLAGS = frozenset({"L", "LL", "LU", "<"})  # v3 ObservationInterpretation: low, critical low, significantly low, off scale low
HIGH_FLAGS = frozenset({"H", "HH", "HU", ">"})
NORMAL_FLAGS = frozenset({"N"})
_REPORTED = re.compile(r"^(<=|>=|<|>)?(\S+) (.+)$")


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

    @property
    def words(self) -> str:
        when = f", {self.m.time.start.date().isoformat()}" if self.m.time else ""
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

    @property
    def hypo(self) -> bool:
        return self.band is not None and self.band.name in HYPO


def named_causes(record: PatientRecord, k: Knowledge, meds: list[MedicationExposure] | None = None) -> list[str]:
    """The causative drugs among the medications (the current ones at the sample, when the caller says)."""
    found = []
    for med in record.medications if meds is None else meds:
        words = med.name.lower()
        for cause in k.mg_causes:
            by_atc = any(a.startswith(p) for a in med.atc for p in cause.atc_prefix)
            if by_atc or any(n in words for n in cause.names):
                label = f"{cause.display}: {med.name} ({med.kind} {med.source.reference}, status {med.status})"
                if label not in found:
                    found.append(label)
                break
    return found


def reported_as(m: Measurement, k: Knowledge) -> tuple[float, str] | None:
    """The value and UCUM unit as the laboratory sent them, read from Measurement.original."""
    found = _REPORTED.match(m.original)
    if not found:
        return None
    try:
        value = float(found.group(2))
    except ValueError:
        return None
    return value, k.ucum(found.group(3).strip())


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
            how = f"compared in {edges.unit} at the source's precision (normal {lower:g}-{upper:g} {edges.unit})"
            return classify(value, bands, m.comparator), how
    return classify(m.value, mgk.bands, m.comparator), ""


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
    egfr = renal.function_value if renal else None
    if egfr is None or egfr < f.normal_renal_egfr_min:
        wasting = None
        text = (
            f"FEMg {percent:.1f} %; renal function is {'unknown' if egfr is None else f'reduced (eGFR {egfr:.0f})'}, "
            "so it cannot be read as renal magnesium wasting"
        )
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


def _latest(record: PatientRecord, analyte: str) -> Measurement | None:
    found = [m for m in record.of(analyte) if m.value is not None]
    return found[-1] if found else None


def _electrolytes(record: PatientRecord, k: Knowledge, finding: MagnesiumFinding) -> None:
    e = k.magnesium.electrolytes
    d = e.defaults
    out: list[str] = []
    judged: list[Electrolyte] = []
    ionized, total = _latest(record, "calcium_ionized"), _latest(record, "calcium_total")
    ca_i = judge_electrolyte("ionized calcium", ionized, d.get("calcium_ionized")) if ionized else None
    ca_t = judge_electrolyte("total calcium", total, d.get("calcium_total")) if total else None
    judged += [j for j in (ca_i, ca_t) if j is not None]
    deciding = ca_i if ca_i is not None and ca_i.state is not None else ca_t
    if deciding is None:
        out.append(e.check_calcium_text)
    elif deciding.state == "low":
        finding.hypocalcemia = True
        out.append(f"{e.hypocalcemia_text.rstrip('.')} ({deciding.words}).")
    elif deciding.state == "high":
        out.append(f"{e.hypercalcemia_text.rstrip('.')} ({deciding.words}).")
    if ca_t is not None and ca_t.state == "low" and deciding is ca_i and ca_i is not None and ca_i.state != "low":
        out.append(f"Total calcium is low but ionized calcium is not ({ca_t.words}; {ca_i.words}): the ionized decides.")
    potassium = _latest(record, "potassium")
    if potassium is None:
        out.append(e.check_potassium_text)
    else:
        kj = judge_electrolyte("potassium", potassium, d.get("potassium"))
        judged.append(kj)
        if kj.state == "low":
            finding.hypokalemia = True
            out.append(f"{e.hypokalemia_text.rstrip('.')} ({kj.words}).")
        elif kj.state == "high":
            out.append(f"{e.hyperkalemia_text.rstrip('.')} ({kj.words}).")
    finding.electrolytes = out
    finding.judged = judged
    finding.inputs += [j.m for j in judged]


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
    text = f"{who}, weight {w:g} kg ({when}, {which}): {per_kg} = {dose}."
    if finding.renal_reduction:
        keep = 1.0 - k.magnesium.renal.dose_reduction
        text += f" With the {k.magnesium.renal.dose_reduction:.0%} reduction for renal impairment: {_g(lo * keep)}-{_g(hi * keep)} mg."
    return text


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


def _hyper_guidance(finding: MagnesiumFinding, record: PatientRecord, k: Knowledge) -> None:
    h = k.magnesium.hypermagnesemia
    gate = finding.renal_gate
    critical = sorted(finding.mg.lab_flags & set(h.critical_flags))
    first = h.not_graded + (f" {h.lab_critical} ({', '.join(critical)})." if critical else "")
    finding.guidance += [first, h.no_repletion]
    if gate is not None and gate.met:
        finding.guidance.append(f"{h.renal} (renal gate {gate.text})")
    elif gate is None or gate.met is None:
        finding.guidance.append(
            f"{h.renal_unknown} ({gate.text.removeprefix('not assessable: ') if gate else 'no renal result'})"
        )
    elif gate.stale:
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
    current, not_current = current_medications(record, at, k)
    finding.causes = named_causes(record, k, current)
    finding.not_current = [why for med, why in not_current if named_causes(record, k, [med])]
    finding.renal_gate = gate = renal_gate(renal, mgk.renal.threshold, at)
    if renal is not None and gate.measures and band is not None and band.name in (*HYPO, "hypermagnesemia"):
        # the guidance depends on renal function: its inputs are the report's inputs (a new creatinine, a new report)
        used = [renal.creatinine, renal.reported]
        if renal.crcl is not None or any(e.crcl is not None for e in renal.by_sex):
            used.append(renal.weight)
        finding.inputs += [m for m in used if m is not None and m not in finding.inputs]
    if band is not None and band.name == "hypermagnesemia":
        _hyper_guidance(finding, record, k)
        return finding
    if not finding.hypo:
        return finding
    g, p = mgk.guidance, mgk.pediatric
    assert band is not None
    finding.renal_reduction = bool(gate.met)
    finding.child = age is not None and age < p.below_age_years
    if finding.child:
        finding.guidance += [child_dose(finding, record, at, k), p.not_adult]
        if finding.weight is not None:
            finding.inputs.append(finding.weight)
    elif band.name == "severe_hypomagnesemia":
        finding.guidance += [g.unstable, g.symptomatic_severe, g.non_emergent]
    else:
        finding.guidance += [g.non_emergent, g.oral_outpatient]
    if age is None:
        finding.guidance.append(p.age_unknown)
    if gate.met:
        finding.guidance.insert(0, f"{mgk.renal.text} Renal gate {gate.text}.")
    elif gate.met is None:
        finding.guidance.insert(0, f"{mgk.renal.unknown_text} ({gate.text.removeprefix('not assessable: ')})")
    elif gate.stale:
        finding.guidance.insert(0, f"Renal gate {gate.text}.")
    finding.guidance.append(g.recheck)
    _electrolytes(record, k, finding)
    finding.femg = _femg(record, mg, renal, k)
    if finding.femg:
        finding.inputs += [finding.femg.urine_mg, finding.femg.urine_creatinine, finding.femg.plasma_creatinine]
    prefixes = mgk.digoxin.atc_prefixes
    finding.digoxin = any("digoxin" in m.drugs or any(a.startswith(p) for a in m.atc for p in prefixes) for m in current)
    _arrhythmia(finding, band, k)
    return finding


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
