"""Observation JSON → Measurement: code recognition, status, comparator, unit conversion.

Recognition comes first (by a configured code, else by name on whole words), then the value is read.
An Observation labinterp recognises but cannot use raises ResourceError naming the element, what was
expected and what was found; the caller lists it under "Not used" (or, in strict mode, fails)."""

from __future__ import annotations

import math
import re
from typing import Any

from labinterp.errors import ResourceError
from labinterp.extract.facts import FhirTime, Measurement, SourceRef, shown, shown_unit
from labinterp.extract.fhirtime import parse_fhir_time
from labinterp.knowledge import Knowledge
from labinterp.knowledge.model import Analyte

# FHIR R4 ObservationStatus: what is left out on purpose (listed under "Not used", not a problem)
IGNORED_STATUSES = {
    "entered-in-error": "entered in error",
    "cancelled": "cancelled",
    "registered": "registered, no result yet",
    "unknown": "the sender does not know whether this result is final",
}
USABLE_STATUSES = {"final", "amended", "corrected", "preliminary"}
COMPARATORS = {"<", "<=", ">", ">="}
UCUM = "http://unitsofmeasure.org"
_WORD = re.compile(r"[^\W_]+\*?")
# a value sent as text: "<0.4", "< 0.4 mg/L", ">=48 ug/mL", "12.5 mg/L" (decimal point only: "0,4" is not guessed)
_TEXT_VALUE = re.compile(r"^\s*(<=|>=|<|>|≤|≥)?\s*(\d+(?:\.\d+)?|\.\d+)\s*([^\W\d_][^\s]*|[%\[{][^\s]*)?\s*$")
_TEXT_COMPARATOR = {"≤": "<=", "≥": ">="}


def codings(concept: Any) -> list[dict[str, Any]]:
    """A CodeableConcept's codings. A single coding sent as an object instead of a list is read as one coding
    (lenient: it says what it is as plainly as a list of one would)."""
    if concept.__class__ is not dict and not isinstance(concept, dict):
        return []
    coding = concept.get("coding")
    if coding.__class__ is list:  # the usual shape: a list of objects, returned as it is (callers only read it)
        for c in coding:
            if c.__class__ is not dict and not isinstance(c, dict):
                return [c for c in coding if isinstance(c, dict)]
        found: list[dict[str, Any]] = coding
        return found
    if isinstance(coding, dict):
        return [coding]
    return [c for c in coding or [] if isinstance(c, dict)] if isinstance(coding, list) else []


def concept_text(concept: Any) -> str:
    """All human-readable words of a CodeableConcept: its text and its codings' displays."""
    if not isinstance(concept, dict):
        return ""
    parts = [concept.get("text") or ""]
    for c in codings(concept):
        parts.append(c.get("display") or "")
    return " ".join([p for p in parts if p.__class__ is str or isinstance(p, str)])


def words(text: str) -> tuple[str, ...]:
    """Lower-case words of a text: letters and digits; anything else separates ("E-test" → e, test)."""
    return tuple(w.lower() for w in _WORD.findall(text))


def has_phrase(tokens: tuple[str, ...], phrase: str) -> bool:
    """True when the words of `phrase` occur in sequence in `tokens`. A phrase word ending in "*" matches any
    word beginning with it ("susceptib*" → susceptibility, susceptible); other words match whole words only."""
    wanted = words(phrase)
    if not wanted:
        return False
    starts = range(len(tokens) - len(wanted) + 1)
    return any(all(_word_matches(tokens[i + j], w) for j, w in enumerate(wanted)) for i in starts)


def _word_matches(token: str, pattern: str) -> bool:
    return token.startswith(pattern[:-1]) if pattern.endswith("*") else token == pattern


def matches_name(tokens: tuple[str, ...], spec: Analyte) -> bool:
    if not spec.name_match or not any(has_phrase(tokens, p) for p in spec.name_match):
        return False
    if spec.name_require and not any(has_phrase(tokens, p) for p in spec.name_require):
        return False
    return not any(has_phrase(tokens, p) for p in spec.name_exclude)


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
    """(analyte, matched_by, "system|code") for a lab Observation labinterp reads, else None.

    By a configured code first; else by name (code text and displays), on whole words, whatever its value:
    a recognised Observation whose value cannot be used is listed, never dropped silently. When several
    analytes match by name (none should: their words exclude each other), none is chosen."""
    for c in codings(obs.get("code")):
        analyte = k.analyte_for(c.get("system"), c.get("code"))
        if analyte:
            return analyte, "code", f"{c.get('system')}|{c.get('code')}"
    tokens = words(concept_text(obs.get("code")))
    found = [name for name, spec in k.analytes.items() if matches_name(tokens, spec)]
    if len(found) == 1:
        return found[0], "name", ""
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
            if isinstance(q, dict) and isinstance(q.get("value"), int | float) and not isinstance(q.get("value"), bool):
                unit = _unit_of(q)
                factor = k.unit_factor(analyte, unit) if unit else None
                bounds.append(q["value"] * factor if factor is not None else None)
            else:
                bounds.append(None)
        if bounds != [None, None]:
            return bounds[0], bounds[1]
    return None, None


