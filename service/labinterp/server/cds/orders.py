"""Draft orders (context.draftOrders) as the pipeline reads them, and when to draw the first linezolid trough.

A draft MedicationRequest goes into the interpreted Bundle as the order it would be once signed: status `active`
(a `draft` is never read by the medication rules), subject the context's patient, its id replaced by a local one (it
can collide with nothing the prefetch holds), its dates kept. So the linezolid rules see the ordered regimen and
assess the exposure risk before the first dose, and a rifampicin order counts as an inducer; whether a drafted drug
lowers magnesium is told by the magnesium rule's own list (rules.magnesium.named_causes over knowledge.mg_causes).

The first trough is not a rule of its own in labinterp: it is found with the trough-timing rule itself
(rules.trough_timing.check_timing) on the planned schedule: the first sample time, one dosing interval after a
dose, that the rule accepts as a valid trough at steady state, and not in the past."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from labinterp.extract.facts import FhirTime, Measurement, MedicationExposure, PatientRecord, SourceRef
from labinterp.knowledge import Knowledge
from labinterp.knowledge.model import Regimen
from labinterp.rules.linezolid import timing_exposures
from labinterp.rules.trough_timing import check_timing, course_doses, current_regimen, doses_before, local_time
from labinterp.server.cds.call import CallError, HookCall
from labinterp.server.cds.prefetch import subject_id

DRAFT_ID = "labinterp-cds-draft-{n}"
MAX_CANDIDATES = 200  # sample times tried after the start (far beyond any steady state)


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
        return planned.start, "the start of the order", planned.text
    return now, "now (the order gives no start time)", planned.text if planned is not None else "Z"


def first_trough(record: PatientRecord, k: Knowledge, order: MedicationExposure, now: datetime) -> FirstTrough | None:
    """When to draw the first steady-state trough on the ordered (or current) regimen, doses given on schedule."""
    lz = k.linezolid
    regimen, known = current_regimen(timing_exposures(record, k), None, lz)
    start, how, like = _start(record, k, order.start, now)
    step = timedelta(hours=regimen.interval_h)
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
