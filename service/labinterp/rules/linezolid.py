"""Linezolid TDM: trough category, trough timing on the patient's own dosing interval, the course's trend,
MIC and a dose suggestion that carries its safety (the Milan linezolid cohort study; SPEC section 2; issue 7 points 2-4 and 11).

Pure functions over Measurement / MedicationExposure and mappings/linezolid.toml."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise

from labinterp.extract.facts import Measurement, MedicationExposure, PatientRecord
from labinterp.knowledge import Knowledge
from labinterp.knowledge.model import Band, LinezolidFile, Regimen
from labinterp.rules.bands import classify
from labinterp.rules.dose import DoseContext, Suggestion, suggest_dose
from labinterp.rules.medications import current_note, rifampicin_exposures
from labinterp.rules.trough_timing import (
    Timing,
    check_timing,
    course_doses,
    current_regimen,
    doses_before,
    level_is_trough,
    regimen_change_at,
    regimen_run,
)

__all__ = ["LinezolidFinding", "Suggestion", "Timing", "check_timing", "classify_trough", "interpret_linezolid"]

RANGE_BANDS = ("below", "within", "above")  # the bands that only a trough can be placed in


@dataclass(frozen=True)
class TrendStep:
    previous: Measurement
    current: Measurement
    change: float | None  # relative change; None when a comparator leaves it open
    significant: bool  # beyond the reference change value (or certain from the comparators)


@dataclass
class LinezolidFinding:
    trough: Measurement
    band: Band | None  # None: indeterminate ("<5" straddles bands) or not a trough
    why_indeterminate: str
    timing: Timing
    previous: list[Measurement]  # earlier troughs of the same course, oldest first
    trend: str  # "" with one trough, else "rising" | "falling" | "stable"
    mic: Measurement | None
    below_mic: bool | None
    regimen: Regimen
    regimen_known: bool
    suggestion: Suggestion
    notes: list[str] = field(default_factory=list)
    steps: list[TrendStep] = field(default_factory=list)
    trend_text: str = ""
    not_used: list[tuple[Measurement, str]] = field(default_factory=list)  # earlier levels left out of the trend
    child: bool = False
    possible: tuple[str, ...] = ()  # for a censored trough that spans bands ("<=2", ">=8"): the bands it may be in
    last_trough: tuple[Measurement, Band] | None = None  # the course's last trough, when the latest level is not one

    @property
    def category(self) -> str:
        return self.band.name if self.band else "indeterminate"


def linezolid_exposures(record: PatientRecord) -> list[MedicationExposure]:
    return [m for m in record.medications if "linezolid" in m.drugs]


def timing_exposures(record: PatientRecord, k: Knowledge) -> list[MedicationExposure]:
    """What the trough timing reads: every linezolid administration, and the orders and statements the
    medication policy (mappings/medications.toml) does not rule out: never given, or ended at a time the
    resource does not say (which can then be no course's start or regimen)."""
    statuses = k.medications.statuses
    return [
        m
        for m in linezolid_exposures(record)
        if m.kind == "MedicationAdministration"
        or not (m.status in statuses.never or (m.status in statuses.ended and m.end is None))
    ]


def classify_trough(value: float, comparator: str, lz: LinezolidFile) -> Band | None:
    """The trough's band. A censored value ("<2", ">8") takes the band its side of the range allows:
    the highest of the low side for "<", the lowest of the high side for ">" (issue 7 point 4). A result
    reported at or above the assay's linear limit (">=" that limit) reached the top of the assay: above linearity."""
    band = classify(value, lz.bands, comparator)
    if band is not None or not comparator:
        return band
    if comparator.startswith(">") and value >= lz.assay.linearity_upper_mg_per_l:
        return lz.band("above_linearity")
    order = [b.name for b in lz.bands]
    candidates = [b for b in lz.bands if classify_hit(b, value, comparator)]
    names = {b.name for b in candidates}
    if comparator.startswith("<") and names <= set(lz.comparators.low_side):
        return max(candidates, key=lambda b: order.index(b.name))
    if comparator.startswith(">") and names <= set(lz.comparators.high_side):
        return min(candidates, key=lambda b: order.index(b.name))
    return None


def possible_bands(m: Measurement, lz: LinezolidFile) -> tuple[str, ...]:
    """The bands a censored value may lie in ("<=2": not quantifiable, below or within)."""
    if not m.comparator or m.value is None:
        return ()
    return tuple(b.name for b in lz.bands if classify_hit(b, m.value, m.comparator))


def classify_hit(band: Band, value: float, comparator: str) -> bool:
    """Whether the interval a censored value stands for reaches into the band."""
    if comparator in ("<", "<="):
        return band.lower is None or band.lower < value or (comparator == "<=" and band.lower == value and band.lower_closed)
    return band.upper is None or band.upper > value or (comparator == ">=" and band.upper == value and band.upper_closed)


def _step(prev: Measurement, cur: Measurement, rcv: float) -> TrendStep:
    assert prev.value is not None and cur.value is not None
    if prev.comparator or cur.comparator or prev.value == 0:
        # below the LOQ, then a quantified result: certainly a rise; two "below" results say nothing certain
        lo_prev = 0.0 if prev.comparator.startswith("<") else prev.value
        hi_prev = math.inf if prev.comparator.startswith(">") else prev.value
        lo_cur = 0.0 if cur.comparator.startswith("<") else cur.value
        hi_cur = math.inf if cur.comparator.startswith(">") else cur.value
        certain = lo_cur > hi_prev or hi_cur < lo_prev
        return TrendStep(prev, cur, None, certain)
    change = (cur.value - prev.value) / prev.value
    return TrendStep(prev, cur, change, abs(change) > rcv)


def trend_of(troughs: list[Measurement], lz: LinezolidFile) -> tuple[str, list[TrendStep], str]:
    """The direction of the latest change (significant only beyond the reference change value), every step
    of the course, and a sentence a reader can follow."""
    if len(troughs) < 2:
        return "", [], ""
    rcv = lz.trend.rcv_factor * lz.assay.imprecision
    steps = [_step(a, b, rcv) for a, b in pairwise(troughs)]
    last = steps[-1]
    assert last.current.value is not None and last.previous.value is not None
    direction = "stable"
    if last.significant:
        direction = "rising" if last.current.value > last.previous.value else "falling"
    parts = [troughs[0].original]
    for s in steps:
        if s.change is None:
            note = "a certain change" if s.significant else "not comparable (censored values)"
        else:
            note = f"{s.change:+.0%}, " + ("beyond" if s.significant else "within")
            note += " the reference change value"
        parts.append(f"{s.current.original} ({note})")
    text = (
        f"Trend over the {len(troughs)} troughs of this course, oldest first: {' -> '.join(parts)}; latest change: {direction} "
        f"(reference change value {rcv:.0%} = {lz.trend.rcv_factor:g} x the assay's {lz.assay.imprecision:.1%} imprecision)"
    )
    return direction, steps, text


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


def _course_levels(
    levels: list[Measurement], exposures: list[MedicationExposure], regimen: Regimen, at: datetime | None, lz: LinezolidFile
) -> tuple[list[Measurement], list[tuple[Measurement, str]]]:
    """Earlier troughs of the current course and regimen (oldest first), and the other earlier levels with why
    they are left out of the trend: an earlier course, a change of dose or interval since, not a trough."""
    previous: list[Measurement] = []
    not_used: list[tuple[Measurement, str]] = []
    course = course_doses(doses_before(exposures, at), lz) if at else []
    course_from = course[0].at - timedelta(hours=lz.trough.course_gap_h) if course else None
    if course:  # regimen_change_at's answer, from the course read just above
        run = regimen_run(course, regimen.interval_h, lz)
        changed = run.start.at if run.changed else None
    else:
        changed = regimen_change_at(exposures, at, regimen, lz)
    for m in levels:
        t = m.time.start if m.time else None
        if course_from is not None and t is not None and t < course_from:
            not_used.append((m, "an earlier course of linezolid: not part of this course's trend"))
        elif changed is not None and t is not None and t < changed:
            not_used.append((m, f"before the change to {regimen.label()}: not part of the trend of the current regimen"))
        elif not level_is_trough(m, exposures, regimen, lz):
            not_used.append((m, "not a trough (timing against the recorded doses): not part of the trend"))
        else:
            previous.append(m)
    return previous, not_used


def _notes(
    latest: Measurement,
    band: Band | None,
    exposures: list[MedicationExposure],
    regimen: Regimen,
    child_age: int | None,
    lz: LinezolidFile,
) -> list[str]:
    notes = []
    if latest.matched_by == "name":
        notes.append("the linezolid result was recognized by its name, not by a configured code")
    if latest.preliminary:
        notes.append("the result is preliminary")
    if child_age is not None:
        notes.append(
            f"the patient is {child_age} years old: the range, regimens and cohort findings are from adults "
            f"({lz.cohort.age_min}-{lz.cohort.age_max} years)"
        )
    flags = sorted(latest.lab_flags & {"H", "HH", "HU", "L", "LL", "LU", "N", "A", "AA"})
    if band is not None and flags and band.interpretation not in flags:
        within = lz.band("within")
        notes.append(
            f"the laboratory flags this result {'/'.join(flags)}; by the source's range ({within.lower:g}-{within.upper:g} mg/L) "
            f"it is {band.name.replace('_', ' ')}: the source's category is kept"
        )
    for e in exposures:  # the administrations show another regimen than the order: say so, the record may be wrong
        if (
            e.kind != "MedicationAdministration"
            and e.dose_mg
            and e.interval_h
            and regimen.label() != Regimen(dose_mg=e.dose_mg, interval_h=e.interval_h).label()
        ):
            ordered = Regimen(dose_mg=e.dose_mg, interval_h=e.interval_h)
            notes.append(
                f"the recorded doses show {regimen.label()} ({regimen.daily_mg:g} mg/day) but {e.kind} {e.source.reference} "
                f"says {ordered.label()} ({ordered.daily_mg:g} mg/day): check which is given"
            )
            break
    return notes


def _inducer(record: PatientRecord, at: datetime | None, k: Knowledge) -> str:
    """The rifampicin the suggestion must name: current, or stopped within its wash-out window."""
    current, _ = rifampicin_exposures(record, k, at)
    if not current:
        return ""
    stopped = [note for m in current if (note := current_note(m, at, k))]
    if stopped and len(stopped) == len(current):
        return (
            f"rifampicin (CYP3A inducer) was stopped ({stopped[0]}): its induction wears off, so the trough may rise; recheck it"
        )
    return f"co-prescribed {k.linezolid.rifampicin.text}"


def _last_trough(
    levels: list[Measurement], exposures: list[MedicationExposure], regimen: Regimen, lz: LinezolidFile
) -> tuple[Measurement, Band] | None:
    """The most recent trough of the course before a latest level that is not one, with its band."""
    for m in reversed(levels):
        if m.value is None or check_timing(m, exposures, regimen, lz).is_trough is not True:
            continue
        band = classify_trough(m.value, m.comparator, lz)
        if band is not None:
            return m, band
    return None


def interpret_linezolid(record: PatientRecord, k: Knowledge, age: int | None = None) -> LinezolidFinding | None:
    """None when the patient has no linezolid concentration."""
    lz = k.linezolid
    levels = record.of("linezolid")
    if not levels:
        return None
    latest = levels[-1]
    assert latest.value is not None
    exposures = timing_exposures(record, k)
    at = latest.time.start if latest.time else None
    regimen, known = current_regimen(exposures, at, lz)
    timing = check_timing(latest, exposures, regimen, lz)
    band = classify_trough(latest.value, latest.comparator, lz)
    why = "" if band else f"{latest.original} spans more than one category"
    if band is not None and band.name in RANGE_BANDS and timing.is_trough is False:
        within = lz.band("within")
        why = f"not a trough, so not compared with the trough range ({within.lower:g}-{within.upper:g} mg/L)"
        band = None
    previous, not_used = _course_levels(levels[:-1], exposures, regimen, at, lz)
    last_trough = _last_trough(previous, exposures, regimen, lz) if band is None and timing.is_trough is False else None
    if band is None:
        previous = []
    direction, steps, trend_text = trend_of([*previous, latest] if band is not None else [], lz)
    mics = record.of("linezolid_mic")
    mic = mics[-1] if mics else None
    below_mic = compare_mic(latest, mic) if mic else None
    child = age is not None and age < lz.cohort.age_min
    possible = () if band is not None or timing.is_trough is False else possible_bands(latest, lz)
    inducer = _inducer(record, at, k)
    context = DoseContext(band, latest, timing, regimen, known, below_mic, mic, child, direction, inducer, possible)
    return LinezolidFinding(
        trough=latest,
        band=band,
        why_indeterminate=why,
        timing=timing,
        previous=previous,
        trend=direction,
        mic=mic,
        below_mic=below_mic,
        regimen=regimen,
        regimen_known=known,
        suggestion=suggest_dose(context, lz),
        notes=_notes(latest, band, exposures, regimen, age if child else None, lz),
        steps=steps,
        trend_text=trend_text,
        not_used=not_used,
        child=child,
        possible=possible,
        last_trough=last_trough,
    )
