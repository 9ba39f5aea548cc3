"""Pure builders and parsers: every path and query labinterp sends to a FHIR server (built here and nowhere else),
the one batch Bundle that reads everything labinterp needs about a patient, and its batch-response turned back into
resources.

URLs are built in one place: a resource type must look like one, an id must pass FHIR's id rule (`is_fhir_id`) before
it reaches a URL, each path segment is percent-encoded with `quote(..., safe="")`, and a query is urlencoded from
(name, value) pairs, so `x?_count=100000&_include=*` stays one value and `../../metadata` never becomes a path."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from labinterp.errors import FhirError, InputError
from labinterp.fhir.retry import error_for

# FHIR's id rule (R4 "id" datatype): every id labinterp puts into a URL is checked with this, one place
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}\Z")
RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]{1,63}")
# a search parameter's name with its modifiers and chains: _count, subject:Patient, code:text, _has:Observation:patient:code
PARAMETER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-.:]{0,127}")
DEFAULT_PORTS = {"http": 80, "https": 443}


def is_fhir_id(value: object) -> bool:
    """FHIR's id rule; "." and ".." (which the rule admits) are refused too: in a URL they are path steps."""
    return isinstance(value, str) and FHIR_ID.fullmatch(value) is not None and value.strip(".") != ""


MEDICATION_TYPES = ("MedicationRequest", "MedicationStatement", "MedicationAdministration")
WRITTEN_TYPES = ("DiagnosticReport", "RiskAssessment")
# what the write plan reads of labinterp's earlier reports (id and meta always come): not their narratives and PDFs,
# which are most of their size, so a replay reads a small fraction of what was written
WRITTEN_ELEMENTS = ("_elements", "identifier,subject")

Params = Iterable[tuple[str, str | int]]


def checked_type(rtype: object) -> str:
    """A resource type as a URL may carry it; InputError otherwise (never quoted: it may be anything)."""
    if not isinstance(rtype, str) or not RESOURCE_TYPE.fullmatch(rtype):
        raise InputError("resource type", "is not a FHIR resource type (a capitalized name of letters)")
    return rtype


def checked_id(rtype: str, rid: object) -> str:
    """An id that passes FHIR's id rule; InputError naming the element otherwise (the value is not quoted: it may be
    a patient's identifier or anything a caller sent)."""
    if not is_fhir_id(rid):
        raise InputError(f"{rtype}.id", "is not a FHIR resource id (1-64 of A-Z a-z 0-9 - and .)")
    return str(rid)


def resource_path(rtype: object, rid: object = None, *more: str) -> str:
    """`Patient`, `Patient/p1`, `Patient/p1/_history/3`: the type and id checked (a resource's own `resourceType` and
    `id` may be passed as they are), every segment percent-encoded."""
    segments = [checked_type(rtype)]
    if rid is not None:
        segments.append(checked_id(segments[0], rid))
    segments += more
    return "/".join(quote(s, safe="") for s in segments)


def reference(rtype: str, rid: str) -> str:
    """A literal reference (`Patient/p1`) as a search value, the id checked; the query encoding does the rest."""
    return f"{checked_type(rtype)}/{checked_id(rtype, rid)}"


def encode_params(params: Params) -> str:
    """A query string from (name, value) pairs: names checked, names and values percent-encoded (`/` kept readable)."""
    pairs: list[tuple[str, str]] = []
    for name, value in params:
        if not isinstance(name, str) or not PARAMETER_NAME.fullmatch(name):
            raise InputError("search parameter", "is not a FHIR search parameter name")
        pairs.append((name, str(value)))
    return urlencode(pairs, quote_via=quote, safe="/")


def query(rtype: str, params: Params) -> str:
    """A relative search URL, `Observation?subject=Patient%2Fp1&_count=500` (with `/` kept: `Patient/p1`)."""
    encoded = encode_params(params)
    return f"{resource_path(rtype)}?{encoded}" if encoded else resource_path(rtype)


def canonical_search(relative: str) -> str:
    """A relative search URL given as one string (`Patient?_count=500`, or what `query` built) parsed and built
    again by `query`: what reaches the server is always the builder's. A string that does not parse is refused.
    Values must come encoded: a caller that pastes an unencoded value into such a string has already lost its
    boundaries, so callers should pass (name, value) pairs (`FhirClient.search(rtype, params)`)."""
    rtype, _, text = relative.partition("?")
    try:
        params = parse_qsl(text, keep_blank_values=True, strict_parsing=True) if text else []
    except ValueError:
        raise InputError("search", "is not a search URL (Type?name=value&...)") from None
    return query(rtype, params)


