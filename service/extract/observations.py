"""Observation JSON → Measurement: code recognition, status, comparator, unit conversion."""

from __future__ import annotations

from typing import Any

from service.errors import ResourceError
from service.extract.facts import FhirTime, Measurement, SourceRef
from service.extract.fhirtime import parse_fhir_time
from service.knowledge import Knowledge

IGNORED_STATUSES = {"entered-in-error": "entered in error", "cancelled": "cancelled", "registered": "registered, no result yet"}
USABLE_STATUSES = {"final", "amended", "corrected", "preliminary"}
COMPARATORS = {"<", "<=", ">", ">="}
UCUM = "http://unitsofmeasure.org"


def codings(concept: Any) -> list[dict[str, Any]]:
    if not isinstance(concept, dict):
        return []
    return [c for c in concept.get("coding", []) or [] if isinstance(c, dict)]


def concept_text(concept: Any) -> str:
    """All human-readable words of a CodeableConcept: its text and its codings' displays."""
    if not isinstance(concept, dict):
        return ""
    parts = [concept.get("text") or ""] + [c.get("display") or "" for c in codings(concept)]
    return " ".join(p for p in parts if isinstance(p, str))


def effective_time(obs: dict[str, Any], where: str) -> FhirTime | None:
    if "effectiveDateTime" in obs:
        return parse_fhir_time(obs["effectiveDateTime"], f"{where} effectiveDateTime")
    if "effectiveInstant" in obs:
        return parse_fhir_time(obs["effectiveInstant"], f"{where} effectiveInstant")
    period = obs.get("effectivePeriod")
    if isinstance(period, dict) and "start" in period:
        return parse_fhir_time(period["start"], f"{where} effectivePeriod.start")
    return None


def recognize_analyte(obs: dict[str, Any], k: Knowledge) -> tuple[str, str, str] | None:
    """(analyte, matched_by, "system|code") for a lab Observation labinterp reads, else None."""
    for c in codings(obs.get("code")):
        analyte = k.analyte_for(c.get("system"), c.get("code"))
        if analyte:
            return analyte, "code", f"{c.get('system')}|{c.get('code')}"
    words = concept_text(obs.get("code")).lower()
    for name, spec in k.analytes.items():
        if spec.name_match and any(w in words for w in spec.name_match) and not any(x in words for x in spec.name_exclude):
            quantity = obs.get("valueQuantity")
            unit = _unit_of(quantity) if isinstance(quantity, dict) else None
            if unit and k.is_mass_concentration(unit):
                return name, "name", ""
    return None


def _unit_of(quantity: dict[str, Any]) -> str | None:
    code, unit = quantity.get("code"), quantity.get("unit")
    if isinstance(code, str) and code and quantity.get("system") in (UCUM, None):
        return code
    if isinstance(unit, str) and unit:
        return unit
    return code if isinstance(code, str) and code else None


def _flags(obs: dict[str, Any]) -> frozenset[str]:
    out = set()
    for concept in obs.get("interpretation", []) or []:
        for c in codings(concept):
            if isinstance(c.get("code"), str):
                out.add(c["code"])
    return frozenset(out)


def _reference_range(obs: dict[str, Any], analyte: str, k: Knowledge) -> tuple[float | None, float | None]:
    for rr in obs.get("referenceRange", []) or []:
        if not isinstance(rr, dict):
            continue
        bounds = []
        for end in ("low", "high"):
            q = rr.get(end)
            if isinstance(q, dict) and isinstance(q.get("value"), int | float):
                unit = _unit_of(q)
                factor = k.unit_factor(analyte, unit) if unit else None
                bounds.append(q["value"] * factor if factor is not None else None)
            else:
                bounds.append(None)
        if bounds != [None, None]:
            return bounds[0], bounds[1]
    return None, None


def extract_measurement(
    obs: dict[str, Any], ref: SourceRef, analyte: str, matched_by: str, code_key: str, k: Knowledge
) -> Measurement | None:
    """A Measurement, or None when the Observation carries no value (dataAbsentReason). Raises on broken input."""
    where = ref.reference
    status = obs.get("status")
    quantity = obs.get("valueQuantity")
    if quantity is None:
        if "dataAbsentReason" in obs:
            return None
        other = next((key for key in obs if key.startswith("value")), None)
        raise ResourceError(f"{where} value[x]", f"expected valueQuantity for {analyte}, found {other or 'no value'}")
    if not isinstance(quantity, dict):
        raise ResourceError(f"{where} valueQuantity", "must be an object")
    value = quantity.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ResourceError(f"{where} valueQuantity.value", f"expected a number, found {value!r}")
    comparator = quantity.get("comparator", "")
    if comparator and comparator not in COMPARATORS:
        raise ResourceError(f"{where} valueQuantity.comparator", f"{comparator!r} is not one of < <= > >=")
    unit = _unit_of(quantity)
    if not unit:
        raise ResourceError(f"{where} valueQuantity", f"{value} has no unit")
    factor = k.unit_factor(analyte, unit)
    if factor is None:
        raise ResourceError(
            f"{where} valueQuantity.unit",
            f"unknown unit {unit!r} for {analyte} (expected {k.analytes[analyte].canonical_unit} or a unit convertible to it)",
        )
    low, high = _reference_range(obs, analyte, k)
    specimen = obs.get("specimen")
    performers = [p.get("display") for p in obs.get("performer", []) or [] if isinstance(p, dict)]
    return Measurement(
        analyte=analyte,
        value=float(value) * factor,
        comparator=comparator,
        unit=k.analytes[analyte].canonical_unit,
        original=f"{comparator}{value:g} {unit}",
        time=effective_time(obs, where),
        status=str(status),
        source=ref,
        matched_by=matched_by,
        specimen=specimen.get("reference") if isinstance(specimen, dict) else None,
        lab_flags=_flags(obs),
        ref_low=low,
        ref_high=high,
        code_key=code_key,
        performer=", ".join(p for p in performers if isinstance(p, str) and p.strip()),
    )
