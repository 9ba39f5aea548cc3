"""Draft orders (context.draftOrders) as the pipeline reads them, and when to draw the first linezolid trough.

A draft MedicationRequest goes into the interpreted Bundle as the order it would be once signed: status `active`
(a `draft` is never read by the medication rules), subject the context's patient, its id replaced by a local one (it
can collide with nothing the prefetch holds), its dates kept. So the linezolid rules see the ordered regimen and
assess the exposure risk before the first dose, and a rifampicin order counts as an inducer; whether a drafted drug
lowers magnesium is told by the magnesium rule's own list (rules.magnesium.named_causes over knowledge.mg_causes).

When to draw the first trough is the rule of rules.first_trough (the trough-timing rule run on the planned
schedule). Whether the latest trough belongs to the current course (`trough_course`) is read with the rules' own
functions and the course gap of mappings/linezolid.toml (`course_gap_h`): the findings do not carry it."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from labinterp.extract.facts import Measurement, MedicationExposure, PatientRecord
from labinterp.knowledge import Knowledge
from labinterp.rules.first_trough import FirstTrough, first_trough
from labinterp.rules.linezolid import timing_exposures
from labinterp.rules.trough_timing import course_doses, doses_before, local_time
from labinterp.server.cds.call import CallError, HookCall
from labinterp.server.cds.prefetch import subject_id

DRAFT_ID = "labinterp-cds-draft-{n}"
__all__ = [
    "Draft",
    "FirstTrough",
    "TroughCourse",
    "drafted",
    "drafts_for_pipeline",
    "first_trough",
    "trough_course",
    "trough_request",
]


@dataclass(frozen=True)
class Draft:
    reference: str | None  # the client's "MedicationRequest/id"; None when the draft has no id
    internal: str  # "MedicationRequest/labinterp-cds-draft-N": its reference in the interpreted Bundle
    selected: bool  # order-select: among context.selections; order-sign: every draft


def drafts_for_pipeline(call: HookCall) -> tuple[list[Draft], list[dict[str, Any]]]:
    """The draft MedicationRequests (and any Medication they reference) as resources of the interpreted Bundle."""
    drafts: list[Draft] = []
    resources: list[dict[str, Any]] = []
    for n, resource in enumerate(call.draft_orders):
        rtype = resource["resourceType"]
        if rtype == "Medication" and isinstance(resource.get("id"), str):
            resources.append(resource)
        if rtype != "MedicationRequest":
            continue
        who = subject_id(resource)
        if who is not None and who != call.patient_id:
            raise CallError(f"context.draftOrders.entry[{n}].resource.subject", "is another patient than context.patientId")
        order = copy.deepcopy(resource)
        order.pop("meta", None)
        order["id"] = DRAFT_ID.format(n=n)
        order["status"] = "active"
        order["subject"] = {"reference": f"Patient/{call.patient_id}"}
        reference = f"MedicationRequest/{resource['id']}" if isinstance(resource.get("id"), str) else None
        selected = call.selections is None or reference in call.selections
        drafts.append(Draft(reference, f"MedicationRequest/{order['id']}", selected))
        resources.append(order)
    return drafts, resources


def drafted(record: PatientRecord, drafts: list[Draft], selected_only: bool = True) -> list[tuple[Draft, MedicationExposure]]:
    """The drafts as the extraction read them (drug keys, ATC, regimen), each with its Draft."""
    by_ref = {d.internal: d for d in drafts if d.selected or not selected_only}
    return [(by_ref[m.source.reference], m) for m in record.medications if m.source.reference in by_ref]


def trough_request(k: Knowledge, patient_id: str, first: FirstTrough, based_on: str | None) -> dict[str, Any]:
    """A draft ServiceRequest for the first linezolid trough: the resource a suggestion's create action carries."""
    codings = [
        {"system": c.system, "code": c.code, **({"display": c.display} if c.display else {})}
        for c in k.analyte_codes
        if c.analyte == "linezolid"
    ]
    code: dict[str, Any] = {"text": "Linezolid trough concentration (plasma)"}
    if codings:
        code["coding"] = codings[:1]
    t = k.linezolid.trough
    request: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "order",
        "code": code,
        "subject": {"reference": f"Patient/{patient_id}"},
        "occurrenceDateTime": first.at.isoformat().replace("+00:00", "Z"),
        "note": [
            {
                "text": f"Trough: draw {first.regimen.interval_h:g} h +/- {t.tolerance_min:g} min after a dose, just before the "
                f"next one, at steady state (>= {t.steady_state_h:g} h of therapy); record the sampling and dose times."
            }
        ],
    }
    if based_on:
        request["basedOn"] = [{"reference": based_on}]
    return request


@dataclass(frozen=True)
class TroughCourse:
    current: bool | None  # True: drawn in the current course; False: in an earlier one; None: cannot be told
    why: str  # in words, with the dates it rests on


def trough_course(record: PatientRecord, k: Knowledge, trough: Measurement, now: datetime) -> TroughCourse:
    """Whether a linezolid trough was drawn in the course a new order continues. Read with the rules' own functions,
    not a new rule: the recorded doses of the latest course (rules.trough_timing.course_doses: a gap of more than
    `course_gap_h` between two doses ends a course); that course is current when its last dose is within the course
    gap of now (as rules.first_trough counts a current course), and the trough belongs to it when drawn no earlier
    than the course gap before its first dose (as rules.linezolid sets an earlier course's levels apart)."""
    lz = k.linezolid
    gap_h = lz.trough.course_gap_h
    gap = timedelta(hours=gap_h)
    like = trough.time.text if trough.time else "Z"
    course = course_doses(doses_before(timing_exposures(record, k), None), lz)
    if not course:
        return TroughCourse(
            None,
            "no linezolid administration is recorded, so whether this trough is of the current course cannot be told: "
            "if linezolid was stopped since it was drawn, it does not apply to the new order (draw a new trough at "
            "steady state)",
        )
    rule = f"a gap of more than {gap_h:g} h between two doses ends a course ({lz.trough.course_gap_source})"
    last = local_time(course[-1].at, like)
    if now - course[-1].at > gap:
        return TroughCourse(
            False,
            f"the last recorded linezolid dose was {last}, more than {gap_h:g} h before now: that course has ended and "
            f"the new order starts a new one; {rule}",
        )
    if trough.time is None:
        return TroughCourse(None, "the trough has no sampling time, so whether it is of the current course cannot be told")
    first = course[0].at
    if trough.time.start < first - gap:
        return TroughCourse(
            False,
            f"the current course began with the dose of {local_time(first, like)}: the trough was drawn before it, "
            f"in an earlier course; {rule}",
        )
    return TroughCourse(True, f"drawn in the current course (recorded doses from {local_time(first, like)} to {last})")
