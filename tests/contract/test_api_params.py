"""Query parameters are read strictly: a value that is not true or false, or an unknown parameter, is a 400 and
writes nothing (a `?dry-run=maybe` or a misspelt `?dryrun` read as "write" would change the record)."""

from __future__ import annotations

from typing import Any

import pytest
import responses

from labinterp.pipeline import interpret_bundle
from labinterp.server.app import create_app
from tests.builders import MG, P
from tests.conftest import NOW, SITE
from tests.contract.test_api import BASE, batch_response_for
from tests.contract.test_api_robust import p08, serve


@pytest.fixture
def client(tmp_path: Any) -> Any:
    return create_app({"FHIR_BASE_URL": BASE, "MAPPINGS_DIR": str(SITE), "QUEUE_PATH": str(tmp_path / "q.db")}).test_client()


@pytest.mark.parametrize("query", ["dry-run=maybe", "dryrun", "dry-run=y", "strict=perhaps", "now2=x"])
@responses.activate
def test_odd_parameters_are_400_and_write_nothing(client: Any, query: str) -> None:
    serve(batch_response_for(p08()))
    r = client.post(f"/Patient/p08/$interpret?{query}")
    assert r.status_code == 400 and r.json["resourceType"] == "OperationOutcome"
    assert not [c for c in responses.calls if c.request.method == "POST"]  # nothing sent to the server


@pytest.mark.parametrize("query", ["dry-run", "dry-run=on", "dry-run=true", "dry-run=1", "dry_run=yes"])
@responses.activate
def test_dry_run_spellings_never_write(client: Any, query: str) -> None:
    serve(batch_response_for(p08()))
    r = client.post(f"/Patient/p08/$interpret?{query}&now=2026-01-20T12:00:00Z")
    assert r.status_code == 200
    assert [c.request.method for c in responses.calls] == ["POST"] and '"batch"' in str(responses.calls[0].request.body)


def test_a_result_without_a_value_is_answered_not_dropped(site_k: Any) -> None:
    p = P("da", "female", "1960-01-01", "")
    obs = p.lab(MG, 1.0, "mg/dL", "2026-01-15T08:00:00+01:00")
    del obs["valueQuantity"]
    obs["dataAbsentReason"] = {
        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason", "code": "error"}]
    }
    reports = [
        e["resource"]
        for e in interpret_bundle(p.bundle(), site_k, NOW).bundle["entry"]
        if e["resource"]["resourceType"] == "DiagnosticReport"
    ]
    assert len(reports) == 1 and "dataAbsentReason: error" in reports[0]["conclusion"]
