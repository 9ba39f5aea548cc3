"""Renal function: CKD-EPI 2021 (default), IDMS-traceable MDRD, Cockcroft-Gault, KDIGO stage.

Inputs in canonical units (creatinine mg/dL, weight kg). Constants come from mappings/renal.toml.

With unknown sex (gender other, unknown or missing) both sexes are computed and neither is stated as the
patient's eGFR; `renal_gate` is the one place a "renal function below X" rule is judged, on the safe side:
met when any available measure (eGFR reported or computed, either sex, Cockcroft-Gault) is below X.

The newest renal measure decides: a reported eGFR newer than the latest creatinine is used (the creatinine is
stated, not used), a creatinine newer than the latest reported eGFR is used (the eGFR is stated, not used); an
eGFR reported for the creatinine's own specimen is used, not recomputed. A reported eGFR may be a bound (">90"):
it counts as below a threshold only when the whole bound lies below it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime

from labinterp.extract.facts import Measurement, PatientFacts, PatientRecord
from labinterp.knowledge import Knowledge
from labinterp.knowledge.model import Band, RenalFile
from labinterp.rules.bands import classify


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


def kdigo_stage_of(egfr: float, comparator: str, r: RenalFile) -> Band | None:
    """The stage of a value that may be a bound (">90" is G1; "<60" spans several stages: None)."""
    return classify(egfr, r.stages, comparator) if comparator else kdigo_stage(egfr, r)


def surely_below(value: float, comparator: str, limit: float) -> bool | None:
    """Whether a value, possibly a bound, lies below the limit: True surely, False surely not, None cannot tell."""
    if comparator in ("", "<", "<="):
        if value < limit or (comparator == "<" and value <= limit):
            return True
        if comparator == "":
            return False
        return None  # "<60" against 30: the true value may lie on either side
    # ">" / ">=": the true value is above (or at) the bound
    return False if value >= limit else None


EQUATION_NAMES = {
    "ckd_epi_2021": "CKD-EPI 2021, race-free",
    "mdrd_idms": "IDMS-traceable MDRD",
    "reported": "reported by the laboratory",
}
SEXES = ("female", "male")


@dataclass(frozen=True)
class SexEstimate:
    """One sex's figures, given when the patient's sex is unknown (both sexes are computed)."""

    sex: str  # "female" | "male"
    egfr: float | None  # None when a reported eGFR is used (it does not depend on the sex labinterp assumes)
    crcl: float | None
    stage: Band | None


@dataclass(frozen=True)
class RenalFinding:
    egfr: float | None  # mL/min/1.73 m2; None with unknown sex (see by_sex) or when none can be given
    equation: str  # "ckd_epi_2021" | "mdrd_idms" | "reported"
    creatinine: Measurement | None
    reported: Measurement | None  # an eGFR Observation already on the server for the same specimen
    age: int | None
    crcl: float | None  # Cockcroft-Gault mL/min, when a weight is known (None with unknown sex: see by_sex)
    weight: Measurement | None
    stage: Band | None
    why_not: str  # why no single eGFR could be given ("" when one was)
    computed: bool  # True when labinterp computed an eGFR (a derived Observation is written)
    by_sex: tuple[SexEstimate, ...] = ()  # unknown sex: the female and the male figures
    max_age_days: float | None = None  # older than this before the interpreted sample: stale (mappings/renal.toml)
    egfr_comparator: str = ""  # a reported eGFR given as a bound: ">90" is value 90 with ">"
    superseded: str = ""  # the older renal result on record that was not used, and why ("" when none)

    @property
    def function_value(self) -> float | None:
        """The figure used for "renal function below X" rules: the lowest available measure (eGFR, either
        sex's eGFR, Cockcroft-Gault), so a rule is met when any of them is below X (the safe side)."""
        values = [m[1] for m in self.measures()]
        return min(values) if values else None

    @property
    def basis(self) -> Measurement | None:
        """The measurement the figures come from: the reported eGFR when it is used, else the creatinine."""
        if self.equation == "reported" and self.reported is not None:
            return self.reported
        return self.creatinine or self.reported

    @property
    def time(self) -> datetime | None:
        """When the renal result used was sampled (the reported eGFR when it is used, else the creatinine)."""
        m = self.basis
        return m.time.start if m is not None and m.time is not None else None

    @property
    def egfr_words(self) -> str:
        """The eGFR as a reader sees it: a reported value as the laboratory gave it (">90"), a computed one to 0.1."""
        if self.egfr is None:
            return ""
        if self.equation == "reported":
            return f"{self.egfr_comparator}{self.egfr:g}"
        return f"{self.egfr:.1f}"

    def measures(self) -> list[tuple[str, float]]:
        """Every figure a renal gate judges, each with the words that name it."""
        return [(words, value) for words, value, _ in self.bounded_measures()]

    def bounded_measures(self) -> list[tuple[str, float, str]]:
        """As measures(), with each figure's comparator ("" for a value; a reported eGFR may be a bound)."""
        out: list[tuple[str, float, str]] = []
        unit_gfr, unit_cl = "mL/min/1.73 m2", "mL/min"
        if self.egfr is not None:
            when = _date_words(self.reported) if self.equation == "reported" else ""
            out.append(
                (f"eGFR {self.egfr_words} {unit_gfr} ({EQUATION_NAMES[self.equation]}{when})", self.egfr, self.egfr_comparator)
            )
        weight = _weight_words(self.weight)
        if self.crcl is not None:
            out.append((f"Cockcroft-Gault creatinine clearance {self.crcl:.1f} {unit_cl} ({weight})", self.crcl, ""))
        for e in self.by_sex:
            if e.egfr is not None:
                out.append((f"eGFR {e.egfr:.1f} {unit_gfr} if {e.sex} ({EQUATION_NAMES[self.equation]})", e.egfr, ""))
        for e in self.by_sex:
            if e.crcl is not None:
                out.append((f"Cockcroft-Gault creatinine clearance {e.crcl:.1f} {unit_cl} if {e.sex} ({weight})", e.crcl, ""))
        return out


def _weight_words(weight: Measurement | None) -> str:
    if weight is None or weight.value is None:
        return "no weight"
    when = f", {weight.time.start.date().isoformat()}" if weight.time else ", undated"
    return f"actual body weight {weight.value:g} kg{when}"


def _date_words(m: Measurement | None) -> str:
    if m is None:
        return ""
    return f", {m.time.start.date().isoformat()}" if m.time else ", undated"


def _egfr_value(m: Measurement) -> str:
    """A reported eGFR as a reader reads it (the UCUM code's braces left out): ">90 mL/min/1.73 m2"."""
    return f"{m.comparator}{m.value:g} mL/min/1.73 m2" if m.value is not None else m.original


def _newer(a: Measurement, b: Measurement) -> bool:
    """Whether `a` was sampled after `b` (a dated result is newer than an undated one)."""
    if a.time is None:
        return False
    return b.time is None or a.time.start > b.time.start


def _same_specimen(a: Measurement, b: Measurement) -> bool:
    if a.specimen and b.specimen:
        return a.specimen == b.specimen
    return a.time is not None and b.time is not None and a.time.start == b.time.start


def nearest_weight(record: PatientRecord, at: datetime | None, *, not_after: bool) -> Measurement | None:
    """The body weight nearest in time to `at`; with not_after only those measured at or before it.
    Undated weights are used only when nothing dated qualifies and `at` is unknown."""
    weights = [m for m in record.of("weight") if m.value is not None and not m.comparator]
    dated = [w for w in weights if w.time is not None]
    if at is None:
        found = dated or weights
        return found[-1] if found else None
    if not_after:
        before = [w for w in dated if w.time is not None and w.time.start <= at]
        return before[-1] if before else None
    if not dated:
        return None
    return min(dated, key=lambda w: (abs((w.time.start - at).total_seconds()), w.time.start > at))  # type: ignore[union-attr]


def assess_renal(record: PatientRecord, k: Knowledge, equation: str | None = None) -> RenalFinding | None:
    """Renal function from the newest renal result: the latest serum creatinine (with the eGFR reported for
    that specimen, when there is one), or a reported eGFR newer than it. None when there is no creatinine and
    no eGFR. The older result of the two is named in `superseded`, never dropped silently."""
    r = k.renal
    creats = [m for m in record.of("creatinine") if m.value is not None and not m.comparator]
    egfrs = [m for m in record.of("egfr") if m.value is not None]
    if not creats and not egfrs:
        return None
    newest_egfr = egfrs[-1] if egfrs else None
    scr = creats[-1] if creats else None
    if scr is None or (newest_egfr is not None and _newer(newest_egfr, scr) and not _same_specimen(newest_egfr, scr)):
        assert newest_egfr is not None
        older = ""
        if scr is not None:
            older = (
                f"an older creatinine {scr.original} ({_date_words(scr).removeprefix(', ')}) is not used: "
                f"the eGFR reported on {_date_words(newest_egfr).removeprefix(', ')} is newer"
            )
        return _reported(record, newest_egfr, scr, older, k)
    reported = next((e for e in reversed(egfrs) if _same_specimen(e, scr)), None)
    superseded = _superseded_egfr(scr, newest_egfr) if newest_egfr is not None and reported is None else ""
    finding = _from_creatinine(record, scr, reported, equation or r.settings.default_equation, r)
    return replace(
        finding,
        max_age_days=r.settings.creatinine_max_age_days,
        superseded=superseded,
        egfr_comparator=reported.comparator if reported is not None else "",
    )


def _superseded_egfr(scr: Measurement, egfr: Measurement) -> str:
    """Why a reported eGFR of another specimen than the creatinine used is not used."""
    egfr_when, scr_when = _date_words(egfr).removeprefix(", "), _date_words(scr).removeprefix(", ")
    if _newer(scr, egfr):
        return f"an older reported eGFR {_egfr_value(egfr)} ({egfr_when}) is not used: the creatinine of {scr_when} is newer"
    # same time, another specimen (or both undated): the creatinine is computed from, the eGFR stated
    return (
        f"a reported eGFR {_egfr_value(egfr)} ({egfr_when}) from another specimen is not used: "
        f"the eGFR is computed from the creatinine ({scr_when})"
    )


def _blocked(when: date | None, p: PatientFacts, age: int | None, r: RenalFile) -> str:
    """Why no equation applies at all; empty when one does."""
    if when is None:
        return "the creatinine sample has no date"
    if p.birth_date is None:
        return "the patient has no birth date"
    if age is not None and age < r.settings.minimum_age_years:
        return (
            f"the patient is {age} years old; the equations are validated from {r.settings.minimum_age_years} years "
            f"({r.settings.below_minimum_age})"
        )
    return ""


def _from_creatinine(
    record: PatientRecord, scr: Measurement, reported: Measurement | None, equation: str, r: RenalFile
) -> RenalFinding:
    """The eGFR computed from the creatinine by `equation` (both sexes when the sex is neither female nor
    male), or the eGFR the laboratory reported for the same specimen, with the Cockcroft-Gault clearance."""
    assert scr.value is not None
    when = scr.time.start.date() if scr.time else None
    weight = nearest_weight(record, scr.time.start if scr.time else None, not_after=False)
    p = record.patient
    age = p.age_at(when) if when else None
    blocked = _blocked(when, p, age, r)
    rep_value = reported.value if reported is not None else None
    rep_stage = kdigo_stage_of(rep_value, reported.comparator, r) if reported is not None and rep_value is not None else None
    if blocked or age is None:
        if rep_value is not None:
            return RenalFinding(rep_value, "reported", scr, reported, age, None, weight, rep_stage, "", False)
        return RenalFinding(None, equation, scr, None, age, None, weight, None, blocked, False)

    def crcl_for(sex: str) -> float | None:
        if weight is None or not weight.value or scr.value is None:
            return None
        return cockcroft_gault(scr.value, age, weight.value, sex, r)

    fn = ckd_epi_2021 if equation == "ckd_epi_2021" else mdrd_idms
    if p.sex not in SEXES:
        both = tuple(
            SexEstimate(sex, None, crcl_for(sex), None)
            if rep_value is not None
            else SexEstimate(sex, (e := fn(scr.value, age, sex, r)), crcl_for(sex), kdigo_stage(e, r))
            for sex in SEXES
        )
        if rep_value is not None:
            return RenalFinding(rep_value, "reported", scr, reported, age, None, weight, rep_stage, "", False, both)
        why = f"the patient's sex is {p.sex!r}; the equations need female or male, so both sexes are computed"
        return RenalFinding(None, equation, scr, None, age, None, weight, None, why, True, both)
    crcl = crcl_for(p.sex)
    if rep_value is not None:
        return RenalFinding(rep_value, "reported", scr, reported, age, crcl, weight, rep_stage, "", False)
    egfr = fn(scr.value, age, p.sex, r)
    return RenalFinding(egfr, equation, scr, None, age, crcl, weight, kdigo_stage(egfr, r), "", True)


def _reported(record: PatientRecord, rep: Measurement, scr: Measurement | None, superseded: str, k: Knowledge) -> RenalFinding:
    """A finding from a reported eGFR alone (no creatinine, or only an older one, which is stated)."""
    r = k.renal
    assert rep.value is not None
    at = rep.time.start if rep.time else None
    weight = nearest_weight(record, at, not_after=False)
    age = record.patient.age_at(at.date()) if at is not None else None
    return RenalFinding(
        rep.value,
        "reported",
        scr,
        rep,
        age,
        None,
        weight,
        kdigo_stage_of(rep.value, rep.comparator, r),
        "",
        False,
        max_age_days=r.settings.creatinine_max_age_days,
        egfr_comparator=rep.comparator,
        superseded=superseded,
    )


@dataclass(frozen=True)
class RenalGate:
    """A "renal function below threshold" rule judged on the safe side (see renal_gate)."""

    met: bool | None  # True: some measure below the threshold; False: every measure at or above; None: none known
    text: str  # which measure(s) met or missed it, with values, and the staleness warning when stale
    stale: bool  # the creatinine (or reported eGFR) is older than the configured age before `at`
    measures: tuple[tuple[str, float], ...] = ()  # (words, value) of every figure judged


def staleness(renal: RenalFinding | None, at: datetime | None) -> tuple[bool, str]:
    """(stale, words): whether the renal result is older than the configured age before `at` (the
    interpreted sample's time); words are "" when it is current or nothing can be said."""
    if renal is None or at is None or renal.max_age_days is None:
        return False, ""
    sampled = renal.time
    what = "eGFR" if renal.basis is not None and renal.basis is renal.reported else "creatinine"
    if sampled is None:
        return False, f"the {what} has no date, so how current it is cannot be checked"
    days = (at - sampled).total_seconds() / 86400.0
    if days > renal.max_age_days:
        return True, (
            f"stale: the {what} of {sampled.date().isoformat()} was taken {days:.0f} days before this sample "
            f"(more than {renal.max_age_days:g} days); renal function may have changed: repeat creatinine"
        )
    return False, ""


def renal_gate(renal: RenalFinding | None, threshold: float, at: datetime | None = None) -> RenalGate:
    """Is renal function below `threshold` (mL/min/1.73 m2 or mL/min)? Met when any available measure is
    below it: the eGFR (reported or computed), with unknown sex either sex's eGFR, and, where a weight is
    known, the Cockcroft-Gault clearance (either sex's when the sex is unknown). A reported bound (">90",
    "<60") counts only for the side it surely lies on; one that may lie on either side leaves the gate not
    assessable unless another measure meets it. `at` is the interpreted sample's time: a renal result older
    than the configured age before it is flagged stale. An older result not used is named in the text."""
    stale, stale_words = staleness(renal, at)
    tail = f" ({stale_words})" if stale_words else ""
    if renal is None:
        return RenalGate(None, "not assessable: no creatinine or eGFR result", False)
    if renal.superseded:
        tail += f"; {renal.superseded}"
    bounded = renal.bounded_measures()
    measures = tuple((words, value) for words, value, _ in bounded)
    if not bounded:
        scr = renal.creatinine
        on_record = f"creatinine {scr.original} ({_date_words(scr).removeprefix(', ')}) on record, but " if scr else ""
        return RenalGate(None, f"not assessable: {on_record}no eGFR, because {renal.why_not}{tail}", stale)
    verdicts = [(words, surely_below(value, comparator, threshold)) for words, value, comparator in bounded]
    below = [words for words, v in verdicts if v is True]
    rest = [words for words, v in verdicts if v is False]
    unsure = [words for words, v in verdicts if v is None]
    limit = f"{threshold:g}"
    sex_note = "; the sex is unknown, so both sexes are computed and the lower decides" if renal.by_sex else ""
    unsure_words = f"may or may not be below {limit} (a bound): {'; '.join(unsure)}"
    if below:
        text = f"met, below {limit}: {'; '.join(below)}"
        if rest:
            text += f"; not below {limit}: {'; '.join(rest)}"
        if unsure:
            text += f"; {unsure_words}"
        return RenalGate(True, text + sex_note + tail, stale, measures)
    if unsure:
        text = f"not assessable: {unsure_words}"
        if rest:
            text += f"; not below {limit}: {'; '.join(rest)}"
        return RenalGate(None, text + sex_note + tail, stale, measures)
    return RenalGate(False, f"not met, none below {limit}: {'; '.join(rest)}{sex_note}{tail}", stale, measures)
