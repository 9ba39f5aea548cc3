"""FHIR date and dateTime parsing. Malformed values are errors naming where they were found."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

from labinterp.errors import ResourceError
from labinterp.extract.facts import FhirTime, kind_of, shown

_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")
_DATETIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$")
_NO_ZONE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")
# Parsed values by their text: the same dates and times recur across resources and patients (a FhirTime is
# immutable). Bounded: emptied when full.
_PARSED: dict[str, FhirTime] = {}
_PARSED_LIMIT = 50_000


def parse_fhir_time(text: object, where: str) -> FhirTime:
    if not isinstance(text, str):
        raise ResourceError(where, f"expected a FHIR date or dateTime string, found {kind_of(text)}")
    hit = _PARSED.get(text)
    if hit is not None:
        return hit
    parsed = _parse(text, where)
    if len(_PARSED) >= _PARSED_LIMIT:
        _PARSED.clear()
    _PARSED[text] = parsed
    return parsed


def _parse(text: str, where: str) -> FhirTime:
    m = _DATE.match(text)
    try:
        if m:
            year, month, day = int(m[1]), int(m[2] or 1), int(m[3] or 1)
            precision = "day" if m[3] else "month" if m[2] else "year"
            return FhirTime(datetime(year, month, day, tzinfo=UTC), precision, text)
        if _DATETIME.match(text):
            text_iso = text[:-1] + "+00:00" if text.endswith("Z") else text
            return FhirTime(datetime.fromisoformat(text_iso).astimezone(UTC), "time", text)
    except ValueError as exc:
        raise ResourceError(where, f"{shown(text)} is not a valid date: {exc}") from exc
    if _NO_ZONE.match(text):
        raise ResourceError(where, f"{shown(text)} has a time but no time zone (FHIR requires one)")
    raise ResourceError(where, f"{shown(text)} is not a FHIR date or dateTime")


def parse_birth_date(text: object, where: str) -> tuple[date, str]:
    t = parse_fhir_time(text, where)
    if t.has_time:
        raise ResourceError(where, "a birthDate must be a date without time")
    return t.start.date(), t.precision


def parse_now(text: str) -> datetime:
    """The --now option: an ISO-8601 instant with a time zone (a date alone means its midnight UTC)."""
    t = parse_fhir_time(text.strip(), "--now")
    return t.start
