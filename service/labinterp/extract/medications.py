"""MedicationRequest, MedicationStatement and MedicationAdministration → MedicationExposure.

Drugs are recognized by ATC code, RxNorm code or name (drugs.csv, magnesium_causes.csv).

Extraction is faithful: the status is kept as sent, and the therapy's dates as the resource gives them.
`start`: an administration's time; a statement's effective[x] (or its period start); an order's
dosageInstruction timing boundsPeriod.start, else authoredOn. `end`: effectivePeriod.end (statement,
administration), else the timing's boundsPeriod.end, else boundsDuration counted from the start. An
order's dispenseRequest.validityPeriod is when it may be dispensed, not when the therapy ends: not used.
Whether a medication is current at a sample is decided by labinterp.rules.medications.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from labinterp.errors import ResourceError
from labinterp.extract.facts import FhirTime, MedicationExposure, SourceRef
from labinterp.extract.fhirtime import parse_fhir_time
from labinterp.extract.observations import codings, concept_text
from labinterp.knowledge import Knowledge

IGNORED = {  # words for the statuses mappings/medications.toml calls "never" (that file decides which they are)
    "entered-in-error": "entered in error",
    "cancelled": "cancelled",
    "draft": "a draft",
    "not-taken": "not taken",
    "not-done": "not done",
}
_PERIOD_H = {"s": 1 / 3600, "min": 1 / 60, "h": 1.0, "d": 24.0, "wk": 168.0}
_MG = {"mg": 1.0, "g": 1000.0}  # a dose's unit to mg


def _medication_concept(resource: dict[str, Any], medications: dict[str, dict[str, Any]]) -> dict[str, Any]:
    if isinstance(resource.get("medicationCodeableConcept"), dict):
        return resource["medicationCodeableConcept"]
    ref = (resource.get("medicationReference") or {}).get("reference")
    if isinstance(ref, str):
        if ref.startswith("#"):
            for contained in resource.get("contained", []) or []:
                if contained.get("resourceType") == "Medication" and contained.get("id") == ref[1:]:
                    return contained.get("code") or {}
        med = medications.get(ref)
        if med:
            return med.get("code") or {}
        display = (resource.get("medicationReference") or {}).get("display")
        return {"text": display} if isinstance(display, str) else {}
    return {}


def identify(concept: dict[str, Any], k: Knowledge) -> tuple[frozenset[str], frozenset[str], str]:
    """(drug keys, ATC codes, name) of a medication concept."""
    systems = k.output.systems
    cs = codings(concept)
    atc_system, rxnorm_system = systems["atc"], systems["rxnorm"]
    atc_codes: list[str] = []
    rxnorm_codes: list[str] = []
    for c in cs:
        system, code = c.get("system"), c.get("code")
        if system == atc_system and isinstance(code, str):
            atc_codes.append(code)
        if system == rxnorm_system and isinstance(code, str):
            rxnorm_codes.append(code)
    atc, rxnorm = frozenset(atc_codes), frozenset(rxnorm_codes)
    words = concept_text(concept).lower()
    key = ("identify", atc, rxnorm, words)
    known = k.memo(key)
    if known is None:  # drugs.csv is matched once per distinct concept, not once per resource
        drugs: set[str] = set()
        implied: set[str] = set()
        for d in k.drugs:
            if atc & set(d.atc) or rxnorm & set(d.rxnorm) or any(n in words for n in d.names):
                drugs.add(d.drug)
                implied |= set(d.atc)
        # a drug named or coded in RxNorm only: its ATC codes let the class rules see it
        known = k.remember(key, (frozenset(drugs), atc or frozenset(implied)))
    name = concept.get("text") or next((c.get("display") for c in cs if c.get("display")), "") or words
    return known[0], known[1], str(name)


def _number(value: Any, where: str) -> float | None:
    """A JSON number as a float; None when not a number; ResourceError when no float can hold it."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:
        raise ResourceError(where, "a number too large to be a dose or a period") from None


def _dosage(d: Any, where: str) -> tuple[float | None, float | None]:
    if not isinstance(d, dict):
        return None, None
    dose = d.get("dose")
    if dose is None:
        for dr in d.get("doseAndRate", []) or []:
            if isinstance(dr, dict) and isinstance(dr.get("doseQuantity"), dict):
                dose = dr["doseQuantity"]
                break
    mg = None
    value = _number(dose.get("value"), f"{where} dose.value") if isinstance(dose, dict) else None
    if isinstance(dose, dict) and value is not None:
        unit = dose.get("code") or dose.get("unit")
        factor = _MG.get(str(unit))
        mg = None if factor is None else value * factor
        mg = None if mg is not None and mg != mg else mg  # a NaN dose value: no dose
    interval = None
    rep = _repeat(d)
    period = _number(rep.get("period"), f"{where} timing.repeat.period")
    frequency = _number(rep.get("frequency"), f"{where} timing.repeat.frequency")
    if period is not None and isinstance(rep.get("periodUnit"), str) and rep["periodUnit"] in _PERIOD_H:
        interval = period * _PERIOD_H[rep["periodUnit"]] / (frequency or 1)
    return mg, interval