def base_parts(base_url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of a FHIR base URL; InputError for one that is no http(s) URL with a host, or
    that carries a user or password (never quoted)."""
    try:
        parts = urlsplit(base_url)
        port = parts.port
    except ValueError:
        raise InputError("FHIR base URL", "is not a URL") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        raise InputError("FHIR base URL", "must be an http(s) URL with a host, e.g. https://fhir.example.org/fhir")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise InputError("FHIR base URL", "must not carry a user or password (configure the FHIR server's authentication)")
    if parts.query or parts.fragment:
        raise InputError("FHIR base URL", "must not carry a query or fragment")
    return scheme, parts.hostname, port or DEFAULT_PORTS[scheme], parts.path.rstrip("/")


def within_base(url: str, base_url: str) -> bool:
    """Whether an absolute URL is inside a FHIR base: the same scheme, host and port, a path at or under the base's
    path, no path step "." or ".." (encoded or not) and no user or password. What the server links to (a Bundle's
    `next`) is followed, and credentials are sent, only when this holds."""
    scheme, host, port, path = base_parts(base_url)
    try:
        parts = urlsplit(url)
        their_port = parts.port
    except ValueError:
        return False
    their_scheme = parts.scheme.lower()
    if their_scheme != scheme or (parts.hostname or "") != host or (their_port or DEFAULT_PORTS.get(their_scheme)) != port:
        return False
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        return False
    if any(unquote(segment) in (".", "..") for segment in parts.path.split("/")):
        return False
    return parts.path.rstrip("/") == path or parts.path.startswith(path + "/")


def relative_path(path: str) -> str:
    """A relative path for [base]/path as the builders made it: no scheme or host, no path step "." or ".." (encoded
    or not), no fragment. InputError otherwise (a caller's path is never quoted)."""
    parts = urlsplit(path)
    if parts.scheme or parts.netloc or parts.fragment or "#" in path:
        raise InputError("FHIR request path", "is not a path relative to the FHIR base")
    if any(unquote(segment) in (".", "..") for segment in parts.path.lstrip("/").split("/")):
        raise InputError("FHIR request path", 'has a path step "." or ".."')
    return path.lstrip("/")


def patient_searches(patient_id: str, series_system: str, page_size: int, device: tuple[str, str] | None = None) -> list[str]:
    """Relative URLs of every read for one patient: the Patient, its Observations and medications (with
    the Medications they reference), what labinterp wrote for it before (by series identifier), and, given (system,
    value), the Device that stands for labinterp (so that the write references it rather than creating it)."""
    subject = reference("Patient", patient_id)  # the id checked before it reaches any URL
    count = ("_count", str(page_size))
    urls = [resource_path("Patient", patient_id), query("Observation", [("subject", subject), count])]
    urls += [query(t, [("subject", subject), ("_include", f"{t}:medication"), count]) for t in MEDICATION_TYPES]
    urls += [
        query(t, [("subject", subject), ("identifier", f"{series_system}|"), WRITTEN_ELEMENTS, count]) for t in WRITTEN_TYPES
    ]
    if device is not None:
        urls.append(_device_search(device))
    return urls


def _device_search(device: tuple[str, str]) -> str:
    return query("Device", [("identifier", f"{device[0]}|{device[1]}")])


def chunk_searches(
    patient_ids: list[str], series_system: str, page_size: int, device: tuple[str, str] | None = None
) -> list[str]:
    """Relative URLs of every read for a chunk of patients at once: the same searches as `patient_searches`, each
    across all the chunk's patients (`subject=Patient/a,Patient/b,...`; the batch carries them in its body, so no URL
    length limit applies), and, given (system, value), the Device that stands for labinterp, so a run reuses it."""
    if not patient_ids:
        raise InputError("patients", "a chunk needs at least one patient")
    subjects = ",".join(reference("Patient", pid) for pid in patient_ids)  # every id checked before it reaches a URL
    count = ("_count", str(page_size))
    urls = [query("Patient", [("_id", ",".join(patient_ids)), count])]
    urls += [query("Observation", [("subject", subjects), count])]
    urls += [query(t, [("subject", subjects), ("_include", f"{t}:medication"), count]) for t in MEDICATION_TYPES]
    urls += [
        query(t, [("subject", subjects), ("identifier", f"{series_system}|"), WRITTEN_ELEMENTS, count]) for t in WRITTEN_TYPES
    ]
    if device is not None:
        urls.append(_device_search(device))
    return urls


def batch_searches(substance_ids: list[str], series_system: str, series_values: list[str], page_size: int) -> list[str]:
    """Relative URLs of every read for formulation batches (SPEC section 5): the Substances, their samples
    (Specimens whose subject is one of them), their results (Observations whose focus is one of them, and those that
    only name a sample of theirs), and labinterp's earlier QC reports of them (by series identifier)."""
    if not substance_ids:
        raise InputError("batches", "at least one batch (Substance id) is needed")
    subjects = ",".join(reference("Substance", sid) for sid in substance_ids)  # every id checked before it reaches a URL
    count = ("_count", str(page_size))
    series = ",".join(f"{series_system}|{value}" for value in series_values)
    return [
        query("Substance", [("_id", ",".join(substance_ids)), count]),
        query("Specimen", [("subject", subjects), count]),
        query("Observation", [("focus", subjects), count]),
        query("Observation", [("specimen.subject", subjects), count]),
        query("DiagnosticReport", [("identifier", series), WRITTEN_ELEMENTS, count]),
    ]


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
        if "?" in url and not (isinstance(resource, dict) and resource.get("resourceType") == "Bundle"):
            # a search answered 200 with an OperationOutcome (or nothing) has not run: read as "no results", a
            # patient would be interpreted without, say, its medications
            raise FhirError("GET", f"{base_url}/{url}", status, f"{_kind_of(url)} was not answered with a searchset Bundle")
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
