"""Rest-hook notifications, read without I/O: the resource a notification carries (the focus of a notification
Bundle, or the resource itself) and the patient it is about. Shapes that are wrong are BundleErrors naming the
element (the service answers 422); a notification about no patient is None."""

from __future__ import annotations

from typing import Any

from labinterp.errors import BundleError
from labinterp.fhir.search import is_fhir_id

NOT_FOCUS = (None, "Parameters", "SubscriptionStatus")  # a notification Bundle's bookkeeping entries


def carried_resource(body: Any) -> dict[str, Any] | None:
    """The resource a notification carries: a notification Bundle's focus, or the body itself."""
    if not (isinstance(body, dict) and body.get("resourceType") == "Bundle"):
        return body if isinstance(body, dict) else None
    entries = body.get("entry")
    if entries is not None and not isinstance(entries, list):
        raise BundleError("Bundle.entry", "must be a list")
    for i, e in enumerate(entries or []):
        if not isinstance(e, dict):
            raise BundleError(f"Bundle.entry[{i}]", "an entry must be a JSON object")
        r = e.get("resource")
        if r is not None and not isinstance(r, dict):
            raise BundleError(f"Bundle.entry[{i}].resource", "expected a FHIR resource (a JSON object)")
        if isinstance(r, dict) and r.get("resourceType") not in NOT_FOCUS:
            return r
    return None


def check_path(rtype: str, rid: str) -> None:
    """`/hook/{type}/{id}`: both must be what FHIR allows before anything is read with them."""
    if not rtype.isalpha() or not is_fhir_id(rid):
        raise BundleError("request path", "expected /hook/{resource type}/{FHIR resource id}")


def patient_of(resource: dict[str, Any]) -> str | None:
    """The id of the patient a resource is about (a Patient, or anything whose subject is a Patient)."""
    kind = resource.get("resourceType")
    if kind == "Patient":
        pid = resource.get("id")
        if pid is None:
            return None
        if not is_fhir_id(pid):
            raise BundleError("Patient.id", "is not a FHIR resource id")
        return str(pid)
    subject = resource.get("subject")
    if subject is None:
        return None
    label = f"{kind if isinstance(kind, str) and kind.isalpha() else 'resource'}.subject"
    if not isinstance(subject, dict):
        raise BundleError(label, 'expected a Reference object, e.g. {"reference": "Patient/id"}')
    ref = subject.get("reference")
    if ref is None:
        return None
    if not isinstance(ref, str):
        raise BundleError(f"{label}.reference", 'expected a reference text, e.g. "Patient/id"')
    if not ref.startswith("Patient/"):
        return None
    pid = ref.split("/")[1]  # Patient/{id}, or Patient/{id}/_history/{version}
    if not is_fhir_id(pid):
        raise BundleError(f"{label}.reference", "is not Patient/ followed by a FHIR resource id")
    return pid
