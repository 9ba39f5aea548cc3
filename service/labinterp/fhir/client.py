"""The only code that talks to a FHIR server: a requests.Session with timeouts, retries of temporary
failures (capped exponential backoff honouring Retry-After), paging with a cap, one batch read and one
transaction write per patient, and typed errors built from the server's OperationOutcome.

Never logs bodies, patient ids or tokens: only methods, resource types, statuses and timings."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import requests

from labinterp import __version__
from labinterp.errors import FhirError, FhirTemporaryError
from labinterp.fhir.retry import RetryPolicy, error_for, parse_retry_after
from labinterp.fhir.search import as_collection, batch_of, parse_batch_response, patient_searches, unpack_searchset

log = logging.getLogger("labinterp.fhir")
FHIR_JSON = "application/fhir+json"


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


class FhirClient:
    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        basic: tuple[str, str] | None = None,
        timeout: tuple[float, float] = (5.0, 60.0),
        retry: RetryPolicy | None = None,
        page_size: int = 500,
        max_pages: int = 20,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout, self.retry, self.page_size, self.max_pages = timeout, retry or RetryPolicy(), page_size, max_pages
        self.session = session or requests.Session()
        self.session.headers.update({"Accept": FHIR_JSON, "User-Agent": f"labinterp/{__version__}"})
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        elif basic:
            self.session.auth = basic
        self.sleep = sleep
        self.stats = ClientStats()
        self._wrote = False  # after a write, reads ask for fresh results (Cache-Control: no-cache)

    # --- HTTP with retries ---------------------------------------------------------------------

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.base_url}/{path.lstrip('/')}" if path else self.base_url  # batch and transaction: POST [base]

    def request(
        self, method: str, path: str, *, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, dict[str, str]]:
        url = self.url(path)
        hdrs = dict(headers or {})
        if body is not None:
            hdrs["Content-Type"] = FHIR_JSON
        if method == "GET" and self._wrote:
            hdrs["Cache-Control"] = "no-cache"
        for attempt in range(1, self.retry.attempts + 1):
            started = time.perf_counter()
            self.stats.requests += 1
            try:
                resp = self.session.request(method, url, json=body, headers=hdrs, timeout=self.timeout)
            except (requests.Timeout, requests.ConnectionError) as exc:
                self.stats.seconds_waiting += time.perf_counter() - started
                err: FhirError = FhirTemporaryError(method, url, None, f"{type(exc).__name__}: the server did not answer")
                retry_after = None
            else:
                self.stats.seconds_waiting += time.perf_counter() - started
                parsed = _json(resp)
                if resp.status_code < 400:
                    return resp.status_code, parsed, dict(resp.headers)
                err = error_for(method, url, resp.status_code, parsed, resp.reason or "")
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            if not isinstance(err, FhirTemporaryError) or attempt == self.retry.attempts:  # conflicts go back to the caller
                log.info("%s %s failed: HTTP %s", method, _kind(url), err.status)  # the caller reports it, once
                raise err
            wait = self.retry.delay(attempt, retry_after)
            self.stats.retries += 1
            log.info("%s %s: HTTP %s, retry %d in %.1f s", method, _kind(url), err.status, attempt, wait)
            waited = time.perf_counter()
            self.sleep(wait)
            self.stats.seconds_waiting += time.perf_counter() - waited
        raise AssertionError("unreachable")

    # --- FHIR interactions ---------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        return self.request("GET", "metadata")[1]

    def read(self, rtype: str, rid: str) -> dict[str, Any]:
        return self.request("GET", f"{rtype}/{rid}")[1]

    def search_page(self, rtype_query: str) -> list[dict[str, Any]]:
        """The first page of a search only (what a dashboard shows)."""
        return unpack_searchset(self.request("GET", rtype_query)[1]).resources

    def search_pages(self, rtype_query: str) -> Iterator[list[dict[str, Any]]]:
        """A search page by page, following `next` links with no ceiling: the caller stops when it wants
        (the reconciliation poll saves its watermark after each page)."""
        page = unpack_searchset(self.request("GET", rtype_query)[1])
        yield list(page.resources)
        while page.next_links:
            page = unpack_searchset(self.request("GET", page.next_links[0])[1])
            yield list(page.resources)

    def search(self, rtype_query: str) -> list[dict[str, Any]]:
        """All resources of a search, following `next` links up to max_pages."""
        page = unpack_searchset(self.request("GET", rtype_query)[1])
        out, pages = list(page.resources), 1
        links = page.next_links
        while links:
            if pages >= self.max_pages:
                raise FhirError(
                    "GET", self.url(rtype_query), None, f"more than {self.max_pages} pages of results: narrow the search"
                )
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
        return self.request("PUT", f"{resource['resourceType']}/{resource['id']}", body=resource)[1]

    def fetch_patient(self, patient_id: str, series_system: str) -> PatientData:
        """Everything about one patient in one HTTP request (a batch of searches), plus one request per
        extra page when a search has more results than a page holds (capped)."""
        urls = patient_searches(patient_id, series_system, self.page_size)
        result = parse_batch_response(self.batch(batch_of(urls)), urls, self.base_url)
        resources, pages, unreadable = list(result.resources), 0, list(result.unreadable)
        for link in result.next_links:
            while link:
                if pages >= self.max_pages:
                    raise FhirError("GET", link, None, f"more than {self.max_pages} extra pages for one patient")
                page = unpack_searchset(self.request("GET", link)[1], f"search page {pages + 2}")
                resources += page.resources
                unreadable += page.unreadable
                pages += 1
                link = page.next_links[0] if page.next_links else ""
        written: list[dict[str, Any]] = []
        inputs: list[dict[str, Any]] = []
        for r in resources:  # one pass: labinterp's own earlier output vs the patient's data
            ours = r.get("resourceType") in ("DiagnosticReport", "RiskAssessment", "Observation") and _has_system(
                r.get("identifier"), series_system
            )
            (written if ours else inputs).append(r)
        return PatientData(as_collection(inputs), written, pages, unreadable)


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
