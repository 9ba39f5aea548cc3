"""Issue 9 point 5, against a real HAPI FHIR JPA server (request validation on): a record as US EHRs and Synthea
export it (tests/data/uscore: ~300 resources claiming US Core profiles this offline server does not have, a
transaction Bundle with urn:uuid fullUrls and references) is accepted, the unknown profiles being warnings;
labinterp interprets the patient from the server and HAPI accepts its reports; a structurally broken resource
is still refused."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from labinterp.fhir.client import FhirClient
from labinterp.sandbox.hapi import load_file
from labinterp.server.app import create_app
from tests.conftest import ROOT, SITE

pytestmark = pytest.mark.integration

RECORD = ROOT / "tests" / "data" / "uscore" / "uscore-record.json"
MRN = "http://hospital.example.org/mrn%7CMRN-0047731"
SERIES = "urn:labinterp:series"
US_CORE = "http://hl7.org/fhir/us/core/StructureDefinition/"
FHIR_JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}


@pytest.fixture(scope="module")
def uscore(fhir_url: str) -> tuple[str, float]:
    """The record loaded as `labinterp sandbox load` loads it; the server's id of its patient (the newest with
    its MRN: HAPI assigns ids to POSTed entries) and the seconds the load took."""
    started = time.monotonic()
    assert load_file(RECORD, fhir_url, timeout=600.0) == len(json.loads(RECORD.read_text())["entry"])
    took = time.monotonic() - started
    patients = FhirClient(fhir_url).search(f"Patient?identifier={MRN}&_sort=-_lastUpdated")
    assert patients
    return str(patients[0]["id"]), took


def count(fhir_url: str, query: str) -> int:
    r = requests.get(f"{fhir_url}/{query}&_summary=count", headers=FHIR_JSON, timeout=60)
    r.raise_for_status()
    return int(r.json()["total"])


def test_hapi_takes_the_record_whole(fhir_url: str, uscore: tuple[str, float]) -> None:
    pid, took = uscore
    assert took < 600
    assert count(fhir_url, f"Observation?subject=Patient/{pid}") == 222
    assert count(fhir_url, f"Encounter?subject=Patient/{pid}") == 27
    assert count(fhir_url, f"Immunization?patient=Patient/{pid}") == 8
    patient = FhirClient(fhir_url).read("Patient", pid)
    assert patient["meta"]["profile"] == [US_CORE + "us-core-patient"]  # kept as sent, not checked
    assert {e["url"] for e in patient["extension"]} >= {US_CORE + "us-core-race", US_CORE + "us-core-ethnicity"}


def test_labinterp_interprets_the_record_and_hapi_takes_its_reports(
    fhir_url: str, uscore: tuple[str, float], tmp_path: Path
) -> None:
    pid, _ = uscore
    app = create_app({"FHIR_BASE_URL": fhir_url, "MAPPINGS_DIR": str(SITE), "QUEUE_PATH": str(tmp_path / "q.db")})
    r = app.test_client().post(f"/Patient/{pid}/$interpret")
    assert r.status_code == 200, r.json
    assert r.headers["X-Labinterp-Warnings"] == "1"
    assert set(r.headers["X-Labinterp-Created"].split(",")) == {
        "linezolid",
        "genotype",
        "exposure-risk",
        "egfr",
        "renal",
        "magnesium",
        "arrhythmia-risk",
    }
    body: dict[str, Any] = r.json or {}
    params = {p["name"]: p["resource"] for p in body["parameter"]}
    (issue,) = params["outcome"]["issue"]
    assert issue["severity"] == "warning" and "unknown unit 'mg/100mL' for magnesium" in issue["diagnostics"]
    statuses = {e["response"]["status"][:3] for e in params["return"]["entry"]}
    assert statuses <= {"200", "201"}, statuses
    reports = FhirClient(fhir_url).search(f"DiagnosticReport?subject=Patient/{pid}&identifier={SERIES}%7C")
    assert {d["code"]["text"] for d in reports} == {
        "Linezolid therapeutic drug monitoring",
        "Pharmacogenetic genotype interpretation (linezolid)",
        "Renal function (estimated GFR)",
        "Serum magnesium interpretation",
    }
    lzd = next(d for d in reports if d["code"]["text"].startswith("Linezolid"))
    assert lzd["conclusionCode"][0]["coding"][0]["code"] == "H"
    assert "Not used" in lzd["text"]["div"] and "mg/100mL" in lzd["text"]["div"]


def post(fhir_url: str, resource: dict[str, Any]) -> requests.Response:
    return requests.post(f"{fhir_url}/{resource['resourceType']}", json=resource, headers=FHIR_JSON, timeout=120)


def test_an_unknown_profile_is_a_warning_but_broken_structure_is_refused(fhir_url: str, uscore: tuple[str, float]) -> None:
    pid, _ = uscore
    good: dict[str, Any] = {
        "resourceType": "Observation",
        "meta": {"profile": [US_CORE + "us-core-observation-lab"]},
        "status": "final",
        "category": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "2601-3"}], "text": "Magnesium"},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": "2019-05-02T09:00:00+00:00",
        "valueQuantity": {"value": 0.8, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"},
    }
    accepted = post(fhir_url, good)
    assert accepted.status_code == 201, accepted.text
    for broken, says in (
        ({**good, "valueQuantity": {**good["valueQuantity"], "value": "nine"}}, "not a valid decimal"),  # wrong type
        ({k: v for k, v in good.items() if k != "status"}, "Observation.status: minimum required = 1"),  # cardinality
        ({**good, "subject": f"Patient/{pid}"}, "must be an Object, not a Primitive"),  # a Reference sent as a string
    ):
        refused = post(fhir_url, broken)
        assert 400 <= refused.status_code < 500, refused.text
        issues = refused.json()["issue"]
        errors = [i for i in issues if i["severity"] in ("error", "fatal")]
        assert errors and any(says in i.get("diagnostics", "") for i in errors), issues
        assert all("us-core" not in i.get("diagnostics", "") for i in errors)  # the unknown profile is never the error
    broken_bundle = json.loads(RECORD.read_text())
    broken_bundle["entry"] = broken_bundle["entry"][:3]  # Organization, Practitioner, Patient
    broken_bundle["entry"][2]["resource"]["birthDate"] = "22/08/1956"
    refused = requests.post(fhir_url, json=broken_bundle, headers=FHIR_JSON, timeout=300)
    assert 400 <= refused.status_code < 500, refused.text  # one broken entry refuses the transaction whole
    assert any("Not a valid date format" in i.get("diagnostics", "") for i in refused.json()["issue"])
