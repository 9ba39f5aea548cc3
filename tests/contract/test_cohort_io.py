"""Loading cohorts into a server in chunks that never split a patient, and reading a cohort from a server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import responses

from labinterp.cohort.io import read_cohort_server
from labinterp.cohort.synth import as_bundle, table2_patients
from labinterp.fhir.client import FhirClient
from labinterp.knowledge import Knowledge
from labinterp.sandbox.hapi import load_file

BASE = "http://fhir.test/fhir"


@responses.activate
def test_load_in_transactions_that_keep_patients_whole(tmp_path: Path, k: Knowledge) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps(as_bundle(table2_patients(k)[:30], k)))  # 30 patients x 9 resources
    responses.post(BASE, json={"resourceType": "Bundle", "type": "transaction-response", "entry": []})
    assert load_file(path, BASE, chunk=100) == 270
    sent = [json.loads(c.request.body) for c in responses.calls]
    assert [len(b["entry"]) for b in sent] == [108, 108, 54]  # 12 whole patients each
    for b in sent:
        assert b["entry"][0]["resource"]["resourceType"] == "Patient"
        assert all(e["request"]["method"] == "PUT" and e["fullUrl"].startswith(BASE) for e in b["entry"])


def serve_patient_a() -> None:
    """The batch read of Patient/a: the Patient, and no results."""
    patient = {"resourceType": "Patient", "id": "a", "gender": "male", "birthDate": "1950-01-01"}
    entries = [{"resource": patient, "response": {"status": "200 OK"}}] + [
        {"resource": {"resourceType": "Bundle", "type": "searchset", "entry": []}, "response": {"status": "200 OK"}}
    ] * 6
    responses.post(BASE, json={"resourceType": "Bundle", "type": "batch-response", "entry": entries})


@responses.activate
def test_read_a_cohort_from_a_server(k: Knowledge) -> None:
    responses.get(
        f"{BASE}/Patient",
        json={"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": {"resourceType": "Patient", "id": "a"}}]},
    )
    serve_patient_a()
    data = read_cohort_server(FhirClient(BASE), k)
    assert [e["resource"]["id"] for e in data["entry"]] == ["a"] and len(responses.calls) == 2


@responses.activate
def test_a_server_patient_whose_id_is_not_a_fhir_id_is_left_out_not_fatal(k: Knowledge, caplog: pytest.LogCaptureFixture) -> None:
    """An id from the server is untrusted: one that is not a FHIR id never reaches a URL, and stops nothing."""
    odd = "../../metadata"
    listed = [{"resource": {"resourceType": "Patient", "id": i}} for i in (odd, "a")]
    responses.get(f"{BASE}/Patient", json={"resourceType": "Bundle", "type": "searchset", "entry": listed})
    serve_patient_a()
    data = read_cohort_server(FhirClient(BASE), k)
    assert [e["resource"]["id"] for e in data["entry"]] == ["a"] and len(responses.calls) == 2
    assert "1 Patient(s) whose id is not a FHIR id" in caplog.text and odd not in caplog.text
