"""The reconciliation poll and the Subscription against HTTP mocked with `responses`."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import responses
from flask import Flask

from labinterp.fhir.client import FhirClient
from labinterp.knowledge import Knowledge
from labinterp.server.queue import JobQueue
from labinterp.server.worker import POLL_KEY, Poller, register_subscription, subscription

BASE = "http://fhir.test/fhir"


def obs(oid: str, patient: str, updated: str, ours: bool = False) -> dict:
    r = {
        "resourceType": "Observation",
        "id": oid,
        "subject": {"reference": f"Patient/{patient}"},
        "meta": {"lastUpdated": updated},
    }
    if ours:
        r["identifier"] = [{"system": "urn:labinterp:series", "value": "egfr:x"}]
    return r


@responses.activate
def test_poll_enqueues_changed_patients_and_keeps_a_watermark(tmp_path: Path, site_k: Knowledge) -> None:
    q = JobQueue(tmp_path / "q.db")
    q.set_meta(POLL_KEY, "2026-01-20T10:00:00.000+00:00")
    found = [
        obs("a", "p1", "2026-01-20T10:05:00.000+00:00"),
        obs("b", "p1", "2026-01-20T10:06:00.000+00:00"),
        obs("c", "p2", "2026-01-20T10:07:00.000+00:00", ours=True),
    ]
    responses.get(
        f"{BASE}/Observation", json={"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in found]}
    )
    n = Poller(lambda: FhirClient(BASE), q, site_k).poll_once()
    assert n == 1 and q.counts()["pending"] == 1  # p2's only change was labinterp's own eGFR
    sent = parse_qs(urlparse(responses.calls[0].request.url).query)
    assert sent["_lastUpdated"] == ["ge2026-01-20T10:00:00.000+00:00"]  # the "+" survived encoding
    assert q.get_meta(POLL_KEY) == "2026-01-20T10:07:00.000+00:00"


def test_subscription_criteria_and_channel(site_k: Knowledge) -> None:
    sub = subscription(site_k, "http://svc:8080/hook", "tok")
    assert sub["criteria"].startswith("Observation?code=")
    codes = sub["criteria"].split("=", 1)[1].split(",")
    assert "http://loinc.org|19123-9" in codes and "http://loinc.org|84413-4" in codes and "http://loinc.org|69548-6" in codes
    assert "http://lab.example.org/codes|LZD-P" in codes and "http://loinc.org|2160-0" in codes
    assert sub["channel"] == {
        "type": "rest-hook",
        "endpoint": "http://svc:8080/hook",
        "payload": "application/fhir+json",
        "header": ["Authorization: Bearer tok"],
    }


@responses.activate
def test_registering_twice_is_one_put(site_k: Knowledge) -> None:
    responses.put(
        f"{BASE}/Subscription/labinterp-observations", json={"resourceType": "Subscription", "id": "labinterp-observations"}
    )
    c = FhirClient(BASE)
    register_subscription(c, site_k, "http://svc/hook")
    register_subscription(c, site_k, "http://svc/hook")
    assert [call.request.method for call in responses.calls] == ["PUT", "PUT"]


def _app_serving_p08_with_a_bad_unit(tmp_path: Path, strict: bool) -> tuple[Flask, dict[str, Any]]:
    import json

    from labinterp.server.app import create_app
    from tests.conftest import SITE
    from tests.contract.test_api import READ, batch_response_for, tx_response

    bundle = json.loads((Path(__file__).resolve().parents[1] / "data" / "patients" / "p08.json").read_text())
    obs = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation")
    obs["valueQuantity"]["code"] = obs["valueQuantity"]["unit"] = "furlongs"
    READ[:] = [batch_response_for(bundle)]
    responses.add_callback(responses.POST, BASE, callback=tx_response)
    app = create_app({"FHIR_BASE_URL": BASE, "MAPPINGS_DIR": str(SITE), "QUEUE_PATH": str(tmp_path / "q.db"), "STRICT": strict})
    return app, obs


@responses.activate
def test_queued_job_with_a_bad_resource_succeeds_with_warnings(tmp_path: Path) -> None:
    """Before: the job failed for good (InputError) and the patient got no report. Now: done, reports written,
    the warning recorded with the job and shown by GET /queue."""
    from labinterp.server.worker import Worker

    app, obs = _app_serving_p08_with_a_bad_unit(tmp_path, strict=False)
    services = app.extensions["labinterp"]
    services.queue.enqueue("p08", "notification")
    assert Worker(services.queue, services.process).run_one()
    assert services.queue.counts() == {"pending": 0, "running": 0, "done": 1, "failed": 0}
    assert [json_call_type(c) for c in responses.calls] == ["batch", "transaction"]  # written
    (warned,) = app.test_client().get("/queue").json["warned"]
    assert len(warned["warnings"]) == 1 and warned["warnings"][0].startswith(f"Observation/{obs['id']} valueQuantity.unit")


@responses.activate
def test_strict_queued_job_fails_for_good(tmp_path: Path) -> None:
    from labinterp.server.worker import Worker

    app, obs = _app_serving_p08_with_a_bad_unit(tmp_path, strict=True)
    services = app.extensions["labinterp"]
    services.queue.enqueue("p08", "notification")
    Worker(services.queue, services.process).run_one()
    (failed,) = services.queue.failures()
    assert f"Observation/{obs['id']} valueQuantity.unit" in str(failed["error"]) and len(responses.calls) == 1
    assert services.queue.warned() == []


def test_queue_file_from_before_warnings_is_migrated(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, patient TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', "
        "state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0, not_before REAL NOT NULL, "
        "created REAL NOT NULL, updated REAL NOT NULL, error TEXT NOT NULL DEFAULT '');"
    )
    db.close()
    q = JobQueue(path)
    q.enqueue("p1")
    job = q.claim()
    assert job is not None
    q.done(job, ["Observation/x valueQuantity.unit: unknown unit"])
    assert q.warned()[0]["warnings"] == ["Observation/x valueQuantity.unit: unknown unit"]


def json_call_type(call: Any) -> str:
    import json

    return str(json.loads(call.request.body)["type"])
