"""Is a linezolid level a trough, at steady state? On the patient's own dosing interval, course and regimen
(seed 000 section 2.1: 12 h +/- 20 min after the last dose, >= 72 h of therapy; issue 7 point 2).

The recorded administrations are read as courses (a gap longer than the course gap ends one) and, within the
current course, as a run of the current regimen (same dose, gaps of one interval, or of whole intervals when a
dose was missed). Steady state counts from the start of that run when the regimen changed within the course,
else from the course's start (an order or statement's start, else the first of two or more recorded doses); a
dose missing within the steady-state window before the sample interrupts it. Pure functions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise

from labinterp.extract.facts import Measurement, MedicationExposure
from labinterp.knowledge.model import LinezolidFile, Regimen

ADMINISTRATION = "MedicationAdministration"
_set = object.__setattr__


@dataclass(frozen=True)
class Timing:
    status: str  # "valid" | "invalid" | "unchecked"
    reasons: tuple[str, ...]
    hours_after_dose: float | None = None
    hours_of_therapy: float | None = None
    is_trough: bool | None = None  # None: no timed dose recorded, so it could not be checked
    steady_state: str = "unknown"  # "reached" | "not_reached" | "interrupted" | "unknown"
    interval_h: float = 12.0
    next_trough: datetime | None = None  # when a trough is due: one interval after the last dose
    draw_advice: str = ""  # when to draw a trough, for a level that is not one
    sample_untimed: bool = False  # the sample has no time of collection
    untimed_doses: bool = False  # administrations are recorded, but without times


@dataclass(frozen=True)
class Dose:
    at: datetime
    mg: float | None

    def __init__(self, at: datetime, mg: float | None) -> None:
        # made for every recorded administration, several times a patient: the frozen dataclass's own __init__,
        # with object.__setattr__ looked up once
        _set(self, "at", at)
        _set(self, "mg", mg)


def local_time(t: datetime, like: str) -> str:
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


def doses_before(exposures: list[MedicationExposure], at: datetime | None) -> list[Dose]:
    """Timed administrations before `at` (a dose recorded at the very time of sampling was given after it)."""
    doses = []
    for e in exposures:
        given = e.administered
        if given and given.precision == "time" and (at is None or given.start < at):
            doses.append(Dose(given.start, e.dose_mg))
    doses.sort(key=_at)
    return doses


def _at(d: Dose) -> datetime:
    return d.at


def course_doses(doses: list[Dose], lz: LinezolidFile) -> list[Dose]:
    """The recorded doses of the course the last dose belongs to: back from the last dose while the gaps stay
    within the course gap (a course stopped months ago is another course)."""
    if not doses:
        return []
    gap = timedelta(hours=lz.trough.course_gap_h)
    first = len(doses) - 1
    while first > 0 and doses[first].at - doses[first - 1].at <= gap:
        first -= 1
    return doses[first:]


def _interval_of(course: list[Dose], lz: LinezolidFile) -> float | None:
    """The dosing interval the course's latest doses show: the last two gaps when they agree (a change of
    regimen shows there first), else the mean of the last four without missed-dose gaps (10 h / 14 h twice-daily
    times average to 12 h). Snapped to a listed interval within an hour."""
    gaps = [(b.at - a.at).total_seconds() / 3600 for a, b in pairwise(course[-5:])]
    gaps = [g for g in gaps if g > 0]
    if not gaps:
        return None
    if len(gaps) >= 2 and abs(gaps[-1] - gaps[-2]) <= 1.0:
        value = (gaps[-1] + gaps[-2]) / 2
    else:
        shortest = min(gaps)
        kept = [g for g in gaps if g < lz.trough.missed_dose_factor * shortest]
        value = sum(kept) / len(kept)
    listed = sorted({r.interval_h for r in lz.dose_suggestion.regimens}, key=lambda h: abs(h - value))
    return listed[0] if abs(listed[0] - value) <= 1.0 else round(value, 1)


def current_regimen(exposures: list[MedicationExposure], at: datetime | None, lz: LinezolidFile) -> tuple[Regimen, bool]:
    """The regimen the patient is on (from the spacing of the course's administrations, else the order or
    statement), or the standard one assumed (False: not recorded)."""
    course = course_doses(doses_before(exposures, None if at is None else at + timedelta(seconds=1)), lz)
    interval = _interval_of(course, lz)
    if interval is not None and course[-1].mg:
        return Regimen(dose_mg=course[-1].mg, interval_h=interval), True
    orders = [
        e
        for e in exposures
        if e.kind != ADMINISTRATION and e.dose_mg and e.interval_h and not (at and e.end and e.end.start < at)
    ]
    orders.sort(key=lambda e: (e.start is not None, e.start.start if e.start else datetime.min.replace(tzinfo=UTC)))
    if orders:
        e = orders[-1]
        assert e.dose_mg is not None and e.interval_h is not None
        return Regimen(dose_mg=e.dose_mg, interval_h=e.interval_h), True
    return lz.standard_regimen, False


def _course_start(
    exposures: list[MedicationExposure], doses: list[Dose], at: datetime, lz: LinezolidFile
) -> tuple[datetime | None, str]:
    """The start of the current course and how it is known; (None, "") when it is not known."""
    gap = timedelta(hours=lz.trough.course_gap_h)
    anchor = doses[0].at if doses else at
    starts = []
    for e in exposures:
        if e.kind == ADMINISTRATION or e.start is None or e.start.start > at:
            continue
        if e.end is not None and e.end.start < anchor - gap:  # an order or statement of an earlier course
            continue
        starts.append(e.start.start)
    if starts:
        # the latest start of a current order or statement: a renewal may hide an earlier one, and an early
        # start wrongly taken would call a level "at steady state" too soon, so the later one is the safe side
        start = min([max(starts), doses[0].at]) if doses else max(starts)
        return start, "from the order or statement"
    if len(doses) >= 2:
        return doses[0].at, "from the first recorded dose of this course"
    return None, ""


@dataclass(frozen=True)
class Run:
    """The trailing run of the current regimen within the course."""

    start: Dose
    changed: bool  # an earlier part of the course had another dose or interval
    missed: tuple[tuple[Dose, Dose], ...]  # gaps of whole intervals: doses missing between these two


def regimen_run(course: list[Dose], interval: float, lz: LinezolidFile) -> Run:
    tol = lz.trough.regimen_gap_tolerance_h
    missed: list[tuple[Dose, Dose]] = []
    last = course[-1]
    i = len(course) - 1
    while i > 0:
        a, b = course[i - 1], course[i]
        if a.mg is not None and last.mg is not None and a.mg != last.mg:
            break
        gap = (b.at - a.at).total_seconds() / 3600
        if abs(gap - interval) > tol:
            whole = round(gap / interval)
            if whole >= 2 and abs(gap - whole * interval) <= tol:
                missed.append((a, b))
            else:
                break
        i -= 1
    return Run(course[i], i > 0, tuple(missed))


def _steady(
    exposures: list[MedicationExposure], course: list[Dose], at: datetime, regimen: Regimen, lz: LinezolidFile
) -> tuple[str, float | None, str]:
    """(steady state, hours of therapy counted, the reason's words)."""
    t = lz.trough
    run = regimen_run(course, regimen.interval_h, lz) if course else None
    if run is not None and run.changed:
        start: datetime | None = run.start.at
        how = f"since the change to {regimen.label()} at {run.start.at.strftime('%Y-%m-%d %H:%M')} UTC"
    else:
        start, how = _course_start(exposures, course, at, lz)
    therapy_h = (at - start).total_seconds() / 3600 if start else None
    window = at - timedelta(hours=t.steady_state_h)
    recent_missed = [(a, b) for a, b in (run.missed if run else ()) if b.at >= window]
    if recent_missed:
        a, b = recent_missed[-1]
        gap = (b.at - a.at).total_seconds() / 3600
        return (
            "interrupted",
            therapy_h,
            f"a dose appears to be missing between {a.at.strftime('%Y-%m-%d %H:%M')} and {b.at.strftime('%Y-%m-%d %H:%M')} UTC "
            f"(a gap of {gap:.0f} h on an every-{regimen.interval_h:g}-h regimen) within the last {t.steady_state_h:g} h: "
            "the level may not reflect steady state",
        )
    if therapy_h is None:
        only = "only the last dose recorded" if course else "no dose or order start recorded"
        return "unknown", None, f"start of therapy unknown ({only}): steady state unknown"
    if therapy_h >= t.steady_state_h:
        return "reached", therapy_h, f"at steady state ({therapy_h:.0f} h of therapy {how}, >= {t.steady_state_h:g} h)"
    return (
        "not_reached",
        therapy_h,
        f"{therapy_h:.0f} h of therapy {how}: not yet at steady state (>= {t.steady_state_h:g} h)",
    )


def check_timing(sample: Measurement, exposures: list[MedicationExposure], regimen: Regimen, lz: LinezolidFile) -> Timing:
    """Is the sample a trough (one dosing interval +/- the tolerance after the last dose) at steady state?"""
    t = lz.trough
    interval = regimen.interval_h
    if sample.time is None or not sample.time.has_time:
        return Timing(
            "unchecked",
            ("the sample has no time of collection, so timing could not be checked",),
            interval_h=interval,
            sample_untimed=True,
        )
    at = sample.time.start
    course = course_doses(doses_before(exposures, at), lz)
    steady, therapy_h, steady_words = _steady(exposures, course, at, regimen, lz)
    reasons = [steady_words]
    if not course:
        untimed = any(e.kind == ADMINISTRATION and not (e.administered and e.administered.has_time) for e in exposures)
        reasons.insert(
            0,
            "linezolid administrations are recorded without times, so the time since the last dose could not be checked"
            if untimed
            else "no linezolid administrations are recorded, so the time since the last dose could not be checked",
        )
        status = "invalid" if steady in ("not_reached", "interrupted") else "unchecked"
        return Timing(status, tuple(reasons), None, therapy_h, None, steady, interval, untimed_doses=untimed)
    last = course[-1].at
    elapsed = at - last
    since = elapsed.total_seconds() / 3600
    next_trough = last + timedelta(hours=interval)
    # compared as timedeltas: 11 h 40 min must sit exactly on the edge of a 12 h +/- 20 min window
    is_trough = abs(elapsed - timedelta(hours=interval)) <= timedelta(minutes=t.tolerance_min)
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
            f" (for the dose given at {local_time(last, sample.time.text)}: at {local_time(next_trough, sample.time.text)})."
        )
    else:
        reasons.insert(
            0,
            f"sampled {_hm(since)} after the last recorded dose, later than a trough ({interval:g} h +/- {t.tolerance_min:g} min): "
            "a dose may have been missed or not recorded",
        )
        advice = f"Draw a trough {interval:g} h after a dose, just before the next one, once doses are given on schedule."
        if since >= t.missed_dose_factor * interval and steady == "reached":
            # the dose due before the sample is not recorded: the level may not reflect steady state either
            steady = "interrupted"
            reasons[-1] = "the dose due before the sample is not recorded: the level may not reflect steady state"
    if not is_trough or steady in ("not_reached", "interrupted"):
        status = "invalid"
    elif steady == "reached":
        status = "valid"
    else:
        status = "unchecked"
    return Timing(status, tuple(reasons), since, therapy_h, is_trough, steady, interval, next_trough, advice)


def regimen_change_at(
    exposures: list[MedicationExposure], at: datetime | None, regimen: Regimen, lz: LinezolidFile
) -> datetime | None:
    """When the current regimen (dose and interval) began, if it changed within the course; None otherwise."""
    course = course_doses(doses_before(exposures, at), lz)
    if not course:
        return None
    run = regimen_run(course, regimen.interval_h, lz)
    return run.start.at if run.changed else None


def level_is_trough(m: Measurement, exposures: list[MedicationExposure], regimen: Regimen, lz: LinezolidFile) -> bool:
    return check_timing(m, exposures, regimen, lz).is_trough is not False
