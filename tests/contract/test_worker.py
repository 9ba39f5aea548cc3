"""The reconciliation poll and the Subscription against HTTP mocked with `responses`."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
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
    from tests.builders import old_queue_file

    path = old_queue_file(tmp_path / "old.db")
    q = JobQueue(path)
    q.enqueue("p1")
    job = q.claim()
    assert job is not None
    q.done(job, ["Observation/x valueQuantity.unit: unknown unit"])
    assert q.warned()[0]["warnings"] == ["Observation/x valueQuantity.unit: unknown unit"]


def json_call_type(call: Any) -> str:
    import json

    return str(json.loads(call.request.body)["type"])


# --- an outage of any length loses no queued work (issue 9 point 4) -----------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_long_outage_loses_no_queued_work(tmp_path: Path) -> None:
    """Before: five temporary failures (about 70 s of outage) failed the job for good. Now it is retried, the wait
    doubling to a cap of 5 minutes, for as long as the outage lasts; a fake clock stands for two hours."""
    from labinterp.errors import FhirTemporaryError
    from labinterp.fhir.retry import RetryPolicy
    from labinterp.server.worker import MAX_BACKOFF, Worker

    clock = Clock()
    q = JobQueue(tmp_path / "q.db", clock=clock)
    down_until = clock.now + 2 * 3600
    calls: list[float] = []

    def process(_pid: str) -> None:
        calls.append(clock.now)
        if clock.now < down_until:
            raise FhirTemporaryError("POST", BASE, None, "ConnectionError: the server did not answer")

    worker = Worker(q, process, backoff=RetryPolicy(base_delay=2.0, max_delay=MAX_BACKOFF, jitter=0.0))
    q.enqueue("p1", "notification")
    while worker.run_one():
        assert q.counts()["failed"] == 0
        if q.counts()["pending"]:
            (waiting,) = q.retrying()
            assert worker.run_one() is False  # not due before its backoff has passed
            clock.now = float(str(waiting["next_try"]))  # time passes
    waits = [b - a for a, b in itertools.pairwise(calls)]
    assert len(calls) > 20 and max(waits) <= MAX_BACKOFF + 1 and waits[-2] >= MAX_BACKOFF
    assert q.counts() == {"pending": 0, "running": 0, "done": 1, "failed": 0}


def test_backoff_after_thousands_of_tries_stays_capped(tmp_path: Path) -> None:
    """2 ** attempt would overflow after about a thousand tries (four days at the cap): the wait stays capped."""
    from labinterp.errors import FhirTemporaryError
    from labinterp.server.queue import Job
    from labinterp.server.worker import MAX_BACKOFF, Worker

    clock = Clock()
    q = JobQueue(tmp_path / "q.db", clock=clock)
    q.enqueue("p1")
    job = q.claim()
    assert job is not None
    worker = Worker(q, lambda _p: None)
    worker._retry_or_fail(Job(job.id, "p1", "", 5000), FhirTemporaryError("GET", BASE, 503, "busy"))
    (row,) = q.retrying()
    assert clock.now < float(str(row["next_try"])) <= clock.now + MAX_BACKOFF * 1.1


def test_fatal_errors_fail_at_once(tmp_path: Path) -> None:
    from labinterp.errors import FhirAuthError
    from labinterp.server.worker import Worker

    q = JobQueue(tmp_path / "q.db")
    q.enqueue("p1")

    def process(_pid: str) -> None:
        raise FhirAuthError("POST", BASE, 403, "forbidden")

    Worker(q, process).run_one()
    (failed,) = q.failures()
    assert failed["attempts"] == 1 and failed["retryable"] is False and not q.has_retryable()


def test_failed_jobs_are_requeued_when_the_server_is_ready_again(tmp_path: Path) -> None:
    """A worker whose attempts are capped fails a job on a temporary error as retryable; when idle it checks the
    FHIR server's readiness (at most every recheck_seconds, and only while jobs wait) and requeues them."""
    from labinterp.errors import FhirTemporaryError
    from labinterp.fhir.retry import RetryPolicy
    from labinterp.server.worker import Worker

    clock = Clock()
    q = JobQueue(tmp_path / "q.db", clock=clock)
    up = {"server": False, "checks": 0}

    def ready() -> bool:
        up["checks"] += 1
        return up["server"]

    def process(_pid: str) -> None:
        if not up["server"]:
            raise FhirTemporaryError("POST", BASE, 503, "busy")

    worker = Worker(q, process, attempts=1, backoff=RetryPolicy(jitter=0.0), ready=ready, recheck_seconds=30.0, clock=clock)
    assert worker.recover() == 0 and up["checks"] == 0  # nothing waits: the server is not asked
    q.enqueue("p1")
    worker.run_one()
    assert q.counts()["failed"] == 1 and q.failures()[0]["retryable"] is True
    clock.now += 30
    assert worker.recover() == 0 and up["checks"] == 1  # still down
    up["server"] = True
    clock.now += 10
    assert worker.recover() == 0 and up["checks"] == 1  # not asked again before recheck_seconds
    clock.now += 20
    assert worker.recover() == 1 and up["checks"] == 2
    assert worker.run_one() and q.counts() == {"pending": 0, "running": 0, "done": 1, "failed": 0}


@responses.activate
def test_the_poll_requeues_failed_jobs_and_wakes_waiting_ones_when_the_server_answers(tmp_path: Path, site_k: Knowledge) -> None:
    from labinterp.errors import FhirTemporaryError
    from labinterp.fhir.retry import RetryPolicy

    clock = Clock()
    q = JobQueue(tmp_path / "q.db", clock=clock)
    q.set_meta(POLL_KEY, "2026-01-20T10:00:00.000+00:00")
    for pid in ("failed", "waiting"):
        q.enqueue(pid)
    job = q.claim()
    assert job is not None
    q.fail(job, "FhirTemporaryError: 503", retryable=True)
    job = q.claim()
    assert job is not None
    q.retry(job, "FhirTemporaryError: 503", delay=300)
    poller = Poller(lambda: FhirClient(BASE, retry=RetryPolicy(attempts=1)), q, site_k)
    responses.get(f"{BASE}/Observation", status=503)
    with pytest.raises(FhirTemporaryError):
        poller.poll_once()
    assert poller.server_down and q.counts()["failed"] == 1
    responses.replace(responses.GET, f"{BASE}/Observation", json={"resourceType": "Bundle", "type": "searchset"})
    poller.poll_once()
    assert not poller.server_down and q.counts() == {"pending": 2, "running": 0, "done": 0, "failed": 0}
    assert {q.claim().patient, q.claim().patient} == {"failed", "waiting"}  # type: ignore[union-attr]  # both due now
