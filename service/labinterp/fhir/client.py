"""The only code that talks to a FHIR server: a requests.Session with timeouts, retries of temporary
failures (capped exponential backoff honouring Retry-After), paging with a cap, one batch read and one
transaction write per patient, and typed errors built from the server's OperationOutcome.

Authentication is one requests `AuthBase` applied to each request (`auth=`: bearer token, basic, or SMART Backend
Services from labinterp.fhir.smart); a 401 makes an auth that can refresh (`invalidate`) fetch a new token once,
and the request is tried once more. Every URL is built by labinterp.fhir.search and checked to lie inside the
configured FHIR base: a Bundle's `next` link or a redirect elsewhere (another scheme, host, port or path) is a
FhirLinkError, and no credential goes there.

Never logs bodies, patient ids or tokens: only methods, resource types, statuses and timings; errors and the repr
show URLs without user, password or query values (errors.shown_url)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests
from requests.auth import AuthBase, HTTPBasicAuth

from labinterp import __version__
from labinterp.errors import FhirError, FhirLinkError, FhirTemporaryError, InputError, shown_url
from labinterp.fhir.retry import RetryPolicy, error_for, parse_retry_after
from labinterp.fhir.search import (
    Params,
    as_collection,
    base_parts,
    batch_of,
    batch_searches,
    canonical_search,
    chunk_searches,
    parse_batch_response,
    patient_searches,
    query,
    relative_path,
    resource_path,
    unpack_searchset,
    within_base,
)

log = logging.getLogger("labinterp.fhir")
FHIR_JSON = "application/fhir+json"
MAX_REDIRECTS = 3  # followed only for GET and only inside the FHIR base


class BearerAuth(AuthBase):
    """A fixed bearer token (LABINTERP_FHIR_TOKEN). Its repr does not show the token."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = f"Bearer {self._token}"
        return r

    def __repr__(self) -> str:
        return "BearerAuth(token=…)"

    def secrets(self) -> list[str]:
        """What must never be shown (error texts are scrubbed of it)."""
        return [self._token]


class BasicAuth(HTTPBasicAuth):
    """requests' basic auth with a repr that shows the user only."""

    def __repr__(self) -> str:
        return f"BasicAuth(user={self.username!r}, password=…)"

    def secrets(self) -> list[str]:
        return [str(self.password)]


@dataclass
class ClientStats:
    requests: int = 0  # HTTP requests sent, retries included
    retries: int = 0
    seconds_waiting: float = 0.0  # time spent in HTTP calls and backoff: the server's share

    def snapshot(self) -> tuple[int, int, float]:
        return self.requests, self.retries, self.seconds_waiting


@dataclass
class PatientData:
    bundle: dict[str, Any]  # a collection Bundle: Patient, Observations, medications, Medications
    written: list[dict[str, Any]] = field(default_factory=list)  # labinterp's earlier reports for this patient
    pages: int = 0  # extra page requests that were needed
    unreadable: list[str] = field(default_factory=list)  # results that were not FHIR resources: left out, where they were
    devices: list[dict[str, Any]] = field(default_factory=list)  # Devices read (labinterp's own, when asked for)


