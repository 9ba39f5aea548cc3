"""Linezolid TDM: trough category, trough timing on the patient's own dosing interval, the course's trend,
MIC and a dose suggestion that carries its safety (the Milan linezolid cohort study; SPEC section 2; issue 7 points 2-4 and 11).

Pure functions over Measurement / MedicationExposure and mappings/linezolid.toml."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise

from service.extract.facts import Measurement, MedicationExposure, PatientRecord
from service.knowledge import Knowledge
from service.knowledge.model import Band, LinezolidFile, Regimen
from service.rules.bands import classify

RANGE_BANDS = ("below", "within", "above")  # the bands that only a trough can be placed in
ENDED = frozenset({"completed", "stopped", "cancelled", "entered-in-error", "not-taken", "ended"})


@dataclass(frozen=True)
class Timing:
    status: str  # "valid" | "invalid" | "unchecked"
    reasons: tuple[str, ...]
    hours_after_dose: float | None = None
    hours_of_therapy: float | None = None
    is_trough: bool | None = None  # None: no dose recorded, so it could not be checked
    steady_state: str = "unknown"  # "reached" | "not_reached" | "unknown"
    interval_h: float = 12.0
    next_trough: datetime | None = None  # when a trough is due: one interval after the last dose
    draw_advice: str = ""  # when to draw a trough, for a level that is not one


@dataclass(frozen=True)
class Suggestion:
    text: str
    regimen: Regimen | None
    basis: str


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

    @property
    def category(self) -> str:
        return self.band.name if self.band else "indeterminate"


def linezolid_exposures(record: PatientRecord) -> list[MedicationExposure]:
    return [m for m in record.medications if "linezolid" in m.drugs]


def classify_trough(value: float, comparator: str, lz: LinezolidFile) -> Band | None:
    """The trough's band. A censored value ("<2", ">8") takes the band its side of the range allows:
    the highest of the low side for "<", the lowest of the high side for ">" (issue 7 point 4)."""
    band = classify(value, lz.bands, comparator)
    if band is not None or not comparator:
        return band
    order = [b.name for b in lz.bands]
    candidates = [b for b in lz.bands if classify_hit(b, value, comparator)]
    names = {b.name for b in candidates}
    if comparator.startswith("<") and names <= set(lz.comparators.low_side):
        return max(candidates, key=lambda b: order.index(b.name))
    if comparator.startswith(">") and names <= set(lz.comparators.high_side):
        return min(candidates, key=lambda b: order.index(b.name))
    return None


def classify_hit(band: Band, value: float, comparator: str) -> bool:
    """Whether the interval a censored value stands for reaches into the band."""
    if comparator in ("<", "<="):
        return band.lower is None or band.lower < value or (comparator == "<=" and band.lower == value and band.lower_closed)
    return band.upper is None or band.upper > value or (comparator == ">=" and band.upper == value and band.upper_closed)


def _local(t: datetime, like: str) -> str:
    """An instant written in the time zone offset of the sample's own timestamp, so the ward reads its clock."""
    try:
        tz = datetime.fromisoformat(like.replace("Z", "+00:00")).tzinfo
    except ValueError:
        tz = None
    local = t.astimezone(tz or UTC)
    offset = local.strftime("%z")
    return local.strftime("%Y-%m-%d %H:%M") + (" UTC" if offset in ("+0000", "") else f" (UTC{offset[:3]}:{offset[3:]})")


def _hm(hours: float) -> str:
    h, m = divmod(round(hours * 60), 60)
    return f"{h} h {m:02d} min"


def _doses_before(exposures: list[MedicationExposure], at: datetime) -> list[datetime]:
    # a dose recorded at the very time of sampling was given after it: a trough is drawn before the next dose
    return sorted(
        e.administered.start for e in exposures if e.administered and e.administered.has_time and e.administered.start < at
    )


def course_doses(doses: list[datetime], lz: LinezolidFile) -> list[datetime]:
    """The recorded doses of the course the last dose belongs to: back from the last dose while the gaps
    stay within the course gap (a course stopped months ago is another course)."""
    if not doses:
        return []
    gap = timedelta(hours=lz.trough.course_gap_h)
    first = len(doses) - 1
    while first > 0 and doses[first] - doses[first - 1] <= gap:
        first -= 1
    return doses[first:]


