"""Schemathesis against the service's own OpenAPI document (GET /openapi.json of create_app), in process, the FHIR
server mocked with `responses` (any patient read answers example patient p01's data under the id asked for; writes
succeed), the API and hook tokens configured and sent. Every answer: never a 5xx, and every 4xx an OperationOutcome
with the FHIR JSON content type. Deterministic (derandomize): CI sees the same cases every run."""

from __future__ import annotations

import json
import re
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import responses
import schemathesis
from hypothesis import HealthCheck, settings

from labinterp.server.app import create_app
from tests.conftest import SITE
from tests.contract.test_api import BASE, EXAMPLES, batch_response_for

API_TOKEN = "fuzz-api-token-0123456789"
HOOK_TOKEN = "fuzz-hook-token-0123456789"
P01 = (EXAMPLES / "p01.json").read_text()
STATUSES: Counter[int] = Counter()


def _fhir(request: Any) -> tuple[int, dict[str, str], str]:
    """A FHIR server: the read batch answered with p01's resources under the patient id asked for; a transaction's
    every entry created."""
    sent = json.loads(request.body)
    if sent.get("type") == "batch":
        first = str(sent["entry"][0]["request"]["url"])
        if first.startswith("Substance?"):  # a formulation batch's read: this server holds no batch
            empty = {"resource": {"resourceType": "Bundle", "type": "searchset"}, "response": {"status": "200 OK"}}
            answer = {"resourceType": "Bundle", "type": "batch-response", "entry": [empty for _ in sent["entry"]]}
            return 200, {"Content-Type": "application/fhir+json"}, json.dumps(answer)
        pid = first.split("?", 1)[0].removeprefix("Patient/") or "p01"
        bundle = json.loads(P01.replace('"p01', f'"{pid}').replace("/p01", f"/{pid}"))
        return 200, {"Content-Type": "application/fhir+json"}, json.dumps(batch_response_for(bundle))
    entries = [
        {"response": {"status": "201 Created", "location": f"{e['resource']['resourceType']}/x{i}/_history/1"}}
        for i, e in enumerate(sent.get("entry", []))
    ]
    return (
        200,
        {"Content-Type": "application/fhir+json"},
        json.dumps({"resourceType": "Bundle", "type": "transaction-response", "entry": entries}),
    )


def _not_found(request: Any) -> tuple[int, dict[str, str], str]:
    if request.url.endswith("/metadata"):
        return (
            200,
            {},
            json.dumps({"resourceType": "CapabilityStatement", "status": "active", "kind": "instance", "fhirVersion": "4.0.1"}),
        )
    oo = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-found", "diagnostics": "unknown"}]}
    return 404, {"Content-Type": "application/fhir+json"}, json.dumps(oo)


def _app() -> Any:
    tmp = Path(tempfile.mkdtemp(prefix="labinterp-fuzz-"))
    return create_app(
        {
            "FHIR_BASE_URL": BASE,
            "MAPPINGS_DIR": str(SITE),
            "QUEUE_PATH": str(tmp / "q.db"),
            "WORKER": False,
            "API_TOKEN": API_TOKEN,
            "HOOK_TOKEN": HOOK_TOKEN,
            "FHIR_RETRIES": 1,
            "RENDER": False,
            "HOOK_PER_MINUTE": 100000,
        }
    )


APP = _app()
schema = schemathesis.openapi.from_wsgi("/openapi.json", APP)


@pytest.fixture(autouse=True, scope="module")
def fhir_server() -> Any:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_callback(responses.POST, BASE, callback=_fhir)
        mock.add_callback(responses.GET, re.compile(re.escape(BASE) + r"/.*"), callback=_not_found)
        mock.add_callback(responses.PUT, re.compile(re.escape(BASE) + r"/.*"), callback=_not_found)
        yield mock


@schema.parametrize()
@settings(max_examples=20, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
def test_no_5xx_and_every_4xx_is_an_operation_outcome(case: Any) -> None:
    token = HOOK_TOKEN if case.path.startswith("/hook") else API_TOKEN
    response = case.call(headers={"Authorization": f"Bearer {token}"})
    STATUSES[response.status_code] += 1
    shown = f"{case.method} {case.formatted_path} {case.query} -> {response.status_code} {response.text[:300]}"
    assert response.status_code < 500, shown
    if 400 <= response.status_code < 500:
        ctype = {k.lower(): v for k, v in response.headers.items()}.get("content-type")
        ctype = ctype[0] if isinstance(ctype, list) else ctype
        assert str(ctype).startswith("application/fhir+json"), shown
        assert json.loads(response.text)["resourceType"] == "OperationOutcome", shown


def test_year_before_1000_is_not_a_500() -> None:
    """Found by the fuzzing: POST /Patient/p01/$interpret?dry-run&now=0999-01-01T00:00:00Z answers 500 (InvalidOutput:
    DiagnosticReport.issued '999-01-01T00:00:00Z' did not match the instant regex). Fixed: the year is zero-padded."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_callback(responses.POST, BASE, callback=_fhir)
        r = APP.test_client().post(
            "/Patient/p01/$interpret?dry-run&now=0999-01-01T00:00:00Z", headers={"Authorization": f"Bearer {API_TOKEN}"}
        )
    assert r.status_code < 500, r.get_data(as_text=True)


def test_zz_report_the_statuses_seen() -> None:
    """Prints how many cases the fuzzing sent and what came back (run with -s to see it)."""
    print(f"schemathesis: {sum(STATUSES.values())} cases; statuses {dict(sorted(STATUSES.items()))}")