class FhirClient:
    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        basic: tuple[str, str] | None = None,
        auth: AuthBase | None = None,
        timeout: tuple[float, float] = (5.0, 60.0),
        retry: RetryPolicy | None = None,
        page_size: int = 500,
        max_pages: int = 20,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        base_parts(base_url)  # an http(s) URL with a host and no user or password: InputError otherwise, never quoted
        self.base_url = base_url.rstrip("/")
        self.timeout, self.retry, self.page_size, self.max_pages = timeout, retry or RetryPolicy(), page_size, max_pages
        self.session = session or requests.Session()
        self.session.headers.update({"Accept": FHIR_JSON, "User-Agent": f"labinterp/{__version__}"})
        if sum(1 for way in (token, basic, auth) if way) > 1:
            raise InputError("FHIR server authentication", "give one of a bearer token, basic auth or an auth object")
        # applied per request, never stored on the (possibly shared) session
        self.auth: AuthBase | None = auth or (BearerAuth(token) if token else BasicAuth(*basic) if basic else None)
        self.sleep = sleep
        self.stats = ClientStats()
        self._wrote = False  # after a write, reads ask for fresh results (Cache-Control: no-cache)

    def __repr__(self) -> str:
        return f"FhirClient({shown_url(self.base_url)!r}, auth={self.auth!r})"

    # --- HTTP with retries ---------------------------------------------------------------------

    def url(self, path: str, method: str = "GET") -> str:
        """The absolute URL of a path the builders made (labinterp.fhir.search), or of an absolute URL the server
        gave (a `next` link) when it lies inside the FHIR base; FhirLinkError otherwise, before anything is sent."""
        if "://" in path or path.startswith("//"):
            if not within_base(path, self.base_url):
                raise FhirLinkError(method, path, None, self._outside_base("a link"))
            parts = urlsplit(path)  # the base's own spelling of its origin (HTTP://HOST:80 is http://host)
            return urlunsplit((*urlsplit(self.base_url)[:2], parts.path, parts.query, ""))
        relative = relative_path(path)
        return f"{self.base_url}/{relative}" if relative else self.base_url  # batch and transaction: POST [base]

    def _outside_base(self, what: str) -> str:
        return f"{what} outside the FHIR base {shown_url(self.base_url)} (another scheme, host, port or path): not followed"

    def request(
        self, method: str, path: str, *, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, dict[str, str]]:
        url = self.url(path, method)
        hdrs = dict(headers or {})
        if body is not None:
            hdrs["Content-Type"] = FHIR_JSON
        if method == "GET" and self._wrote:
            hdrs["Cache-Control"] = "no-cache"
        attempt, reauthorized = 1, False
        while True:
            started = time.perf_counter()
            self.stats.requests += 1
            try:
                resp = self._send(method, url, body, hdrs)
            except (requests.Timeout, requests.ConnectionError) as exc:
                self.stats.seconds_waiting += time.perf_counter() - started
                err: FhirError = FhirTemporaryError(method, url, None, f"{type(exc).__name__}: the server did not answer")
                retry_after = None
            else:
                self.stats.seconds_waiting += time.perf_counter() - started
                parsed = _json(resp)
                if resp.status_code < 400:
                    return resp.status_code, parsed, dict(resp.headers)
                if resp.status_code == 401 and not reauthorized and self._reauthorize(resp):
                    reauthorized = True  # once: a second 401 is the answer
                    self.stats.retries += 1
                    log.info("%s %s: HTTP 401, one retry with a new access token", method, _kind(url))
                    continue
                err = error_for(method, url, resp.status_code, parsed, resp.reason or "")
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            if not isinstance(err, FhirTemporaryError) or attempt >= self.retry.attempts:  # conflicts go back to the caller
                log.info("%s %s failed: HTTP %s", method, _kind(url), err.status)  # the caller reports it, once
                raise err
            wait = self.retry.delay(attempt, retry_after)
            self.stats.retries += 1
            log.info("%s %s: HTTP %s, retry %d in %.1f s", method, _kind(url), err.status, attempt, wait)
            waited = time.perf_counter()
            self.sleep(wait)
            self.stats.seconds_waiting += time.perf_counter() - waited
            attempt += 1

    def _send(self, method: str, url: str, body: Any, headers: dict[str, str]) -> requests.Response:
        """One request with the auth applied; a redirect is followed only for GET and only inside the FHIR base
        (a redirect elsewhere could take a body of patient data, or a credential, away): FhirLinkError otherwise."""
        for _ in range(MAX_REDIRECTS + 1):
            resp = self.session.request(
                method, url, json=body, headers=headers, timeout=self.timeout, auth=self.auth, allow_redirects=False
            )
            if not resp.is_redirect:
                return resp
            target = urljoin(url, resp.headers.get("Location", ""))
            resp.close()
            if method != "GET" or not within_base(target, self.base_url):
                raise FhirLinkError(method, url, resp.status_code, self._outside_base(f"a redirect to {shown_url(target)}"))
            url = self.url(target, method)
        raise FhirLinkError(method, url, None, f"more than {MAX_REDIRECTS} redirects")

    def _reauthorize(self, resp: requests.Response) -> bool:
        """After a 401: an auth that can refresh (SMART) drops the token that was refused, so the retry fetches a
        new one. False when the auth cannot (a fixed token, basic auth): the 401 is the answer."""
        invalidate = getattr(self.auth, "invalidate", None)
        if not callable(invalidate):
            return False
        invalidate(resp.request.headers.get("Authorization") if resp.request is not None else None)
        return True

    # --- FHIR interactions ---------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        return self.request("GET", "metadata")[1]

    def read(self, rtype: str, rid: str) -> dict[str, Any]:
        """`GET [base]/{rtype}/{rid}`; an id that fails FHIR's id rule is an InputError and nothing is sent."""
        return self.request("GET", resource_path(rtype, rid))[1]

    def search_page(self, what: str, params: Params | None = None) -> list[dict[str, Any]]:
        """The first page of a search only (what a dashboard shows). `what` is a resource type with `params` as
        (name, value) pairs, or (older callers) a relative search URL that `query` built."""
        return unpack_searchset(self.request("GET", _search_url(what, params))[1]).resources

    def search_pages(self, what: str, params: Params | None = None) -> Iterator[list[dict[str, Any]]]:
        """A search page by page, following `next` links (inside the FHIR base only) with no ceiling: the caller
        stops when it wants (the reconciliation poll saves its watermark after each page). A `next` link back to a
        page already read (a paging cycle) is the server's fault, a FhirError: a listing would never end."""
        first = _search_url(what, params)
        seen = {self.url(first)}
        label = f"{what.split('?', 1)[0]} search"
        page = unpack_searchset(self.request("GET", first)[1], label)
        yield list(page.resources)
        while page.next_links:
            link = self.url(page.next_links[0])
            if link in seen:
                raise FhirError("GET", label, None, "the server's next link leads back to a page already read")
            seen.add(link)
            page = unpack_searchset(self.request("GET", link)[1], label)
            yield list(page.resources)

    def search(self, what: str, params: Params | None = None) -> list[dict[str, Any]]:
        """All resources of a search, following `next` links (inside the FHIR base only) up to max_pages."""
        first = _search_url(what, params)
        page = unpack_searchset(self.request("GET", first)[1])
        out, pages = list(page.resources), 1
        links = page.next_links
        while links:
            if pages >= self.max_pages:
                raise FhirError("GET", self.url(first), None, f"more than {self.max_pages} pages of results: narrow the search")
            page = unpack_searchset(self.request("GET", links[0])[1])
            out += page.resources
            links, pages = page.next_links, pages + 1
        return out

    def batch(self, bundle: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", "", body=bundle)[1]

    def transaction(self, bundle: dict[str, Any]) -> dict[str, Any]:
        self._wrote = True
        status, body, _ = self.request("POST", "", body=bundle)
        if not isinstance(body, dict) or body.get("type") != "transaction-response":
            raise FhirError(
                "POST", self.base_url, status, "the server did not answer the transaction with a transaction-response"
            )
        return body

    def update(self, resource: dict[str, Any]) -> dict[str, Any]:
        self._wrote = True
        return self.request("PUT", resource_path(resource.get("resourceType"), resource.get("id")), body=resource)[1]

    def fetch_patient(self, patient_id: str, series_system: str, device: tuple[str, str] | None = None) -> PatientData:
        """Everything about one patient in one HTTP request (a batch of searches), plus one request per
        extra page when a search has more results than a page holds (capped). With `device` (system, value), the
        Device of that identifier is among the resources when the server has it."""
        urls = patient_searches(patient_id, series_system, self.page_size, device)
        return self._fetch(urls, series_system, self.max_pages)

    def fetch_patients(
        self, patient_ids: list[str], series_system: str, page_size: int, device: tuple[str, str] | None = None
    ) -> PatientData:
        """Everything about a chunk of patients in one HTTP request (a batch of searches across them), plus one
        request per extra page (capped at max_pages per patient of the chunk). With `device` (system, value), the
        Device of that identifier is among the resources when the server has it."""
        urls = chunk_searches(patient_ids, series_system, page_size, device)
        return self._fetch(urls, series_system, self.max_pages * len(patient_ids))

    def fetch_batches(self, substance_ids: list[str], series_system: str, series_values: list[str]) -> PatientData:
        """Everything about formulation batches (their Substances, samples, results and labinterp's earlier QC
        reports) in one HTTP request, plus one per extra page."""
        urls = batch_searches(substance_ids, series_system, series_values, self.page_size)
        return self._fetch(urls, series_system, self.max_pages * len(substance_ids))

    def _fetch(self, urls: list[str], series_system: str, max_pages: int) -> PatientData:
        result = parse_batch_response(self.batch(batch_of(urls)), urls, self.base_url)
        resources, pages, unreadable = list(result.resources), 0, list(result.unreadable)
        for link in result.next_links:
            while link:
                if pages >= max_pages:
                    raise FhirError("GET", link, None, f"more than {max_pages} extra pages for one read")
                page = unpack_searchset(self.request("GET", link)[1], f"search page {pages + 2}")
                resources += page.resources
                unreadable += page.unreadable
                pages += 1
                link = page.next_links[0] if page.next_links else ""
        written: list[dict[str, Any]] = []
        inputs: list[dict[str, Any]] = []
        devices: list[dict[str, Any]] = []
        for r in resources:  # one pass: labinterp's own earlier output and Device vs the patient's data
            ours = r.get("resourceType") in ("DiagnosticReport", "RiskAssessment", "Observation") and _has_system(
                r.get("identifier"), series_system
            )
            (written if ours else devices if r.get("resourceType") == "Device" else inputs).append(r)
        return PatientData(as_collection(inputs), written, pages, unreadable, devices)


def _search_url(what: str, params: Params | None) -> str:
    """The one way a search becomes a relative URL: (type, pairs) through `query`, or an older caller's string parsed
    and built again (labinterp.fhir.search.canonical_search)."""
    return query(what, params) if params is not None else canonical_search(what)


def _has_system(identifiers: Any, system: str) -> bool:
    """An identifier of `system` among a resource's identifiers; an odd shape (not a list of objects) has none:
    that resource is then just not labinterp's earlier output (extraction names the odd shape if it reads it)."""
    return isinstance(identifiers, list) and any(isinstance(i, dict) and i.get("system") == system for i in identifiers)


def _json(resp: requests.Response) -> Any:
    if not resp.content:
        return None
    try:
        return resp.json()
    except (ValueError, RecursionError):  # not JSON, or JSON no parser holds: as if there were no body
        return None


def _kind(url: str) -> str:
    """The resource type of a URL, for logs that must not carry ids."""
    tail = url.split("?")[0].rstrip("/").split("/")
    return next((p for p in reversed(tail) if p[:1].isupper()), "(base)")
