"""When to draw the first linezolid trough of an ordered (or current) regimen. Pure.

Not a second timing rule: the trough-timing rule itself (rules.trough_timing.check_timing) is run on the planned
schedule, doses given on time from the start of the course (the first recorded dose of a current course, else
the order's start, else now), and the first sample time it accepts as a valid trough at steady state, not in
the past, is the answer. Used by the CDS Hooks order services before the first dose."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from labinterp.extract.facts import FhirTime, Measurement, MedicationExposure, PatientRecord, SourceRef
from labinterp.knowledge import Knowledge
from labinterp.knowledge.model import Regimen
from labinterp.rules.linezolid import timing_exposures
from labinterp.rules.trough_timing import check_timing, course_doses, current_regimen, doses_before, local_time

MAX_CANDIDATES = 200  # sample times tried after the start (far beyond any steady state)
HORIZON = timedelta(days=366)  # an order starting later than this is not planned for (nor is a date that overflows)


@dataclass(frozen=True)
class FirstTrough:
    at: datetime
    dose: int  # the dose it is drawn before
    regimen: Regimen
    regimen_known: bool
    therapy_h: float
    when: str  # the sample time in the order's (or UTC) offset, as the ward reads it
    text: str


def _planned(at: datetime, n: int, mg: float) -> MedicationExposure:
    ref = SourceRef("MedicationAdministration", f"planned-{n}", "1", f"MedicationAdministration/planned-{n}")
    when = FhirTime(at, "time", at.isoformat())
    return MedicationExposure(
        drugs=frozenset({"linezolid"}),
        atc=frozenset(),
        name="linezolid (planned)",
        kind="MedicationAdministration",
        status="completed",
        source=ref,
        administered=when,
        dose_mg=mg,
    )


def _sample(at: datetime) -> Measurement:
    ref = SourceRef("Observation", "planned-trough", "1", "Observation/planned-trough")
    return Measurement("linezolid", None, "", "mg/L", "planned trough", FhirTime(at, "time", at.isoformat()), "final", ref)


def _start(record: PatientRecord, k: Knowledge, planned: FhirTime | None, now: datetime) -> tuple[datetime, str, str]:
    """(the start of the course, how it is known, a timestamp text whose offset the advice is written in)."""
    lz = k.linezolid
    course = course_doses(doses_before(timing_exposures(record, k), None), lz)
    if course and now - course[-1].at <= timedelta(hours=lz.trough.course_gap_h):
        like = planned.text if planned is not None else "Z"
        return course[0].at, "the first recorded dose of the current course", like
    if planned is not None and planned.has_time:
        if now - planned.start > timedelta(hours=lz.trough.course_gap_h):  # long past, and no dose of it recorded
            return now, "now (the order's start is past and no dose of it is recorded)", planned.text
        return planned.start, "the start of the order", planned.text
    return now, "now (the order gives no start time)", planned.text if planned is not None else "Z"


def first_trough(record: PatientRecord, k: Knowledge, order: MedicationExposure, now: datetime) -> FirstTrough | None:
    """When to draw the first steady-state trough on the ordered (or current) regimen, doses given on schedule.
    None when it cannot be planned: an interval no trough rule reads (not positive; so short that steady state
    takes more doses than are tried; longer than the gap that ends a course, so no steady state ever), or a start
    beyond the planning horizon."""
    lz = k.linezolid
    regimen, known = current_regimen(timing_exposures(record, k), None, lz)
    interval = regimen.interval_h
    if not interval > 0 or interval > lz.trough.course_gap_h or lz.trough.steady_state_h / interval > MAX_CANDIDATES:
        return None
    start, how, like = _start(record, k, order.start, now)
    if start - now > HORIZON:
        return None
    step = timedelta(hours=interval)
    tolerance = timedelta(minutes=lz.trough.tolerance_min)
    first = max(1, int((now - tolerance - start) / step)) if now > start else 1
    for n in range(first, first + MAX_CANDIDATES):
        at = start + n * step
        if at < now - tolerance:
            continue
        doses = [_planned(start + i * step, i, regimen.dose_mg) for i in range(n)]
        timing = check_timing(_sample(at), doses, regimen, lz)
        if timing.status != "valid":
            continue
        hours = (at - start).total_seconds() / 3600
        assumed = "" if known else " (standard regimen assumed: the order gives no dose and interval)"
        when = local_time(at, like)
        text = (
            f"Draw the first linezolid trough at {when}: just before dose {n + 1} of {regimen.label()}{assumed}, "
            f"{regimen.interval_h:g} h +/- {lz.trough.tolerance_min:g} min after dose {n}, at {hours:.0f} h of therapy "
            f"(steady state from {lz.trough.steady_state_h:g} h), counting from {how} with doses given on schedule "
            f"({lz.trough.source})."
        )
        return FirstTrough(at, n + 1, regimen, known, hours, when, text)
    return None