def _course_start(
    exposures: list[MedicationExposure], doses: list[datetime], at: datetime, lz: LinezolidFile
) -> tuple[datetime | None, str]:
    """The start of the current course and how it is known; (None, "") when it is not known."""
    gap = timedelta(hours=lz.trough.course_gap_h)
    anchor = doses[0] if doses else at
    starts = []
    for e in exposures:
        if e.kind == "MedicationAdministration" or e.start is None or e.start.start > at:
            continue
        if e.status in ENDED and e.end is None:  # ended at a time the resource does not say: not this course's start
            continue
        if e.end is not None and e.end.start < anchor - gap:  # an order or statement of an earlier course
            continue
        starts.append(e.start.start)
    if starts:
        # the latest start of a current order or statement: a renewal may hide an earlier one, and an early
        # start wrongly taken would call a level "at steady state" too soon, so the later one is the safe side
        start = min([max(starts), *doses[:1]]) if doses else max(starts)
        return start, "from the order or statement"
    if len(doses) >= 2:
        return doses[0], "from the first recorded dose of this course"
    return None, ""


def check_timing(sample: Measurement, exposures: list[MedicationExposure], regimen: Regimen, lz: LinezolidFile) -> Timing:
    """Is the sample a trough (one dosing interval +/- the tolerance after the last dose) at steady state?"""
    t = lz.trough
    interval = regimen.interval_h
    if sample.time is None or not sample.time.has_time:
        return Timing("unchecked", ("the sample has no time of collection, so timing could not be checked",), interval_h=interval)
    at = sample.time.start
    doses = course_doses(_doses_before(exposures, at), lz)
    start, start_how = _course_start(exposures, doses, at, lz)
    therapy_h = (at - start).total_seconds() / 3600 if start else None
    reasons: list[str] = []
    if therapy_h is None:
        steady = "unknown"
        reasons.append("start of therapy unknown (only the last dose recorded): steady state unknown")
    elif therapy_h >= t.steady_state_h:
        steady = "reached"
        reasons.append(f"at steady state ({therapy_h:.0f} h of therapy {start_how}, >= {t.steady_state_h:g} h)")
    else:
        steady = "not_reached"
        reasons.append(
            f"therapy began {therapy_h:.0f} h before the sample ({start_how}): not yet at steady state (>= {t.steady_state_h:g} h)"
        )
    if not doses:
        reasons.insert(0, "no linezolid administrations are recorded, so the time since the last dose could not be checked")
        status = "invalid" if steady == "not_reached" else "unchecked"
        return Timing(status, tuple(reasons), None, therapy_h, None, steady, interval)
    elapsed = at - doses[-1]
    since = elapsed.total_seconds() / 3600
    next_trough = doses[-1] + timedelta(hours=interval)
    # compared as timedeltas: 11 h 40 min must sit exactly on the edge of a 12 h +/- 20 min window
    off_by = abs(elapsed - timedelta(hours=interval))
    is_trough = off_by <= timedelta(minutes=t.tolerance_min)
    advice = ""
    if is_trough:
        reasons.insert(0, f"sampled {_hm(since)} after the last dose (within {interval:g} h +/- {t.tolerance_min:g} min)")
    elif elapsed < timedelta(hours=interval):
        reasons.insert(
            0,
            f"sampled {_hm(since)} after the last dose: a post-dose level, not a trough (a trough is taken {interval:g} h "
            f"+/- {t.tolerance_min:g} min after a dose, just before the next one)",
        )
        advice = (
            f"Draw a trough {interval:g} h after a dose, just before the next one"
            f" (for the dose given at {_local(doses[-1], sample.time.text)}: at {_local(next_trough, sample.time.text)})."
        )
    else:
        reasons.insert(
            0,
            f"sampled {_hm(since)} after the last recorded dose, later than a trough ({interval:g} h +/- {t.tolerance_min:g} min): "
            "a dose may have been missed or not recorded",
        )
        advice = f"Draw a trough {interval:g} h after a dose, just before the next one, once doses are given on schedule."
    if not is_trough or steady == "not_reached":
        status = "invalid"
    elif steady == "reached":
        status = "valid"
    else:
        status = "unchecked"
    return Timing(status, tuple(reasons), since, therapy_h, is_trough, steady, interval, next_trough, advice)


