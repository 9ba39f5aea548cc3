"""Pure builders and parsers: the one batch Bundle that reads everything labinterp needs about a
patient, and its batch-response turned back into resources."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from service.errors import FhirError
from service.fhir.retry import error_for

MEDICATION_TYPES = ("MedicationRequest", "MedicationStatement", "MedicationAdministration")
WRITTEN_TYPES = ("DiagnosticReport", "RiskAssessment")


def query(rtype: str, params: list[tuple[str, str]]) -> str:
    return f"{rtype}?{urlencode(params, quote_via=quote, safe='/')}"


def patient_searches(patient_id: str, series_system: str, page_size: int) -> list[str]:
    """Relative URLs of every read for one patient: the Patient, its Observations and medications (with
    the Medications they reference), and what labinterp wrote for it before (by series identifier)."""
    subject = f"Patient/{patient_id}"
    count = ("_count", str(page_size))
    urls = [f"Patient/{quote(patient_id, safe='')}", query("Observation", [("subject", subject), count])]
    urls += [query(t, [("subject", subject), ("_include", f"{t}:medication"), count]) for t in MEDICATION_TYPES]
    urls += [query(t, [("subject", subject), ("identifier", f"{series_system}|"), count]) for t in WRITTEN_TYPES]
    return urls


def batch_of(urls: list[str]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "batch", "entry": [{"request": {"method": "GET", "url": u}} for u in urls]}


@dataclass
class BatchResult:
    resources: list[dict[str, Any]] = field(default_factory=list)
    next_links: list[str] = field(default_factory=list)


def _status(entry: dict[str, Any]) -> int:
    text = str((entry.get("response") or {}).get("status", "0")).strip()
    head = text.split(" ", 1)[0]
    return int(head) if head.isdigit() else 0


def parse_batch_response(body: Any, urls: list[str], base_url: str) -> BatchResult:
    """Resources from each entry (searchsets unpacked), and the `next` links still to follow.
    An entry that failed raises the FhirError it stands for, naming its URL."""
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle" or body.get("type") != "batch-response":
        raise FhirError("POST", base_url, None, "the server did not answer the batch with a batch-response Bundle")
    entries = body.get("entry", []) or []
    if len(entries) != len(urls):
        raise FhirError("POST", base_url, None, f"batch-response has {len(entries)} entries for {len(urls)} requests")
    result = BatchResult()
    for url, entry in zip(urls, entries, strict=True):
        status = _status(entry)
        if status >= 400 or status == 0:
            raise error_for(
                "GET", f"{base_url}/{url}", status, (entry.get("response") or {}).get("outcome"), "batch entry failed"
            )
        resource = entry.get("resource")
        if not isinstance(resource, dict):
            continue
        if resource.get("resourceType") == "Bundle":
            page = unpack_searchset(resource)
            result.resources += page.resources
            result.next_links += page.next_links
        else:
            result.resources.append(resource)
    return result


def unpack_searchset(bundle: dict[str, Any]) -> BatchResult:
    page = BatchResult()
    for e in bundle.get("entry", []) or []:
        if (
            isinstance(e, dict)
            and isinstance(e.get("resource"), dict)
            and e["resource"].get("resourceType") != "OperationOutcome"
        ):
            page.resources.append(e["resource"])
    page.next_links = [link["url"] for link in bundle.get("link", []) or [] if link.get("relation") == "next" and link.get("url")]
    return page


def as_collection(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """A collection Bundle of the resources read (deduplicated by type and id), for the extract layer."""
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for r in resources:
        seen.setdefault((r.get("resourceType", ""), str(r.get("id", ""))), r)
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in seen.values()]}
