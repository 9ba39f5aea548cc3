"""Renal function: CKD-EPI 2021 (default), IDMS-traceable MDRD, Cockcroft-Gault, KDIGO stage.

Inputs in canonical units (creatinine mg/dL, weight kg). Constants come from mappings/renal.toml."""

from __future__ import annotations

from dataclasses import dataclass

from service.extract.facts import Measurement, PatientRecord
from service.knowledge import Knowledge
from service.knowledge.model import Band, RenalFile
from service.rules.bands import classify


def ckd_epi_2021(scr_mg_dl: float, age: float, sex: str, r: RenalFile) -> float:
    c = r.ckd_epi_2021
    female = sex == "female"
    kappa = c.kappa_female if female else c.kappa_male
    alpha = c.alpha_female if female else c.alpha_male
    ratio = scr_mg_dl / kappa
    egfr = c.constant * min(ratio, 1.0) ** alpha * max(ratio, 1.0) ** c.exponent_above * c.age_base**age
    return egfr * (c.female_factor if female else 1.0)


def mdrd_idms(scr_mg_dl: float, age: float, sex: str, r: RenalFile) -> float:
    c = r.mdrd_idms
    egfr = c.constant * scr_mg_dl**c.creatinine_exponent * age**c.age_exponent
    return egfr * (c.female_factor if sex == "female" else 1.0)


def cockcroft_gault(scr_mg_dl: float, age: float, weight_kg: float, sex: str, r: RenalFile) -> float:
    c = r.cockcroft_gault
    crcl = (c.age_offset - age) * weight_kg / (c.divisor * scr_mg_dl)
    return crcl * (c.female_factor if sex == "female" else 1.0)


def kdigo_stage(egfr: float, r: RenalFile) -> Band:
    band = classify(egfr, r.stages)
    assert band is not None  # stages are contiguous over the whole line (checked at load)
    return band


@dataclass(frozen=True)
class RenalFinding:
    egfr: float | None  # mL/min/1.73 m2
    equation: str  # "ckd_epi_2021" | "mdrd_idms" | "reported"
    creatinine: Measurement | None
    reported: Measurement | None  # an eGFR Observation already on the server for the same specimen
    age: int | None
    crcl: float | None  # Cockcroft-Gault mL/min, when a weight is known
    weight: Measurement | None
    stage: Band | None
    why_not: str  # why no eGFR could be given ("" when one was)
    computed: bool  # True when labinterp computed the eGFR (a derived Observation is written)

    @property
    def function_value(self) -> float | None:
        """The figure used for "renal function below X" rules: eGFR, else creatinine clearance."""
        return self.egfr if self.egfr is not None else self.crcl


def _same_specimen(a: Measurement, b: Measurement) -> bool:
    if a.specimen and b.specimen:
        return a.specimen == b.specimen
    return a.time is not None and b.time is not None and a.time.start == b.time.start


def assess_renal(record: PatientRecord, k: Knowledge, equation: str | None = None) -> RenalFinding | None:
    """eGFR from the latest serum creatinine (or the eGFR reported for that specimen). None when there is no creatinine and no eGFR."""
    r = k.renal
    equation = equation or r.settings.default_equation
    creats = [m for m in record.of("creatinine") if m.value is not None and not m.comparator]
    egfrs = [m for m in record.of("egfr") if m.value is not None]
    weights = [m for m in record.of("weight") if m.value is not None]
    weight = weights[-1] if weights else None
    if not creats:
        if not egfrs:
            return None
        rep = egfrs[-1]
        return RenalFinding(rep.value, "reported", None, rep, None, None, weight, kdigo_stage(rep.value or 0.0, r), "", False)
    scr = creats[-1]
    assert scr.value is not None
    when = scr.time.start.date() if scr.time else None
    reported = next((e for e in reversed(egfrs) if _same_specimen(e, scr)), None)
    p = record.patient
    age = p.age_at(when) if when else None
    why = ""
    if when is None:
        why = "the creatinine sample has no date"
    elif p.birth_date is None:
        why = "the patient has no birth date"
    elif p.sex not in ("female", "male"):
        why = f"the patient's sex is {p.sex!r}; the equations need female or male"
    elif age is not None and age < r.settings.minimum_age_years:
        why = f"the patient is {age} years old; the equations are validated from {r.settings.minimum_age_years} years"
    crcl = None
    if not why and weight is not None and weight.value and age is not None:
        crcl = cockcroft_gault(scr.value, age, weight.value, p.sex, r)
    if reported is not None and reported.value is not None:
        return RenalFinding(
            reported.value, "reported", scr, reported, age, crcl, weight, kdigo_stage(reported.value, r), "", False
        )
    if why:
        return RenalFinding(None, equation, scr, None, age, None, weight, None, why, False)
    assert age is not None
    fn = ckd_epi_2021 if equation == "ckd_epi_2021" else mdrd_idms
    egfr = fn(scr.value, age, p.sex, r)
    return RenalFinding(egfr, equation, scr, None, age, crcl, weight, kdigo_stage(egfr, r), "", True)
