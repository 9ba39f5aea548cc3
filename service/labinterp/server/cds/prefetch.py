"""What a card needs, from the call's prefetch, and what the prefetch lacks from the client's FHIR server.

Each of the service's prefetch keys is checked against its template: `patient` must be the Patient of
`context.patientId`; a search key a searchset Bundle (or null: nothing found) of the template's resource type, every
resource about that patient (a resource of another patient is a 400: never mixed into this patient's cards), and
without a `next` link (a partial result counts as missing). A key that is absent or partial is fetched from
`fhirServer` with `fhirAuthorization.access_token` as its Bearer token, but only when that server is on the
allow-list (LABINTERP_CDS_FHIR_SERVERS): another server is never contacted. The URL requested is the URL compared
(call.py normalizes it). A server that fails, or a request the HTTP library refuses, is a 412, never a 500. When a key can be had neither way the
call fails with 412 (CDS Hooks 2.0). The token, patient ids and names are never logged."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import requests

from labinterp.errors import FhirNotFound, LabinterpError
from labinterp.fhir.client import FhirClient
from labinterp.fhir.retry import RetryPolicy
from labinterp.server.cds.call import CallError, HookCall
from labinterp.server.cds.catalog import PATIENT, CdsService
from labinterp.server.cds.config import normalized_url

log = logging.getLogger("labinterp.cds.prefetch")

ClientFactory = Callable[[str, str | None], FhirClient]


class PreconditionFailed(Exception):
    """412: the data a card needs can be had neither from the prefetch nor from an allowed FHIR server."""


def default_client(base_url: str, token: str | None) -> FhirClient:
    """The EHR's FHIR server with the EHR's token: one quick retry, short timeouts, so a failing server ends in a
    412 while the EHR is still waiting for the cards (never labinterp's own FHIR credentials)."""
    return FhirClient(base_url, token=token, timeout=(3.0, 10.0), retry=RetryPolicy(attempts=2, base_delay=0.2, max_delay=1.0))


def fill(template: str, patient_id: str) -> str:
    return template.replace(PATIENT, quote(patient_id, safe=""))


def resource_type_of(template: str) -> str:
    return template.split("?", 1)[0].split("/", 1)[0]


def subject_id(resource: dict[str, Any]) -> str | None:
    """The Patient id a resource's subject (or R3-style patient) names; None when it names none."""
    subject = resource.get("subject") or resource.get("patient")
    ref = subject.get("reference") if isinstance(subject, dict) else None
    if not isinstance(ref, str):
        return None
    parts = ref.split("/_history/")[0].rstrip("/").split("/")
    return parts[-1] if len(parts) >= 2 and parts[-2] == "Patient" else None


def _about_other(resource: dict[str, Any], patient_id: str) -> bool:
    who = subject_id(resource)
    return who is not None and who != patient_id


def _usable(key: str, template: str, value: dict[str, Any] | None, call: HookCall) -> list[dict[str, Any]] | None:
    """The resources a prefetch value gives; None when it must be fetched (a search with more pages)."""
    rtype = resource_type_of(template)
    where = f"prefetch.{key}"
    if "?" not in template:  # a read: the Patient
        if value is None:
            raise PreconditionFailed(f"{where} is null: the client has no {rtype} for context.patientId")
        if value.get("resourceType") != rtype or value.get("id") != call.patient_id:
            raise CallError(where, f"expected the {rtype} of context.patientId")
        return [value]
    if value is None:
        return []  # nothing found
    if value.get("resourceType") != "Bundle":
        raise CallError(where, f"expected a searchset Bundle of {rtype} (or null)")
    links = value.get("link")
    if isinstance(links, list) and any(isinstance(x, dict) and x.get("relation") == "next" for x in links):
        return None  # one page of several: the rest is not in the call
    out = []
    entries = value.get("entry", [])
    for n, e in enumerate(entries if isinstance(entries, list) else []):
        resource = e.get("resource") if isinstance(e, dict) else None
        if not isinstance(resource, dict) or resource.get("resourceType") == "OperationOutcome":
            continue
        if resource.get("resourceType") not in (rtype, "Medication"):
            raise CallError(f"{where}.entry[{n}].resource", f"expected a {rtype}")
        if _about_other(resource, call.patient_id):
            raise CallError(f"{where}.entry[{n}].resource", "is about another patient than context.patientId")
        out.append(resource)
    return out


def gather(
    call: HookCall, service: CdsService, allowed: tuple[str, ...], client_factory: ClientFactory = default_client
) -> tuple[list[dict[str, Any]], list[str]]:
    """Every resource the service's templates ask for (the Patient first), and the keys that were fetched."""
    resources: list[dict[str, Any]] = []
    missing: list[str] = []
    for key, template in service.prefetch.items():
        got = _usable(key, template, call.prefetch[key], call) if key in call.prefetch else None
        if got is None:
            missing.append(key)
        else:
            resources += got
    if not missing:
        return resources, []
    names = ", ".join(missing)
    if call.fhir_server is None:
        raise PreconditionFailed(f"prefetch lacks {names}, and the call names no fhirServer to fetch them from")
    server = normalized_url(call.fhir_server)  # compared and requested: the same URL
    if server not in allowed:
        log.warning(
            "CDS call: fhirServer is not on LABINTERP_CDS_FHIR_SERVERS; not contacted (%d prefetch keys missing)", len(missing)
        )
        raise PreconditionFailed(
            f"prefetch lacks {names}, and fhirServer is not one of the FHIR servers this service may contact "
            "(LABINTERP_CDS_FHIR_SERVERS): it was not contacted"
        )
    try:
        client = client_factory(server, call.access_token)
    except (LabinterpError, ValueError) as exc:  # a URL or token the HTTP client cannot use (parse_call refuses those)
        log.warning("CDS call: no FHIR client for the fhirServer (%s)", type(exc).__name__)
        raise PreconditionFailed(f"prefetch lacks {names}, and fhirServer cannot be requested") from None
    for key in missing:
        resources += _fetch(client, key, service.prefetch[key], call.patient_id)
    log.info("CDS call: %d prefetch keys fetched from the FHIR server", len(missing))
    return resources, missing


def assemble(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """A collection Bundle for the pipeline: one copy of each resource with an id (prefetch keys overlap: `labs` and
    `laboratory` can both hold a magnesium), every resource without one (the extraction names those it cannot use)."""
    seen: set[tuple[str, str]] = set()
    entries = []
    for r in resources:
        rid = r.get("id")
        if isinstance(rid, str) and rid:
            key = (str(r.get("resourceType")), rid)
            if key in seen:
                continue
            seen.add(key)
        entries.append({"resource": r})
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def _fetch(client: FhirClient, key: str, template: str, patient_id: str) -> list[dict[str, Any]]:
    rtype = resource_type_of(template)
    try:
        if "?" not in template:
            found = client.read(rtype, patient_id)  # checked as a FHIR id by read()
            if not isinstance(found, dict) or found.get("resourceType") != rtype:
                raise PreconditionFailed(f"{key}: the FHIR server did not answer with a {rtype}")
            return [found]
        results = client.search(fill(template, patient_id))
    except FhirNotFound:
        raise PreconditionFailed(f"{key}: the FHIR server has no such {rtype}") from None
    except LabinterpError as exc:
        status = getattr(exc, "status", None)
        shown = f"HTTP {status}" if status is not None else "no answer"
        log.warning("CDS call: fetching prefetch key %s failed (%s)", key, shown)
        raise PreconditionFailed(f"{key}: the FHIR server could not be read ({shown})") from None
    except (ValueError, requests.RequestException) as exc:  # the HTTP library refused the request (never a 500)
        log.warning("CDS call: fetching prefetch key %s failed (%s)", key, type(exc).__name__)
        raise PreconditionFailed(f"{key}: the FHIR server could not be read (the request could not be sent)") from None
    kept = [
        r
        for r in results
        if isinstance(r, dict) and r.get("resourceType") in (rtype, "Medication") and not _about_other(r, patient_id)
    ]
    if len(kept) < len(results):
        log.warning("CDS call: %d resources of prefetch key %s left out (another type or patient)", len(results) - len(kept), key)
    return kept
