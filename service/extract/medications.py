"""MedicationRequest, MedicationStatement and MedicationAdministration → MedicationExposure.

Drugs are recognized by ATC code, RxNorm code or name (drugs.csv, magnesium_causes.csv)."""

from __future__ import annotations

from typing import Any

from service.extract.facts import FhirTime, MedicationExposure, SourceRef
from service.extract.fhirtime import parse_fhir_time
from service.extract.observations import codings, concept_text
from service.knowledge import Knowledge

IGNORED = {
    "entered-in-error": "entered in error",
    "cancelled": "cancelled",
    "draft": "a draft",
    "not-taken": "not taken",
    "not-done": "not done",
}
_PERIOD_H = {"s": 1 / 3600, "min": 1 / 60, "h": 1.0, "d": 24.0, "wk": 168.0}


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
    atc = {c["code"] for c in codings(concept) if c.get("system") == systems["atc"] and isinstance(c.get("code"), str)}
    rxnorm = {c["code"] for c in codings(concept) if c.get("system") == systems["rxnorm"] and isinstance(c.get("code"), str)}
    words = concept_text(concept).lower()
    drugs, implied = set(), set()
    for d in k.drugs:
        if atc & set(d.atc) or rxnorm & set(d.rxnorm) or any(n in words for n in d.names):
            drugs.add(d.drug)
            implied |= set(d.atc)
    if not atc:  # a drug named or coded in RxNorm only: its ATC codes let the class rules see it
        atc = implied
    name = concept.get("text") or next((c.get("display") for c in codings(concept) if c.get("display")), "") or words
    return frozenset(drugs), frozenset(atc), str(name)


def _dosage(d: Any) -> tuple[float | None, float | None]:
    if not isinstance(d, dict):
        return None, None
    dose = d.get("dose")
    if dose is None:
        for dr in d.get("doseAndRate", []) or []:
            if isinstance(dr, dict) and isinstance(dr.get("doseQuantity"), dict):
                dose = dr["doseQuantity"]
                break
    mg = None
    if isinstance(dose, dict) and isinstance(dose.get("value"), int | float):
        unit = dose.get("code") or dose.get("unit")
        mg = float(dose["value"]) * {"mg": 1.0, "g": 1000.0}.get(str(unit), float("nan"))
        mg = None if mg != mg else mg
    interval = None
    rep = ((d.get("timing") or {}).get("repeat") or {}) if isinstance(d.get("timing"), dict) else {}
    if isinstance(rep.get("period"), int | float) and rep.get("periodUnit") in _PERIOD_H:
        interval = rep["period"] * _PERIOD_H[rep["periodUnit"]] / (rep.get("frequency") or 1)
    return mg, interval


def _bounds_start(dosages: list[Any], where: str) -> FhirTime | None:
    for d in dosages:
        rep = ((d.get("timing") or {}).get("repeat") or {}) if isinstance(d, dict) else {}
        start = (rep.get("boundsPeriod") or {}).get("start")
        if start:
            return parse_fhir_time(start, f"{where} timing.repeat.boundsPeriod.start")
    return None


def extract_medication(
    resource: dict[str, Any], ref: SourceRef, medications: dict[str, dict[str, Any]], k: Knowledge
) -> MedicationExposure | None:
    """None when the medication is none labinterp knows."""
    where = ref.reference
    drugs, atc, name = identify(_medication_concept(resource, medications), k)
    kind = resource["resourceType"]
    words = name.lower()
    if not drugs and not any(  # not a drug labinterp names, nor one that can cause hypomagnesemia
        any(a.startswith(p) for p in c.atc_prefix for a in atc) or any(n in words for n in c.names) for c in k.mg_causes
    ):
        return None
    administered = start = None
    dose = interval = None
    if kind == "MedicationAdministration":
        if "effectiveDateTime" in resource:
            administered = parse_fhir_time(resource["effectiveDateTime"], f"{where} effectiveDateTime")
        elif isinstance(resource.get("effectivePeriod"), dict) and resource["effectivePeriod"].get("start"):
            administered = parse_fhir_time(resource["effectivePeriod"]["start"], f"{where} effectivePeriod.start")
        dose, _ = _dosage(resource.get("dosage"))
        start = administered
    elif kind == "MedicationRequest":
        dosages = resource.get("dosageInstruction", []) or []
        dose, interval = _dosage(dosages[0] if dosages else None)
        start = _bounds_start(dosages, where)
        if start is None and resource.get("authoredOn"):
            start = parse_fhir_time(resource["authoredOn"], f"{where} authoredOn")
    else:  # MedicationStatement
        dosages = resource.get("dosage", []) or []
        dose, interval = _dosage(dosages[0] if dosages else None)
        if "effectiveDateTime" in resource:
            start = parse_fhir_time(resource["effectiveDateTime"], f"{where} effectiveDateTime")
        elif isinstance(resource.get("effectivePeriod"), dict) and resource["effectivePeriod"].get("start"):
            start = parse_fhir_time(resource["effectivePeriod"]["start"], f"{where} effectivePeriod.start")
        start = start or _bounds_start(dosages, where)
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
    )
