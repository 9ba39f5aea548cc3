"""Serum magnesium: grade, repletion guidance, named causes, FEMg, digoxin and arrhythmia risk (seed 001).

The clinical state (stable or not, symptomatic or not) is not in laboratory data, so the guidance lists
each option with the condition it applies to; the clinician picks."""

from __future__ import annotations

from dataclasses import dataclass, field

from service.extract.facts import Measurement, PatientRecord
from service.knowledge import Knowledge
from service.knowledge.model import Band
from service.rules.bands import classify
from service.rules.renal import RenalFinding

HYPO = ("severe_hypomagnesemia", "hypomagnesemia")


@dataclass
class Femg:
    percent: float
    urine_mg: Measurement
    urine_creatinine: Measurement
    plasma_creatinine: Measurement
    text: str
    renal_wasting: bool | None  # None: renal function not normal or unknown, so not interpretable


@dataclass
class MagnesiumFinding:
    mg: Measurement
    band: Band | None
    why_indeterminate: str
    guidance: list[str] = field(default_factory=list)
    renal_reduction: bool = False
    causes: list[str] = field(default_factory=list)
    digoxin: bool = False
    femg: Femg | None = None
    arrhythmia_risk: str | None = None
    arrhythmia_rationale: list[str] = field(default_factory=list)
    electrolytes: list[str] = field(default_factory=list)
    inputs: list[Measurement] = field(default_factory=list)  # every Observation the finding used

    @property
    def hypo(self) -> bool:
        return self.band is not None and self.band.name in HYPO


def named_causes(record: PatientRecord, k: Knowledge) -> list[str]:
    found = []
    for med in record.medications:
        words = med.name.lower()
        for cause in k.mg_causes:
            by_atc = any(a.startswith(p) for a in med.atc for p in cause.atc_prefix)
            if by_atc or any(n in words for n in cause.names):
                label = f"{cause.display}: {med.name} ({med.kind} {med.source.reference}, status {med.status})"
                if label not in found:
                    found.append(label)
                break
    return found


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


def _electrolytes(record: PatientRecord, k: Knowledge) -> tuple[list[str], list[Measurement], bool]:
    e = k.magnesium.electrolytes
    out: list[str] = []
    used: list[Measurement] = []
    hypokalemia = False
    calcium = [*record.of("calcium_total"), *record.of("calcium_ionized")]
    calcium.sort(key=lambda m: (m.time is not None, m.time.start if m.time else None))
    if calcium:
        used.append(calcium[-1])
        if calcium[-1].lab_says_low():
            out.append(f"{e.hypocalcemia_text} (calcium {calcium[-1].original}, flagged low by the laboratory)")
    else:
        out.append(e.check_calcium_text)
    potassium = record.of("potassium")
    if potassium:
        used.append(potassium[-1])
        if potassium[-1].lab_says_low():
            hypokalemia = True
            out.append(f"{e.hypokalemia_text} (potassium {potassium[-1].original}, flagged low by the laboratory)")
    else:
        out.append(e.check_potassium_text)
    return out, used, hypokalemia


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
    band = classify(mg.value, mgk.bands, mg.comparator)
    finding = MagnesiumFinding(mg, band, "" if band else f"{mg.original} spans more than one category", inputs=[mg])
    finding.causes = named_causes(record, k)
    if not finding.hypo:
        return finding
    g = mgk.guidance
    assert band is not None
    if band.name == "severe_hypomagnesemia":
        finding.guidance += [g.unstable, g.symptomatic_severe, g.non_emergent]
    else:
        finding.guidance += [g.non_emergent, g.oral_outpatient]
    if age is not None and age < k.renal.settings.minimum_age_years:
        finding.guidance.append(g.children)
    function = renal.function_value if renal else None
    if function is not None and function < mgk.renal.threshold:
        finding.renal_reduction = True
        finding.guidance.insert(0, f"{mgk.renal.text} (eGFR / creatinine clearance {function:.0f})")
    finding.guidance.append(g.recheck)
    finding.electrolytes, used, hypokalemia = _electrolytes(record, k)
    finding.inputs += used
    finding.femg = _femg(record, mg, renal, k)
    if finding.femg:
        finding.inputs += [finding.femg.urine_mg, finding.femg.urine_creatinine, finding.femg.plasma_creatinine]
    prefixes = mgk.digoxin.atc_prefixes
    finding.digoxin = any(
        "digoxin" in m.drugs or any(a.startswith(p) for a in m.atc for p in prefixes) for m in record.medications
    )
    a = mgk.arrhythmia
    finding.arrhythmia_rationale.append(f"{band.text} ({band.source})")
    if band.name == "severe_hypomagnesemia":
        finding.arrhythmia_risk = a.severe_risk
    else:
        aggravating = finding.digoxin or hypokalemia
        finding.arrhythmia_risk = a.mild_with_aggravating_risk if aggravating else a.mild_risk
    if finding.digoxin:
        finding.arrhythmia_rationale.append(f"{mgk.digoxin.text} ({mgk.digoxin.source})")
    if hypokalemia:
        finding.arrhythmia_rationale.append("hypokalemia flagged by the laboratory")
    finding.arrhythmia_rationale.append(f"{a.text} ({a.source})")
    return finding
