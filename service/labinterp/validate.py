"""Validation of what labinterp writes, with the fhir.resources R4B models (R4-compatible)."""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError


class InvalidOutput(Exception):
    """A composed resource failed validation: a bug in labinterp, never the user's input."""


def validate_resource(resource: dict[str, Any]) -> None:
    rtype = resource.get("resourceType", "?")
    try:
        get_fhir_model_class(rtype).model_validate(resource)
    except (ValidationError, KeyError, ValueError) as exc:
        raise InvalidOutput(f"composed {rtype} does not validate as FHIR R4B: {exc}") from exc


def validate_bundle(bundle: dict[str, Any]) -> None:
    for entry in bundle.get("entry", []):
        validate_resource(entry["resource"])
    shell = {**bundle, "entry": [{k: v for k, v in e.items() if k != "resource"} for e in bundle.get("entry", [])]}
    validate_resource(shell)