def _repeat(d: Any) -> dict[str, Any]:
    timing = d.get("timing") if isinstance(d, dict) else None
    rep = timing.get("repeat") if isinstance(timing, dict) else None
    return rep if isinstance(rep, dict) else {}


def _bounds_start(dosages: list[Any], where: str) -> FhirTime | None:
    for d in dosages:
        start = (_repeat(d).get("boundsPeriod") or {}).get("start")
        if start:
            return parse_fhir_time(start, f"{where} timing.repeat.boundsPeriod.start")
    return None


def _after(start: FhirTime, duration: Any) -> FhirTime | None:
    """`start` plus a timing boundsDuration (UCUM s, min, h, d, wk); None for other units (mo, a are not fixed)."""
    if not isinstance(duration, dict) or not isinstance(duration.get("value"), int | float):
        return None
    unit = duration.get("code") or duration.get("unit")
    if unit not in _PERIOD_H:
        return None
    end = start.start + timedelta(hours=float(duration["value"]) * _PERIOD_H[unit])
    shown = end.isoformat() if start.has_time else end.date().isoformat()
    return FhirTime(end, start.precision, f"{shown} ({start.text} + {duration['value']:g} {unit})")


def _bounds_end(dosages: list[Any], start: FhirTime | None, where: str) -> FhirTime | None:
    """The latest end the dosages' timing bounds give (boundsPeriod.end, or boundsDuration after the start);
    None when any dosage is open-ended (e.g. a bounded loading dose, then an unbounded maintenance dose)."""
    ends: list[FhirTime] = []
    for d in dosages:
        rep = _repeat(d)
        end = (rep.get("boundsPeriod") or {}).get("end") if isinstance(rep.get("boundsPeriod"), dict) else None
        if end:
            ends.append(parse_fhir_time(end, f"{where} timing.repeat.boundsPeriod.end"))
        elif start is not None and (after := _after(start, rep.get("boundsDuration"))) is not None:
            ends.append(after)
        else:
            return None
    return max(ends, key=lambda t: t.start) if ends else None


def _period_end(resource: dict[str, Any], where: str) -> FhirTime | None:
    period = resource.get("effectivePeriod")
    if isinstance(period, dict) and period.get("end"):
        return parse_fhir_time(period["end"], f"{where} effectivePeriod.end")
    return None


def extract_medication(
    resource: dict[str, Any], ref: SourceRef, medications: dict[str, dict[str, Any]], k: Knowledge
) -> MedicationExposure | None:
    """None when the medication is none labinterp knows."""
    where = ref.reference
    drugs, atc, name = identify(_medication_concept(resource, medications), k)
    kind = resource["resourceType"]
    if not drugs and not k.mg_causes_of(atc, name):  # not a drug labinterp names, nor one that can cause hypomagnesemia
        return None
    administered = start = end = None
    dose = interval = None
    if kind == "MedicationAdministration":
        if "effectiveDateTime" in resource:
            administered = parse_fhir_time(resource["effectiveDateTime"], f"{where} effectiveDateTime")
        elif isinstance(resource.get("effectivePeriod"), dict) and resource["effectivePeriod"].get("start"):
            administered = parse_fhir_time(resource["effectivePeriod"]["start"], f"{where} effectivePeriod.start")
        dose, _ = _dosage(resource.get("dosage"), f"{where} dosage")
        start = administered
        end = _period_end(resource, where)
    elif kind == "MedicationRequest":
        dosages = resource.get("dosageInstruction", []) or []
        dose, interval = _dosage(dosages[0] if dosages else None, f"{where} dosageInstruction[0]")
        start = _bounds_start(dosages, where)
        if start is None and resource.get("authoredOn"):
            start = parse_fhir_time(resource["authoredOn"], f"{where} authoredOn")
        end = _bounds_end(dosages, start, where)
    else:  # MedicationStatement
        dosages = resource.get("dosage", []) or []
        dose, interval = _dosage(dosages[0] if dosages else None, f"{where} dosage[0]")
        if "effectiveDateTime" in resource:
            start = parse_fhir_time(resource["effectiveDateTime"], f"{where} effectiveDateTime")
        elif isinstance(resource.get("effectivePeriod"), dict) and resource["effectivePeriod"].get("start"):
            start = parse_fhir_time(resource["effectivePeriod"]["start"], f"{where} effectivePeriod.start")
        start = start or _bounds_start(dosages, where)
        end = _period_end(resource, where) or _bounds_end(dosages, start, where)
    return MedicationExposure(
        drugs=drugs,
        atc=atc,
        name=name,
        kind=kind,
        status=str(resource.get("status")),
        source=ref,
        administered=administered,
        start=start,
        dose_mg=dose,
        interval_h=interval,
        end=end,
    )