def current_regimen(exposures: list[MedicationExposure], at: datetime | None, lz: LinezolidFile) -> tuple[Regimen, bool]:
    """The regimen the patient is on (from the spacing of the course's administrations, else the order or
    statement), or the standard one assumed."""
    admins = sorted(
        (e for e in exposures if e.administered and e.administered.has_time and (at is None or e.administered.start <= at)),
        key=lambda e: e.administered.start if e.administered else datetime.min.replace(tzinfo=UTC),
    )
    times = course_doses([e.administered.start for e in admins if e.administered], lz)
    gaps = sorted(g for g in ((b - a).total_seconds() / 3600 for a, b in pairwise(times[-4:])) if g > 0)
    if gaps and admins[-1].dose_mg:
        median = gaps[len(gaps) // 2]
        # doses are given at about the planned times: a median gap within an hour of a listed interval is that interval
        listed = sorted({r.interval_h for r in lz.dose_suggestion.regimens}, key=lambda h: abs(h - median))
        interval = listed[0] if abs(listed[0] - median) <= 1.0 else round(median, 1)
        return Regimen(dose_mg=admins[-1].dose_mg, interval_h=interval), True
    orders = [
        e
        for e in exposures
        if e.kind != "MedicationAdministration" and e.dose_mg and e.interval_h and not (at and e.end and e.end.start < at)
    ]
    orders.sort(key=lambda e: (e.start is not None, e.start.start if e.start else datetime.min.replace(tzinfo=UTC)))
    if orders:
        e = orders[-1]
        assert e.dose_mg is not None and e.interval_h is not None
        return Regimen(dose_mg=e.dose_mg, interval_h=e.interval_h), True
    return lz.standard_regimen, False


def _step(prev: Measurement, cur: Measurement, rcv: float) -> TrendStep:
    assert prev.value is not None and cur.value is not None
    if prev.comparator or cur.comparator or prev.value == 0:
        # "<0.4" then 3.1 is certainly a rise; "<2" then "<0.4" says nothing certain
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


@dataclass(frozen=True)
class DoseContext:
    band: Band | None
    trough: Measurement
    timing: Timing
    regimen: Regimen
    known: bool
    below_mic: bool | None
    mic: Measurement | None
    child: bool


def _sentence(parts: list[str]) -> str:
    text = "; ".join(p for p in parts if p)
    return text[:1].upper() + text[1:] + "." if text else ""


def _proportional(c: DoseContext, lz: LinezolidFile) -> tuple[str, Regimen | None, str]:
    """A same-interval regimen proportional to target / observed: (sentence, regimen, basis)."""
    ds = lz.dose_suggestion
    assert c.trough.value is not None
    current = c.regimen
    wanted = current.daily_mg * ds.target_mg_per_l / c.trough.value
    pool = [r for r in ds.regimens if r.interval_h == current.interval_h] if ds.same_interval_only else list(ds.regimens)
    basis = (
        f"proportional adjustment at the same dosing interval: {current.daily_mg:g} mg/day x {ds.target_mg_per_l:g} / "
        f"{c.trough.value:.2f} mg/L = {wanted:.0f} mg/day; current {current.label()}"
        + ("" if c.known else " (standard regimen assumed: the current one is not recorded)")
        + f". {ds.source}"
    )
    if not pool:
        return f"no listed regimen has the current interval (every {current.interval_h:g} h); {ds.interval_text}", None, basis
    best = min(pool, key=lambda r: round(abs(math.log(r.daily_mg / wanted)), 9))
    cap = ""
    if wanted > max(r.daily_mg for r in pool):
        cap = f", the largest listed regimen at every {current.interval_h:g} h"
    elif wanted < min(r.daily_mg for r in pool):
        cap = f", the smallest listed regimen at every {current.interval_h:g} h"
    if (best.dose_mg, best.interval_h) == (current.dose_mg, current.interval_h):
        already = (
            f"{current.label()} is already{cap.removeprefix(',')}"
            if cap
            else f"no listed regimen is closer than {current.label()}"
        )
        return f"{already} (proportional estimate {wanted:.0f} mg/day); {ds.interval_text}", None, basis
    return (
        f"consider {best.label()} ({best.daily_mg:g} mg/day{cap}; proportional estimate "
        f"{wanted:.0f} mg/day) instead of {current.label()}, then recheck the trough at steady state",
        best,
        basis,
    )


def suggest_dose(c: DoseContext, lz: LinezolidFile) -> Suggestion:
    """What to do, with its safety in the sentence itself: hold and platelets above the range, dilution above
    linearity, adherence and sampling before any increase, the MIC, and never "continue" below the MIC."""
    ds = lz.dose_suggestion
    band, timing = c.band, c.timing
    mic = ds.mic_text.replace("the MIC", f"the MIC ({c.mic.original})", 1) if c.below_mic and c.mic is not None else ""
    if mic and timing.is_trough is False:
        mic = mic.replace("the trough", "even this post-dose level", 1)
    if band is None:
        if timing.is_trough is False:
            return Suggestion(
                _sentence(["no dose change on this result: it is not a trough", mic]) + " " + timing.draw_advice,
                None,
                lz.trough.source,
            )
        return Suggestion(_sentence(["no dose suggestion: the result cannot be placed in one category", mic]), None, "")
    if band.name == "above_linearity":
        return Suggestion(_sentence([ds.hold_linearity_text, ds.platelet_text]), None, f"{lz.assay.source}; {ds.safety_source}")
    if band.name == "not_quantifiable":
        return Suggestion(_sentence(["not quantifiable: " + ds.check_first_text, "repeat the trough", mic]), None, band.source)
    safety: list[str] = []
    if band.name == "above":
        safety = [ds.hold_text, ds.platelet_text]
    if c.child:
        return Suggestion(_sentence([*safety, mic, ds.child_text]), None, f"{lz.cohort.name}; {ds.safety_source}")
    if timing.steady_state == "not_reached":
        wait = "the trough may still rise before steady state: recheck it at steady state before changing the dose"
        if band.name == "within":
            wait = (
                "within the range before steady state, where it may still rise: no change yet; recheck the trough at steady state"
            )
        return Suggestion(_sentence([*safety, mic, wait]), None, lz.trough.source)
    unchecked = ""
    if timing.status != "valid":
        unchecked = (
            "steady state could not be confirmed (start of therapy unknown): check it first"
            if timing.is_trough
            else "timing of the sample could not be confirmed: check it first"
        )
    if band.name == "within":
        if mic:
            return Suggestion(_sentence([mic, unchecked]), None, ds.mic_source)
        return Suggestion(
            _sentence([f"continue {c.regimen.label()}; the trough is within the therapeutic range", unchecked]),
            c.regimen,
            band.source,
        )
    if c.trough.comparator or c.trough.value is None:  # "<2", ">8": a side, not a number to scale by
        first = ds.check_first_text if band.name == "below" else ""
        return Suggestion(
            _sentence([*safety, mic, first, "no proportional dose: the trough is not a quantified value", "repeat the trough"]),
            None,
            band.source,
        )
    check = [ds.check_first_text] if band.name == "below" and c.trough.value < ds.far_below_mg_per_l else []
    sentence, regimen, basis = _proportional(c, lz)
    text = _sentence([*safety, mic, *check, sentence, unchecked])
    if regimen is not None:
        text = "Suggestion for the clinician: " + text[:1].lower() + text[1:]
    return Suggestion(text, regimen, f"{basis}; {ds.safety_source}")


def _level_is_trough(m: Measurement, exposures: list[MedicationExposure], regimen: Regimen, lz: LinezolidFile) -> bool:
    return check_timing(m, exposures, regimen, lz).is_trough is not False


def interpret_linezolid(record: PatientRecord, k: Knowledge, age: int | None = None) -> LinezolidFinding | None:
    """None when the patient has no linezolid concentration."""
    lz = k.linezolid
    levels = record.of("linezolid")
    if not levels:
        return None
    latest = levels[-1]
    assert latest.value is not None
    exposures = linezolid_exposures(record)
    at = latest.time.start if latest.time else None
    regimen, known = current_regimen(exposures, at, lz)
    timing = check_timing(latest, exposures, regimen, lz)
    band = classify_trough(latest.value, latest.comparator, lz)
    why = "" if band else f"{latest.original} spans more than one category"
    if band is not None and band.name in RANGE_BANDS and timing.is_trough is False:
        within = lz.band("within")
        why = f"not a trough, so not compared with the trough range ({within.lower:g}-{within.upper:g} mg/L)"
        band = None
    # the trend runs over the troughs of this course: earlier courses and post-dose levels are left out, and said so
    previous: list[Measurement] = []
    not_used: list[tuple[Measurement, str]] = []
    course = course_doses(_doses_before(exposures, at), lz) if at else []
    course_from = course[0] - timedelta(hours=lz.trough.course_gap_h) if course else None
    for m in levels[:-1]:
        if course_from is not None and m.time is not None and m.time.start < course_from:
            not_used.append((m, "an earlier course of linezolid: not part of this course's trend"))
        elif not _level_is_trough(m, exposures, regimen, lz):
            not_used.append((m, "not a trough (timing against the recorded doses): not part of the trend"))
        else:
            previous.append(m)
    direction, steps, trend_text = trend_of([*previous, latest] if band is not None else [], lz)
    mics = record.of("linezolid_mic")
    mic = mics[-1] if mics else None
    below_mic = compare_mic(latest, mic) if mic else None
    child = age is not None and age < lz.cohort.age_min
    notes = []
    if latest.matched_by == "name":
        notes.append("the linezolid result was recognized by its name, not by a configured code")
    if latest.preliminary:
        notes.append("the result is preliminary")
    if child:
        notes.append(
            f"the patient is {age} years old: the range, regimens and cohort findings are from adults "
            f"({lz.cohort.age_min}-{lz.cohort.age_max} years)"
        )
    context = DoseContext(band, latest, timing, regimen, known, below_mic, mic, child)
    return LinezolidFinding(
        trough=latest,
        band=band,
        why_indeterminate=why,
        timing=timing,
        previous=previous if band is not None else [],
        trend=direction,
        mic=mic,
        below_mic=below_mic,
        regimen=regimen,
        regimen_known=known,
        suggestion=suggest_dose(context, lz),
        notes=notes,
        steps=steps,
        trend_text=trend_text,
        not_used=not_used if band is not None else [(m, "the latest level is not a trough: no trend") for m in levels[:-1]],
        child=child,
    )
