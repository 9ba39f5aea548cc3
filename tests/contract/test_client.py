"""The FHIR client against HTTP mocked with `responses`: paging, retries (429 with Retry-After, 503,
timeouts), transaction failures, the server's OperationOutcome surfaced, and requests per patient."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
import responses
from responses import matchers

from labinterp.errors import FhirConflict, FhirError, FhirNotFound, FhirRequestError, FhirTemporaryError
from labinterp.fhir.client import FhirClient
from labinterp.fhir.retry import RetryPolicy, parse_retry_after
from labinterp.fhir.search import patient_searches

BASE = "http://fhir.test/fhir"
SERIES = "urn:labinterp:series"


def client(**kw: Any) -> tuple[FhirClient, list[float]]:
    slept: list[float] = []
    c = FhirClient(BASE, retry=RetryPolicy(attempts=4, base_delay=0.5, max_delay=10.0, jitter=0.0), sleep=slept.append, **kw)
    return c, slept


def oo(text: str) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "processing", "diagnostics": text}]}


def searchset(resources: list[dict[str, Any]], next_url: str | None = None) -> dict[str, Any]:
    b: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}
    if next_url:
        b["link"] = [{"relation": "next", "url": next_url}]
    return b


def batch_response(patient: dict[str, Any], obs: list[dict[str, Any]], next_url: str | None = None) -> dict[str, Any]:
    entries = [
        {"resource": patient, "response": {"status": "200 OK"}},
        {"resource": searchset(obs, next_url), "response": {"status": "200 OK"}},
    ]
    entries += [{"resource": searchset([]), "response": {"status": "200 OK"}} for _ in range(5)]
    return {"resourceType": "Bundle", "type": "batch-response", "entry": entries}


PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1960-01-01"}


def mg(i: int, value: float = 1.3) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"mg{i}",
        "status": "final",
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "19123-9"}]},
        "effectiveDateTime": f"2026-01-{10 + i:02d}T08:00:00Z",
        "valueQuantity": {"value": value, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"},
    }


@responses.activate
def test_one_batch_request_reads_a_patient() -> None:
    responses.post(BASE, json=batch_response(PATIENT, [mg(1)]))
    c, _ = client()
    data = c.fetch_patient("p1", SERIES)
    assert len(responses.calls) == 1 and c.stats.requests == 1
    sent = json.loads(responses.calls[0].request.body)
    assert sent["type"] == "batch" and [e["request"]["url"] for e in sent["entry"]] == patient_searches("p1", SERIES, 500)
    assert "identifier=urn%3Alabinterp%3Aseries%7C" in sent["entry"][5]["request"]["url"]
    assert {r["resourceType"] for r in (e["resource"] for e in data.bundle["entry"])} == {"Patient", "Observation"}


@responses.activate
def test_paging_follows_next_links_with_a_cap() -> None:
    responses.post(BASE, json=batch_response(PATIENT, [mg(1)], f"{BASE}?_getpages=x&page=2"))
    responses.get(f"{BASE}?_getpages=x&page=2", json=searchset([mg(2)], f"{BASE}?_getpages=x&page=3"))
    responses.get(f"{BASE}?_getpages=x&page=3", json=searchset([mg(3)]))
    c, _ = client()
    data = c.fetch_patient("p1", SERIES)
    assert data.pages == 2 and c.stats.requests == 3
    assert sorted(e["resource"]["id"] for e in data.bundle["entry"] if e["resource"]["resourceType"] == "Observation") == [
        "mg1",
        "mg2",
        "mg3",
    ]
    capped = FhirClient(BASE, max_pages=1, sleep=lambda s: None)
    with pytest.raises(FhirError, match="more than 1 extra pages"):
        capped.fetch_patient("p1", SERIES)


@responses.activate
def test_search_pages_and_cap() -> None:
    responses.get(f"{BASE}/Observation?code=x", json=searchset([mg(1)], f"{BASE}/p2"))
    responses.get(f"{BASE}/p2", json=searchset([mg(2)]))
    c, _ = client()
    assert [r["id"] for r in c.search("Observation?code=x")] == ["mg1", "mg2"]


@responses.activate
def test_retry_429_honours_retry_after() -> None:
    responses.get(f"{BASE}/metadata", status=429, headers={"Retry-After": "3"}, json=oo("slow down"))
    responses.get(f"{BASE}/metadata", json={"resourceType": "CapabilityStatement"})
    c, slept = client()
    assert c.metadata()["resourceType"] == "CapabilityStatement"
    assert slept == [3.0] and c.stats.retries == 1 and c.stats.requests == 2


@responses.activate
def test_retry_503_with_capped_exponential_backoff() -> None:
    for _ in range(3):
        responses.get(f"{BASE}/metadata", status=503, body="busy")
    responses.get(f"{BASE}/metadata", json={"resourceType": "CapabilityStatement"})
    c, slept = client()
    c.metadata()
    assert slept == [0.5, 1.0, 2.0]


@responses.activate
def test_retry_after_is_capped_and_attempts_end() -> None:
    for _ in range(4):
        responses.get(f"{BASE}/metadata", status=503, headers={"Retry-After": "3600"}, json=oo("maintenance"))
    c, slept = client()
    with pytest.raises(FhirTemporaryError) as exc:
        c.metadata()
    assert slept == [10.0, 10.0, 10.0] and exc.value.status == 503
    assert "GET http://fhir.test/fhir/metadata: HTTP 503: processing" in str(exc.value)


@responses.activate
def test_timeouts_and_connection_errors_are_retried() -> None:
    responses.get(f"{BASE}/metadata", body=requests.Timeout("read timed out"))
    responses.get(f"{BASE}/metadata", body=requests.ConnectionError("refused"))
    responses.get(f"{BASE}/metadata", json={"resourceType": "CapabilityStatement"})
    c, slept = client()
    c.metadata()
    assert len(slept) == 2 and c.stats.requests == 3


@responses.activate
def test_fatal_errors_are_not_retried_and_name_url_status_and_outcome() -> None:
    responses.get(f"{BASE}/Patient/zz", status=404, json=oo("HAPI-2001: Resource Patient/zz is not known"))
    responses.post(BASE, status=422, json=oo("Observation.status: minimum required = 1"))
    responses.put(f"{BASE}/Observation/o1", status=412, json=oo("version conflict"))
    c, slept = client()
    with pytest.raises(FhirNotFound, match=r"GET http://fhir.test/fhir/Patient/zz: HTTP 404: processing \(HAPI-2001\)"):
        c.read("Patient", "zz")
    with pytest.raises(FhirRequestError) as exc:
        c.transaction({"resourceType": "Bundle", "type": "transaction", "entry": []})
    assert exc.value.status == 422 and exc.value.issues[0]["diagnostics"] == "Observation.status: minimum required = 1"
    with pytest.raises(FhirConflict):
        c.update({"resourceType": "Observation", "id": "o1"})
    assert slept == [] and c.stats.requests == 3


@responses.activate
def test_transaction_must_answer_with_transaction_response() -> None:
    responses.post(BASE, json={"resourceType": "Bundle", "type": "batch-response"})
    c, _ = client()
    with pytest.raises(FhirError, match="did not answer the transaction with a transaction-response"):
        c.transaction({"resourceType": "Bundle", "type": "transaction", "entry": []})


@responses.activate
def test_batch_entry_failure_names_its_url() -> None:
    body = batch_response(PATIENT, [])
    body["entry"][0] = {"response": {"status": "404 Not Found", "outcome": oo("Resource Patient/p1 is not known")}}
    responses.post(BASE, json=body)
    c, _ = client()
    with pytest.raises(FhirNotFound, match=r"GET http://fhir\.test/fhir/Patient/p1: HTTP 404: processing"):
        c.fetch_patient("p1", SERIES)


@responses.activate
def test_no_cache_on_reads_after_a_write_and_auth_headers() -> None:
    responses.get(f"{BASE}/metadata", json={"resourceType": "CapabilityStatement"})
    responses.post(BASE, json={"resourceType": "Bundle", "type": "transaction-response", "entry": []})
    c, _ = client(token="s3cret")
    c.metadata()
    c.transaction({"resourceType": "Bundle", "type": "transaction", "entry": []})
    c.metadata()
    first, write, after = (call.request.headers for call in responses.calls)
    assert "Cache-Control" not in first and after["Cache-Control"] == "no-cache"
    assert first["Authorization"] == "Bearer s3cret" and write["Content-Type"] == "application/fhir+json"
    responses.get(f"{BASE}/Patient/p1", json=PATIENT, match=[matchers.header_matcher({"Authorization": "Basic dTpw"})])
    FhirClient(BASE, basic=("u", "p")).read("Patient", "p1")


def test_retry_after_http_date() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("120") == 120.0 and parse_retry_after("soon") is None and parse_retry_after(None) is None
