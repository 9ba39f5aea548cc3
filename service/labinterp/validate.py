"""Validation of what labinterp writes, with the fhir.resources R4B models (R4-compatible)."""

from __future__ import annotations

import json
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError


class InvalidOutput(Exception):
    """A composed resource failed validation: a bug in labinterp, never the user's input."""


# labinterp's Device is the same resource in every transaction (one per patient on the per-patient path):
# validated once per distinct content (its canonical JSON), not once per write. Bounded: a handful of rule sets.
_VALID_DEVICES: set[str] = set()


def validate_resource(resource: dict[str, Any]) -> None:
    rtype = resource.get("resourceType", "?")
    key = None
    if rtype == "Device":
        key = json.dumps(resource, sort_keys=True, separators=(",", ":"))
        if key in _VALID_DEVICES:
            return
    try:
        get_fhir_model_class(rtype).model_validate(resource)
    except (ValidationError, KeyError, ValueError) as exc:
        raise InvalidOutput(f"composed {rtype} does not validate as FHIR R4B: {exc}") from exc
    if key is not None:
        if len(_VALID_DEVICES) >= 64:
            _VALID_DEVICES.clear()
        _VALID_DEVICES.add(key)


def validate_bundle(bundle: dict[str, Any]) -> None:
    for entry in bundle.get("entry", []):
        validate_resource(entry["resource"])
    shell = {**bundle, "entry": [{k: v for k, v in e.items() if k != "resource"} for e in bundle.get("entry", [])]}
    validate_resource(shell)