def data_absent(obs: dict[str, Any]) -> str | None:
    """The dataAbsentReason as a reader sees it ("sample haemolysed", "not-performed"); None when absent."""
    reason = obs.get("dataAbsentReason")
    if reason is None:
        return None
    text = reason.get("text") if isinstance(reason, dict) else None
    if isinstance(text, str) and text.strip():
        return text.strip()
    for c in codings(reason):
        for key in ("display", "code"):
            if isinstance(c.get(key), str) and c[key].strip():
                return str(c[key]).strip()
    return "no reason given"


def _value_kind(obs: dict[str, Any]) -> str | None:
    for key in obs:
        if key.startswith("value"):
            return key
    return None


def _read_value(obs: dict[str, Any], where: str, analyte: str) -> tuple[float, str, str | None, str]:
    """(value, comparator, unit or None, element) from valueQuantity, or from a valueString such as "<0.4 mg/L"."""
    kind = _value_kind(obs)
    if kind == "valueQuantity":
        quantity = obs["valueQuantity"]
        if not isinstance(quantity, dict):
            raise ResourceError(f"{where} valueQuantity", "must be an object")
        value = quantity.get("value")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ResourceError(f"{where} valueQuantity.value", f"expected a number, found {shown(value)}")
        comparator = quantity.get("comparator", "") or ""
        if not isinstance(comparator, str) or (comparator and comparator not in COMPARATORS):
            raise ResourceError(f"{where} valueQuantity.comparator", f"{shown(comparator)} is not one of < <= > >=")
        try:
            number = float(value)
        except OverflowError:
            raise ResourceError(
                f"{where} valueQuantity.value", f"a number too large to be a {analyte} result (expected a finite number ≥ 0)"
            ) from None
        return number, comparator, _unit_of(quantity), "valueQuantity"
    if kind == "valueString":
        text = obs["valueString"]
        m = _TEXT_VALUE.match(text) if isinstance(text, str) else None
        if m is None:
            raise ResourceError(
                f"{where} valueString", f"expected a number with a unit for {analyte} (e.g. '<0.4 mg/L'), found {shown(text)}"
            )
        comparator = _TEXT_COMPARATOR.get(m[1] or "", m[1] or "")
        return float(m[2]), comparator, m[3], "valueString"
    if kind is None:
        raise ResourceError(f"{where} value[x]", f"no value and no dataAbsentReason: expected a quantity for {analyte}")
    if kind == "valueCodeableConcept":
        coded = concept_text(obs[kind]) or ", ".join(str(c.get("code")) for c in codings(obs[kind]))
        found = f"valueCodeableConcept {shown(coded)}" if coded else kind
        raise ResourceError(f"{where} value[x]", f"expected valueQuantity for {analyte}, found {found}")
    raise ResourceError(f"{where} value[x]", f"expected valueQuantity for {analyte}, found {kind}")


def _unknown_unit(unit: str) -> str:
    """ "unknown unit 'mg/furlong'"; a unit that is not a short unit-like token is not repeated (free text there
    can be anything, a name too)."""
    quoted = shown_unit(unit)
    return f"unknown unit {quoted}" if quoted.startswith("'") else "unknown unit (not a unit token: not shown)"


def extract_measurement(
    obs: dict[str, Any], ref: SourceRef, analyte: str, matched_by: str, code_key: str, k: Knowledge
) -> Measurement | None:
    """A Measurement, or None when the Observation carries no value (dataAbsentReason). Raises on broken input."""
    where = ref.reference
    status = obs.get("status")
    kind = _value_kind(obs)
    if data_absent(obs) is not None and (
        kind is None or (kind == "valueQuantity" and isinstance(obs[kind], dict) and obs[kind].get("value") is None)
    ):
        return None  # "no value, and here is why": listed as Ignored with its reason
    value, comparator, unit, element = _read_value(obs, where, analyte)
    if not math.isfinite(value) or value < 0:
        raise ResourceError(f"{where} {element}", f"{shown(value)} is not a {analyte} result (expected a finite number ≥ 0)")
    if not unit:
        raise ResourceError(
            f"{where} {element}", f"{comparator}{value:g} has no unit: cannot tell the {analyte} result without one"
        )
    factor = k.unit_factor(analyte, unit)
    if factor is None:
        spec = k.analytes[analyte]
        how = "; recognised by its name" if matched_by == "name" else ""
        raise ResourceError(
            f"{where} {element}.unit" if element == "valueQuantity" else f"{where} {element}",
            f"{_unknown_unit(unit)} for {analyte} (expected {spec.canonical_unit} or a unit convertible to it){how}",
        )
    low, high = _reference_range(obs, analyte, k)
    specimen = obs.get("specimen")
    performers = [p.get("display") for p in obs.get("performer", []) or [] if isinstance(p, dict)]
    return Measurement(
        analyte=analyte,
        value=value * factor,
        comparator=comparator,
        unit=k.analytes[analyte].canonical_unit,
        original=f"{comparator}{value:g} {unit}",
        reported=(float(value), unit),
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
