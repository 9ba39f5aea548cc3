"""The FHIR client against HTTP mocked with `responses`: paging, retries (429 with Retry-After, 503,
timeouts), transaction failures, the server's OperationOutcome surfaced, and requests per patient; and its
hardening (issue 9 point 4): `next` links and redirects followed only inside the FHIR base (credentials never sent
elsewhere), every id and search value encoded by the one builder, no credential in an error, a log or a repr."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
import responses
from responses import matchers

from labinterp.errors import (
    FhirAuthError,
    FhirConflict,
    FhirError,
    FhirLinkError,
    FhirNotFound,
    FhirRequestError,
    FhirTemporaryError,
    InputError,
)
from labinterp.fhir.client import FhirClient
from labinterp.fhir.retry import RetryPolicy, parse_retry_after
from labinterp.fhir.search import canonical_search, patient_searches, query, resource_path, within_base

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
    sent = json.loads(bytes(responses.calls[0].request.body or b""))
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


# --- hardening: links, redirects, encoding, credentials (issue 9 point 4) ---------------------------------

ELSEWHERE = [
    "http://evil.test/fhir?_getpages=x&page=2",  # another host
    "https://fhir.test/fhir?_getpages=x&page=2",  # another scheme
    "http://fhir.test:8080/fhir?_getpages=x&page=2",  # another port
    "http://fhir.test/admin?page=2",  # another path
    "http://fhir.test/fhirx?page=2",  # a path that only starts like the base
    "http://fhir.test/fhir/../admin?page=2",  # a path step out of the base
    "http://fhir.test/fhir/%2e%2e/admin?page=2",  # the same, encoded
    "http://user:pw@fhir.test/fhir?page=2",  # credentials of its own
    "//evil.test/fhir?page=2",  # scheme-relative
]


@pytest.mark.parametrize("link", ELSEWHERE)
@responses.activate
def test_next_links_outside_the_base_are_not_followed(link: str) -> None:
    responses.get(f"{BASE}/Observation", json=searchset([mg(1)], link))
    responses.post(BASE, json=batch_response(PATIENT, [mg(1)], link))
    c, _ = client(token="s3cret-token-0123456789")
    with pytest.raises(FhirLinkError, match=r"outside the FHIR base http://fhir\.test/fhir") as caught:
        c.search("Observation", [("code", "x")])
    assert not caught.value.temporary and "pw@" not in str(caught.value) and "s3cret" not in str(caught.value)
    with pytest.raises(FhirLinkError):
        list(c.search_pages("Observation", [("code", "x")]))
    with pytest.raises(FhirLinkError):
        c.fetch_patient("p1", SERIES)
    assert all(str(call.request.url).startswith(f"{BASE}/Observation") or call.request.url == BASE for call in responses.calls)


@responses.activate
def test_the_authorization_header_never_reaches_another_host() -> None:
    responses.get(f"{BASE}/Observation", json=searchset([mg(1)], "http://evil.test/fhir/Observation?page=2"))
    responses.get("http://evil.test/fhir/Observation", json=searchset([mg(2)]))
    responses.get(f"{BASE}/metadata", status=302, headers={"Location": "http://evil.test/fhir/metadata"})
    responses.get("http://evil.test/fhir/metadata", json={"resourceType": "CapabilityStatement"})
    for auth in ({"token": "s3cret-token-0123456789"}, {"basic": ("u", "pw")}):
        c, _ = client(**auth)
        with pytest.raises(FhirLinkError):
            c.search("Observation", [("code", "x")])
        with pytest.raises(FhirLinkError, match=r"a redirect to http://evil\.test/fhir/metadata outside the FHIR base"):
            c.metadata()
    assert not [call for call in responses.calls if "evil.test" in str(call.request.url)]
    assert all("Authorization" in call.request.headers for call in responses.calls)  # sent, but only to the base


@responses.activate
def test_redirects_inside_the_base_are_followed_for_reads_only() -> None:
    responses.get(f"{BASE}/metadata", status=301, headers={"Location": "/fhir/metadata/"})
    responses.get(f"{BASE}/metadata/", json={"resourceType": "CapabilityStatement"})
    responses.post(BASE, status=307, headers={"Location": f"{BASE}/"})
    c, _ = client(token="s3cret-token-0123456789")
    assert c.metadata()["resourceType"] == "CapabilityStatement"
    assert responses.calls[1].request.headers["Authorization"] == "Bearer s3cret-token-0123456789"
    with pytest.raises(FhirLinkError):  # a transaction's body of patient data is never sent on to a redirect's target
        c.transaction({"resourceType": "Bundle", "type": "transaction", "entry": []})
    assert len(responses.calls) == 3


@responses.activate
def test_next_links_inside_the_base_are_followed() -> None:
    responses.get(f"{BASE}/Observation", json=searchset([mg(1)], "HTTP://FHIR.TEST:80/fhir?_getpages=x&page=2"))
    responses.get(f"{BASE}?_getpages=x&page=2", json=searchset([mg(2)], f"{BASE}/Observation/_search?page=3"))
    responses.get(f"{BASE}/Observation/_search", json=searchset([mg(3)]))
    c, _ = client()
    assert [r["id"] for r in c.search("Observation", [("code", "x")])] == ["mg1", "mg2", "mg3"]


@pytest.mark.parametrize("rid", ["../../metadata", "..", ".", "a/b", "p1?_include=*", "p1#x", "", "x" * 65, "p 1", "%2e%2e"])
@responses.activate
def test_ids_that_break_the_id_rule_never_reach_the_server(rid: str) -> None:
    c, _ = client()
    with pytest.raises(InputError, match=r"Patient\.id: is not a FHIR resource id") as caught:
        c.read("Patient", rid)
    assert rid not in str(caught.value) or rid in ("", ".")
    with pytest.raises(InputError):
        c.update({"resourceType": "Patient", "id": rid})
    with pytest.raises(InputError):
        c.fetch_patient(rid, SERIES)
    assert len(responses.calls) == 0


@pytest.mark.parametrize("rtype", ["Patient/..", "../Patient", "patient", "", "Patient?x=1"])
def test_resource_types_are_checked(rtype: str) -> None:
    c, _ = client()
    with pytest.raises(InputError):
        c.read(rtype, "p1")
    with pytest.raises(InputError):
        c.search(rtype, [("x", "1")])


@responses.activate
def test_search_values_are_encoded_by_the_builder() -> None:
    responses.get(f"{BASE}/Observation", json=searchset([]))
    c, _ = client()
    c.search("Observation", [("code", "x?_count=100000&_include=*"), ("subject", "Patient/p1"), ("_count", 50)])
    sent = responses.calls[0].request.url
    assert sent == f"{BASE}/Observation?code=x%3F_count%3D100000%26_include%3D%2A&subject=Patient/p1&_count=50"
    c.search_page("Observation", [("value-string", "a#b c+d")])
    assert responses.calls[1].request.url == f"{BASE}/Observation?value-string=a%23b%20c%2Bd"
    with pytest.raises(InputError):
        c.search("Observation", [("code=x&_include", "*")])  # a parameter name is checked too
    assert len(responses.calls) == 2


@responses.activate
def test_a_search_given_as_one_string_is_parsed_and_built_again() -> None:
    responses.get(f"{BASE}/Observation", json=searchset([]))
    responses.get(f"{BASE}/Patient", json=searchset([]))
    c, _ = client()
    c.search("Observation?code=http%3A%2F%2Floinc.org%7C19123-9&_count=10")
    c.search("Patient?_count=500&_elements=id")
    assert [call.request.url for call in responses.calls] == [
        f"{BASE}/Observation?code=http%3A//loinc.org%7C19123-9&_count=10",
        f"{BASE}/Patient?_count=500&_elements=id",
    ]
    built = query("Observation", [("_lastUpdated", "ge2026-01-20T10:00:00+00:00"), ("_sort", "_lastUpdated")])
    assert canonical_search(built) == built  # what the builder made goes out unchanged
    for broken in ("../metadata?x=1", "Observation?=x", "Observation?a=1&&b"):
        with pytest.raises(InputError):
            c.search(broken)


def test_the_builder_in_one_place() -> None:
    assert resource_path("Patient", "p-1.2") == "Patient/p-1.2"
    assert resource_path("Patient", "p1", "_history", "2/3") == "Patient/p1/_history/2%2F3"
    assert patient_searches("p1", SERIES, 10)[1] == "Observation?subject=Patient/p1&_count=10"
    with pytest.raises(InputError):
        patient_searches("p1&_count=99999", SERIES, 10)
    assert within_base("http://fhir.test/fhir", BASE) and within_base("http://fhir.test:80/fhir/x", BASE)
    assert not within_base("http://fhir.test/fhir/./x", BASE) and not within_base("not a url", BASE)


@pytest.mark.parametrize("path", ["../metadata", "Patient/../../x", "http://evil.test/fhir/Patient/p1", "Patient/%2E%2E/x"])
@responses.activate
def test_request_paths_cannot_leave_the_base(path: str) -> None:
    c, _ = client()
    with pytest.raises((InputError, FhirLinkError)):
        c.request("GET", path)
    assert len(responses.calls) == 0


def test_a_base_url_with_credentials_is_refused_without_echoing_them() -> None:
    for url in ("http://admin:s3cr3tPW@fhir.test/fhir", "http://admin@fhir.test/fhir"):
        with pytest.raises(InputError) as caught:
            FhirClient(url)
        assert "s3cr3tPW" not in str(caught.value) and "admin" not in str(caught.value)
    for url in ("fhir.test/fhir", "ftp://fhir.test/fhir", "http:///fhir"):
        with pytest.raises(InputError, match="http\\(s\\) URL with a host"):
            FhirClient(url)


@responses.activate
def test_credentials_are_never_in_errors_logs_or_reprs(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    responses.get(f"{BASE}/metadata", status=401, json=oo("token s3cret-token-0123456789 expired"))
    responses.get(f"{BASE}/Patient", status=403)
    for kw, secret in (
        ({"token": "s3cret-token-0123456789"}, "s3cret-token-0123456789"),
        ({"basic": ("u", "pw-s3cr3t")}, "pw-s3cr3t"),
    ):
        c, _ = client(**kw)
        with pytest.raises(FhirAuthError) as first:
            c.metadata()
        with pytest.raises(FhirAuthError) as second:
            c.search("Patient", [("identifier", "MRN-99887766")])
        for shown in (str(first.value), str(second.value), repr(c), repr(c.auth), caplog.text):
            assert secret not in shown and "MRN-99887766" not in shown
    assert repr(client(token="s3cret-token-0123456789")[0]) == "FhirClient('http://fhir.test/fhir', auth=BearerAuth(token=…))"


@responses.activate
def test_auth_is_per_request_never_on_a_shared_session() -> None:
    responses.get(f"{BASE}/metadata", json={"resourceType": "CapabilityStatement"})
    shared = requests.Session()
    FhirClient(BASE, token="s3cret-token-0123456789", session=shared).metadata()
    FhirClient(BASE, session=shared).metadata()
    assert "Authorization" not in shared.headers and shared.auth is None
    assert "Authorization" in responses.calls[0].request.headers and "Authorization" not in responses.calls[1].request.headers
