"""Shared pieces of composed resources: codings, identifiers, the entry a resource is written as."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from labinterp.compose.ids import content_uuid, series_uuid
from labinterp.compose.view import View
from labinterp.extract.facts import FhirTime, Measurement, SourceRef
from labinterp.knowledge import Knowledge


@lru_cache(maxsize=256)  # the run's `now`, on every resource written
def instant(t: datetime) -> str:
    # isoformat pads the year to four digits (strftime's %Y writes 999): FHIR's instant needs YYYY
    return t.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    c = {"system": system, "code": code}
    if display:
        c["display"] = display
    return c


def concept(system: str, code: str, display: str | None = None, text: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"coding": [coding(system, code, display)]}
    if text:
        out["text"] = text
    return out


def ref(source: SourceRef, display: str | None = None) -> dict[str, str]:
    out = {"reference": source.reference}
    if display:
        out["display"] = display
    return out


def effective(time: FhirTime | None) -> dict[str, str]:
    return {"effectiveDateTime": time.text} if time else {}


def status_of(inputs: list[Measurement] | list[Any]) -> str:
    return "preliminary" if any(getattr(m, "preliminary", False) for m in inputs) else "final"


@dataclass
class Written:
    """A resource to write, with the inputs it was derived from; a report also with its view (what it shows,
    built once by its composer), from which its narrative and renderings are made (labinterp.render.report)."""

    kind: str  # "linezolid" | "magnesium" | "renal" | "genotype" | "exposure-risk" | "arrhythmia-risk" | "egfr" | "provenance"
    resource: dict[str, Any]
    uuid: str
    inputs: list[SourceRef] = field(default_factory=list)
    view: View | None = None

    @property
    def full_url(self) -> str:
        return f"urn:uuid:{self.uuid}"


@dataclass
class Context:
    k: Knowledge
    now: datetime
    patient: SourceRef
    # this subject's series identifier values by kind (a Context is one subject's: never shared across subjects)
    _series: dict[tuple[str, str], str] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def systems(self) -> dict[str, str]:
        return self.k.output.systems

    def interpretation(self, code: str) -> dict[str, Any]:
        return concept(self.systems["interpretation"], code, self.k.output.interpretations.get(code))

    def new(self, kind: str, resource: dict[str, Any], inputs: list[SourceRef], view: View | None = None) -> Written:
        """Stamp a resource with its content identifier (the conditional-create key) and its series
        identifier. Resources without Resource.identifier (Provenance) get a deterministic id instead."""
        versions = [s.versioned if s.versioned != s.reference else f"{s.reference}@{s.version}" for s in inputs]
        uid = content_uuid(kind, self.patient.reference, versions, self.k.ruleset_version)
        rtype = resource.pop("resourceType")
        if rtype == "Provenance":
            body = {"resourceType": rtype, "id": deterministic_id(uid), **resource}
        else:
            subject = self.patient.reference
            series = self._series.get((kind, subject))
            if series is None:
                series = self._series[(kind, subject)] = f"{kind}:{series_uuid(kind, subject)}"
            systems = self.k.output.systems
            identifiers = [
                {"system": systems["content_identifier"], "value": f"urn:uuid:{uid}"},
                {"system": systems["series_identifier"], "value": series},
            ]
            body = {"resourceType": rtype, "identifier": identifiers, **resource}
        return Written(kind, body, uid, list(dict.fromkeys(inputs)), view)


def deterministic_id(uid: str) -> str:
    """A client-assigned resource id (letters first, as HAPI requires of client ids)."""
    return f"labinterp-{uid}"
