"""Against a real HAPI FHIR JPA server (request validation on, Genomics Reporting IG installed): what
labinterp writes is accepted, nothing is duplicated, changed inputs amend, Subscriptions make reports
appear without calling the service, and a service stopped with queued work loses nothing."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import requests

from labinterp.fhir.client import FhirClient
from labinterp.server.app import create_app
from labinterp.server.queue import JobQueue
from tests.conftest import SITE
from tests.integration.conftest import Service, own_copy

pytestmark = pytest.mark.integration

SERIES = "urn:labinterp:series"
PATIENTS = [f"p{i:02d}" for i in range(1, 15)]


def api(fhir_url: str, tmp_path: Path) -> Any:
    return create_app({"FHIR_BASE_URL": fhir_url, "MAPPINGS_DIR": str(SITE), "QUEUE_PATH": str(tmp_path / "q.db")}).test_client()


def written(client: FhirClient, patient: str) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for rtype in ("DiagnosticReport", "RiskAssessment", "Observation"):
        out[rtype] = client.search(f"{rtype}?subject=Patient/{patient}&identifier={SERIES}%7C&_count=100")
    return out


def test_every_example_is_written_and_accepted(loaded: str, tmp_path: Path) -> None:
    c = api(loaded, tmp_path)
    for pid in PATIENTS:
        r = c.post(f"/Patient/{pid}/$interpret")  # ?now= only with dry-run: a real write is issued now
        assert r.status_code == 200, (pid, r.json)
        assert r.headers["X-Labinterp-Requests"] in ("1", "2"), pid
        statuses = {e["response"]["status"][:3] for e in r.json.get("entry", [])}
        assert statuses <= {"200", "201"}, (pid, statuses)
    fhir = FhirClient(loaded)
    stored = written(fhir, "p01")
    reports = {d["code"]["text"]: d for d in stored["DiagnosticReport"]}
    assert set(reports) == {
        "Linezolid therapeutic drug monitoring",
        "Pharmacogenetic genotype interpretation (linezolid)",
        "Renal function (estimated GFR)",
    }
    assert reports["Linezolid therapeutic drug monitoring"]["conclusionCode"][0]["coding"][0]["code"] == "L"
    risk = stored["RiskAssessment"][0]
    under = risk["prediction"][0]
    # the measured trough (1.5 mg/L, below range) decides; the CYP3A5 expresser prior (0.259) stays in the rationale
    assert under["qualitativeRisk"]["coding"][0]["code"] == "high" and "probabilityDecimal" not in under
    assert under["qualitativeRisk"]["text"].startswith("high (measured trough") and "25.9%" in under["rationale"]
    assert stored["Observation"][0]["code"]["coding"][0]["code"] == "98979-8"
    prov = fhir.search("Provenance?target=" + "DiagnosticReport/" + reports["Linezolid therapeutic drug monitoring"]["id"])
    assert prov and prov[0]["agent"][0]["who"]["reference"].startswith("Device/")


def test_running_twice_duplicates_nothing(loaded: str, tmp_path: Path) -> None:
    c = api(loaded, tmp_path)
    for pid in PATIENTS:
        c.post(f"/Patient/{pid}/$interpret")  # ?now= only with dry-run: a real write is issued now
    fhir = FhirClient(loaded)
    before = {pid: {k: len(v) for k, v in written(fhir, pid).items()} for pid in PATIENTS}
    for pid in PATIENTS:
        r = c.post(f"/Patient/{pid}/$interpret")
        assert r.status_code == 200 and r.headers["X-Labinterp-Created"] == "" and r.headers["X-Labinterp-Amended"] == ""
        assert r.headers["X-Labinterp-Requests"] == "1"  # a read, and nothing to write
    after = {pid: {k: len(v) for k, v in written(fhir, pid).items()} for pid in PATIENTS}
    assert before == after
    assert len(fhir.search("Device?identifier=urn:labinterp:device%7C")) == 1


def test_changed_input_amends_the_report(loaded: str, tmp_path: Path) -> None:
    pid = own_copy(loaded, "p03", "amend-")  # its own copy: the examples other tests read stay as loaded
    c = api(loaded, tmp_path)
    c.post(f"/Patient/{pid}/$interpret")
    fhir = FhirClient(loaded)
    trough = fhir.read("Observation", f"{pid}-lzd11")
    trough["valueQuantity"]["value"] = 9.5  # within -> above range
    fhir.update(trough)
    r = c.post(f"/Patient/{pid}/$interpret")
    assert r.status_code == 200 and "linezolid" in r.headers["X-Labinterp-Amended"]
    reports = [d for d in written(fhir, pid)["DiagnosticReport"] if d["code"]["text"].startswith("Linezolid")]
    assert len(reports) == 1 and reports[0]["status"] == "amended" and reports[0]["meta"]["versionId"] == "2"
    assert reports[0]["conclusionCode"][0]["coding"][0]["code"] == "H"


def wait_for(predicate: Any, timeout: float, step: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


def test_subscription_writes_a_report_without_calling_the_service(loaded: str, tmp_path: Path) -> None:
    fhir = FhirClient(loaded)
    svc = Service(loaded, tmp_path, worker=True, callback=True)
    try:
        assert wait_for(lambda: fhir.read("Subscription", "labinterp-observations").get("status") == "active", 60)
        fhir.update({"resourceType": "Patient", "id": "sub1", "gender": "male", "birthDate": "1950-05-05"})
        fhir.request(
            "POST",
            "Observation",
            body={  # a new linezolid trough, by the laboratory's own code
                "resourceType": "Observation",
                "status": "final",
                "subject": {"reference": "Patient/sub1"},
                "category": [
                    {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}
                ],
                "code": {
                    "coding": [{"system": "http://lab.example.org/codes", "code": "LZD-P"}],
                    "text": "Linezolid plasma concentration",
                },
                "effectiveDateTime": "2026-01-15T08:00:00Z",
                "valueQuantity": {"value": 11.2, "unit": "mg/L", "system": "http://unitsofmeasure.org", "code": "mg/L"},
            },
        )
        assert wait_for(lambda: bool(written(fhir, "sub1")["DiagnosticReport"]), 60), "no report appeared"
        report = written(fhir, "sub1")["DiagnosticReport"][0]
        assert report["code"]["text"].startswith("Linezolid") and report["conclusionCode"][0]["coding"][0]["code"] == "H"
    finally:
        svc.stop()


def test_stopping_with_queued_work_loses_nothing(loaded: str, tmp_path: Path) -> None:
    fhir = FhirClient(loaded)
    for pid in ("q1", "q2", "q3"):
        fhir.update({"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1960-02-02"})
        fhir.update(
            {
                "resourceType": "Observation",
                "id": f"{pid}-mg",
                "status": "final",
                "subject": {"reference": f"Patient/{pid}"},
                "code": {"coding": [{"system": "http://loinc.org", "code": "19123-9"}]},
                "effectiveDateTime": "2026-01-15T09:00:00Z",
                "valueQuantity": {"value": 1.3, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"},
            }
        )
    first = Service(loaded, tmp_path, worker=False)  # takes notifications, does no work
    for pid in ("q1", "q2", "q3"):
        obs = fhir.read("Observation", f"{pid}-mg")
        assert requests.put(f"{first.url}/hook/Observation/{pid}-mg", json=obs, timeout=10).status_code == 200
    first.stop()
    queue = JobQueue(tmp_path / "queue.sqlite3")
    assert queue.counts()["pending"] == 3
    job = queue.claim()  # a worker that died mid-job: left "running"
    assert job is not None
    second = Service(loaded, tmp_path, worker=True)
    try:
        assert wait_for(lambda: queue.counts()["done"] == 3, 60), queue.counts()
        for pid in ("q1", "q2", "q3"):
            assert len(written(fhir, pid)["DiagnosticReport"]) == 1
    finally:
        second.stop()


def test_concurrent_calls_for_one_patient_write_one_report(loaded: str, tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    fhir = FhirClient(loaded)
    fhir.update({"resourceType": "Patient", "id": "cc1", "gender": "female", "birthDate": "1970-03-03"})
    fhir.update(
        {
            "resourceType": "Observation",
            "id": "cc1-mg",
            "status": "final",
            "subject": {"reference": "Patient/cc1"},
            "code": {"coding": [{"system": "http://loinc.org", "code": "19123-9"}]},
            "effectiveDateTime": "2026-01-15T09:00:00Z",
            "valueQuantity": {"value": 1.1, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"},
        }
    )
    svc = Service(loaded, tmp_path, worker=False)
    try:
        with ThreadPoolExecutor(6) as pool:
            codes = list(pool.map(lambda _: requests.post(f"{svc.url}/Patient/cc1/$interpret", timeout=60).status_code, range(6)))
        assert codes == [200] * 6
    finally:
        svc.stop()
    stored = written(fhir, "cc1")
    assert len(stored["DiagnosticReport"]) == 1 and len(stored["RiskAssessment"]) == 1
