"""Pure builders and parsers: the one batch Bundle that reads everything labinterp needs about a
patient, and its batch-response turned back into resources."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from labinterp.errors import FhirError
from labinterp.fhir.retry import error_for

# FHIR's id rule (R4 "id" datatype): every id labinterp puts into a URL is checked with this, one place
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}\Z")


def is_fhir_id(value: object) -> bool:
    """FHIR's id rule; "." and ".." (which the rule admits) are refused too: in a URL they are path steps."""
    return isinstance(value, str) and FHIR_ID.fullmatch(value) is not None and value.strip(".") != ""


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
    # search results that are not FHIR resources (no resourceType): where they were, for a warning; never read
    unreadable: list[str] = field(default_factory=list)


def _status(entry: Any, url: str, base_url: str) -> int:
    """An entry's HTTP status; a FhirError (502: the server's fault) when the entry is not a batch-response entry."""
    response = entry.get("response") if isinstance(entry, dict) else None
    if not isinstance(response, dict):
        raise FhirError("POST", base_url, None, f"the batch-response entry for {_kind_of(url)} is not an entry with a response")
    text = str(response.get("status", "0")).strip()
    head = text.split(" ", 1)[0]
    return int(head) if head.isdigit() and len(head) == 3 else 0


def _kind_of(url: str) -> str:
    """The resource type a relative URL reads (never the patient's id): "Observation search"."""
    rtype = url.split("?")[0].split("/")[0]
    return f"{rtype} search" if "?" in url else f"the {rtype} read"


def parse_batch_response(body: Any, urls: list[str], base_url: str) -> BatchResult:
    """Resources from each entry (searchsets unpacked), and the `next` links still to follow.
    An entry that failed raises the FhirError it stands for, naming its URL."""
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle" or body.get("type") != "batch-response":
        raise FhirError("POST", base_url, None, "the server did not answer the batch with a batch-response Bundle")
    entries = body.get("entry", []) or []
    if not isinstance(entries, list):
        raise FhirError("POST", base_url, None, "the batch-response's entry is not a list")
    if len(entries) != len(urls):
        raise FhirError("POST", base_url, None, f"batch-response has {len(entries)} entries for {len(urls)} requests")
    result = BatchResult()
    for url, entry in zip(urls, entries, strict=True):
        status = _status(entry, url, base_url)
        if status >= 400 or status == 0:
            raise error_for("GET", f"{base_url}/{url}", status, entry["response"].get("outcome"), "batch entry failed")
        resource = entry.get("resource")
        if not isinstance(resource, dict):
            continue
        if resource.get("resourceType") == "Bundle":
            page = unpack_searchset(resource, _kind_of(url))
            result.resources += page.resources
            result.next_links += page.next_links
            result.unreadable += page.unreadable
        elif isinstance(resource.get("resourceType"), str) and resource["resourceType"]:
            result.resources.append(resource)
        else:
            result.unreadable.append(f"{_kind_of(url)}: resource")
    return result


def unpack_searchset(bundle: Any, label: str = "search page") -> BatchResult:
    """A searchset's resources and `next` links. Odd shapes the server may send are read as leniently as is safe:
    `entry` not a list (an object, say) is no results; entries and links that are not objects are skipped; a
    result without resourceType is not read (listed in `unreadable`). A page that is not a Bundle is a FhirError."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise FhirError("GET", label, None, "the server answered a search with something that is not a Bundle")
    page = BatchResult()
    entries = bundle.get("entry")
    for i, e in enumerate(entries if isinstance(entries, list) else []):
        resource = e.get("resource") if isinstance(e, dict) else None
        if not isinstance(resource, dict):
            continue
        rtype = resource.get("resourceType")
        if not isinstance(rtype, str) or not rtype:
            page.unreadable.append(f"{label}: entry[{i}].resource")
        elif rtype != "OperationOutcome":
            page.resources.append(resource)
    links = bundle.get("link")
    page.next_links = [
        link["url"]
        for link in (links if isinstance(links, list) else [])
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str) and link["url"]
    ]
    return page


def as_collection(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """A collection Bundle of the resources read (deduplicated by type and id), for the extract layer."""
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for r in resources:
        seen.setdefault((str(r.get("resourceType", "")), str(r.get("id", ""))), r)
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in seen.values()]}
