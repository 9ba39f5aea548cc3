"""The reconciliation poll and the Subscription against HTTP mocked with `responses`."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlparse

import responses

from service.fhir.client import FhirClient
from service.knowledge import Knowledge
from service.queue import JobQueue
from service.worker import POLL_KEY, Poller, register_subscription, subscription

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
