"""Linezolid TDM: trough category, trough validity, trend, MIC and a dose suggestion (seed 000).

Pure functions over Measurement / MedicationExposure and mappings/linezolid.toml."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from service.extract.facts import Measurement, MedicationExposure, PatientRecord
from service.knowledge import Knowledge
from service.knowledge.model import Band, LinezolidFile, Regimen
from service.rules.bands import classify


@dataclass(frozen=True)
class Timing:
    status: str  # "valid" | "invalid" | "unchecked"
    reasons: tuple[str, ...]
    hours_after_dose: float | None = None
    hours_of_therapy: float | None = None


@dataclass(frozen=True)
class Suggestion:
    text: str
    regimen: Regimen | None
    basis: str


@dataclass
class LinezolidFinding:
    trough: Measurement
    band: Band | None  # None: indeterminate (e.g. "<5" straddles two bands)
    why_indeterminate: str
    timing: Timing
    previous: list[Measurement]
    trend: str  # "" with one trough, else "rising" | "falling" | "stable"
    mic: Measurement | None
    below_mic: bool | None
    regimen: Regimen
    regimen_known: bool
    suggestion: Suggestion
    notes: list[str] = field(default_factory=list)

    @property
    def category(self) -> str:
        return self.band.name if self.band else "indeterminate"


def linezolid_exposures(record: PatientRecord) -> list[MedicationExposure]:
    return [m for m in record.medications if "linezolid" in m.drugs]


def check_timing(sample: Measurement, exposures: list[MedicationExposure], lz: LinezolidFile) -> Timing:
    t = lz.trough
    if sample.time is None or not sample.time.has_time:
        return Timing("unchecked", ("the sample has no time of collection, so timing could not be checked",))
    at = sample.time.start
    # a dose recorded at the very time of sampling was given after it: a trough is drawn before the next dose
    doses = sorted(
        e.administered.start for e in exposures if e.administered and e.administered.has_time and e.administered.start < at
    )
    starts = [e.start.start for e in exposures if e.start is not None and e.start.start < at]
    first = min([*doses, *starts]) if (doses or starts) else None
    therapy_h = (at - first).total_seconds() / 3600 if first else None
    reasons = []
    if not doses:
        reasons.append("no linezolid administrations are recorded, so the time since the last dose could not be checked")
        if therapy_h is not None and therapy_h < t.steady_state_h:
            return Timing(
                "invalid",
                (
                    *reasons,
                    f"therapy began {therapy_h:.0f} h before the sample: not yet at steady state (>= {t.steady_state_h:g} h)",
                ),
                None,
                therapy_h,
            )
        return Timing("unchecked", tuple(reasons), None, therapy_h)
    elapsed = at - doses[-1]
    since = elapsed.total_seconds() / 3600
    # compared as timedeltas: 11 h 40 min must sit exactly on the edge of a 12 h +/- 20 min window
    off_by = abs(elapsed - timedelta(hours=t.hours_after_dose))
    ok = True
    if off_by > timedelta(minutes=t.tolerance_min):
        ok = False
        reasons.append(
            f"sampled {_hm(since)} after the last dose; a trough is taken {t.hours_after_dose:g} h (+/- {t.tolerance_min:g} min) after it"
        )
    else:
        reasons.append(f"sampled {_hm(since)} after the last dose (within {t.hours_after_dose:g} h +/- {t.tolerance_min:g} min)")
    assert therapy_h is not None
    if therapy_h < t.steady_state_h:
        ok = False
        reasons.append(f"therapy began {therapy_h:.0f} h before the sample: not yet at steady state (>= {t.steady_state_h:g} h)")
    else:
        reasons.append(f"at steady state ({therapy_h:.0f} h of therapy, >= {t.steady_state_h:g} h)")
    return Timing("valid" if ok else "invalid", tuple(reasons), since, therapy_h)


def _hm(hours: float) -> str:
    h, m = divmod(round(hours * 60), 60)
    return f"{h} h {m:02d} min"


def current_regimen(exposures: list[MedicationExposure], at: datetime | None, lz: LinezolidFile) -> tuple[Regimen, bool]:
    """The regimen the patient is on (from administrations, else the order or statement), or the standard one assumed."""
    admins = sorted(
        (e for e in exposures if e.administered and (at is None or e.administered.start <= at)),
        key=lambda e: e.administered.start if e.administered else datetime.min,
    )
    if len(admins) >= 2 and admins[-1].dose_mg:
        gaps = [
            (b.administered.start - a.administered.start).total_seconds() / 3600  # type: ignore[union-attr]
            for a, b in zip(admins[-4:], admins[-3:], strict=False)
        ]
        gaps.sort()
        return Regimen(dose_mg=admins[-1].dose_mg, interval_h=round(gaps[len(gaps) // 2], 1)), True
    for e in exposures:
        if e.kind != "MedicationAdministration" and e.dose_mg and e.interval_h:
            return Regimen(dose_mg=e.dose_mg, interval_h=e.interval_h), True
    return lz.standard_regimen, False


def trend(troughs: list[Measurement], lz: LinezolidFile) -> str:
    if len(troughs) < 2 or troughs[-1].value is None or troughs[-2].value is None:
        return ""
    last, prev = troughs[-1].value, troughs[-2].value
    if troughs[-1].comparator or troughs[-2].comparator or prev == 0:
        return "rising" if last > prev else "falling" if last < prev else "stable"
    change = (last - prev) / prev
    if abs(change) <= lz.assay.imprecision:
        return "stable"
    return "rising" if change > 0 else "falling"


def compare_mic(trough: Measurement, mic: Measurement) -> bool | None:
    """True when the trough is below the MIC, False when not, None when the comparators leave it open."""
    if trough.value is None or mic.value is None:
        return None
    t_hi = trough.value if trough.comparator in ("", "<", "<=") else math.inf
    t_lo = trough.value if trough.comparator in ("", ">", ">=") else 0.0
    m_lo = mic.value if mic.comparator in ("", ">", ">=") else 0.0
    m_hi = mic.value if mic.comparator in ("", "<", "<=") else math.inf
    if t_hi < m_lo or (trough.comparator == "<" and t_hi <= m_lo):
        return True
    if t_lo >= m_hi:
        return False
    return None


def suggest_dose(
    f_band: Band | None, trough: Measurement, timing: Timing, regimen: Regimen, known: bool, lz: LinezolidFile
) -> Suggestion:
    ds = lz.dose_suggestion
    basis_regimen = regimen.label() + ("" if known else " (standard regimen assumed: the current one is not recorded)")
    if f_band is None:
        return Suggestion("No dose suggestion: the result cannot be placed in one category.", None, "")
    if f_band.name == "not_quantifiable":
        return Suggestion(
            "No dose suggestion: check the sampling time, adherence to therapy and the request before acting on this result.",
            None,
            f_band.source,
        )
    if f_band.name == "above_linearity":
        return Suggestion(
            "No dose suggestion: the concentration is above the assay's linear range; repeat the measurement with dilution.",
            None,
            lz.assay.source,
        )
    if f_band.name == "within":
        return Suggestion(f"Continue {regimen.label()}; the trough is within the therapeutic range.", regimen, f_band.source)
    if timing.status == "invalid":
        return Suggestion(
            "No dose suggestion: the sample is not a valid steady-state trough; repeat the trough "
            f"{lz.trough.hours_after_dose:g} h after a dose before adjusting.",
            None,
            lz.trough.source,
        )
    if trough.comparator or trough.value is None:
        return Suggestion("No dose suggestion: the trough is not a quantified value.", None, "")
    wanted = regimen.daily_mg * ds.target_mg_per_l / trough.value
    best = min(ds.regimens, key=lambda r: (round(abs(math.log(r.daily_mg / wanted)), 9), r.interval_h != regimen.interval_h))
    capped = ""
    if wanted > max(r.daily_mg for r in ds.regimens):
        capped = " (capped at the largest listed regimen)"
    elif wanted < min(r.daily_mg for r in ds.regimens):
        capped = " (the smallest listed regimen)"
    caveat = "" if timing.status == "valid" else " Timing of the sample could not be confirmed: check it first."
    basis = (
        f"proportional adjustment: {regimen.daily_mg:g} mg/day x {ds.target_mg_per_l:g} / {trough.value:.2f} mg/L = "
        f"{wanted:.0f} mg/day, rounded to a listed regimen{capped}; current {basis_regimen}. {ds.source}"
    )
    if (best.dose_mg, best.interval_h) == (regimen.dose_mg, regimen.interval_h):
        return Suggestion(
            f"Suggestion for the clinician: no listed regimen is closer to the target than {regimen.label()}; "
            f"recheck the trough.{caveat}",
            regimen,
            basis,
        )
    return Suggestion(
        f"Suggestion for the clinician: consider {best.label()} ({best.daily_mg:g} mg/day) instead of "
        f"{regimen.label()}, then recheck the trough at steady state.{caveat}",
        best,
        basis,
    )


def interpret_linezolid(record: PatientRecord, k: Knowledge) -> LinezolidFinding | None:
    """None when the patient has no linezolid concentration."""
    lz = k.linezolid
    troughs = record.of("linezolid")
    if not troughs:
        return None
    latest = troughs[-1]
    assert latest.value is not None
    band = classify(latest.value, lz.bands, latest.comparator)
    why = "" if band else f"{latest.original} spans more than one category"
    exposures = linezolid_exposures(record)
    timing = check_timing(latest, exposures, lz)
    regimen, known = current_regimen(exposures, latest.time.start if latest.time else None, lz)
    mics = record.of("linezolid_mic")
    mic = mics[-1] if mics else None
    notes = []
    if latest.matched_by == "name":
        notes.append("the linezolid result was recognized by its name, not by a configured code")
    if latest.preliminary:
        notes.append("the result is preliminary")
    return LinezolidFinding(
        trough=latest,
        band=band,
        why_indeterminate=why,
        timing=timing,
        previous=troughs[:-1],
        trend=trend(troughs, lz),
        mic=mic,
        below_mic=compare_mic(latest, mic) if mic else None,
        regimen=regimen,
        regimen_known=known,
        suggestion=suggest_dose(band, latest, timing, regimen, known, lz),
        notes=notes,
    )
