"""A reconciliation poll that cannot stall (issue 8 point 5): page by page with the watermark saved as it goes,
no page ceiling that fails the poll, a bounded number of pages per poll, resumed by the next one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import responses

from labinterp.errors import FhirTemporaryError
from labinterp.fhir.client import FhirClient
from labinterp.fhir.retry import RetryPolicy
from labinterp.knowledge import Knowledge
from labinterp.server.queue import JobQueue
from labinterp.server.services import LOCK_STRIPES, Services
from labinterp.server.worker import POLL_KEY, Poller

BASE = "http://fhir.test/fhir"


def page(n: int, last: int) -> dict[str, Any]:
    """Page n of `last`: one changed Observation of patient p<n>, updated at minute n."""
    resource = {
        "resourceType": "Observation",
        "id": f"o{n}",
        "subject": {"reference": f"Patient/p{n}"},
        "meta": {"lastUpdated": f"2026-01-20T10:{n:02d}:00.000+00:00"},
    }
    links = [{"relation": "next", "url": f"{BASE}/page/{n + 1}"}] if n < last else []
    return {"resourceType": "Bundle", "type": "searchset", "link": links, "entry": [{"resource": resource}]}


def serve(pages: int, fail_at: int | None = None) -> None:
    responses.get(f"{BASE}/Observation", json=page(1, pages))
    for n in range(2, pages + 1):
        if n == fail_at:
            responses.get(f"{BASE}/page/{n}", status=503)
        else:
            responses.get(f"{BASE}/page/{n}", json=page(n, pages))


def client() -> FhirClient:
    return FhirClient(BASE, retry=RetryPolicy(attempts=1), sleep=lambda s: None)


@responses.activate
def test_more_pages_than_the_client_ceiling_do_not_fail_the_poll(tmp_path: Path, site_k: Knowledge) -> None:
    serve(30)  # the client's search() stops at 20 pages; the poll reads on
    q = JobQueue(tmp_path / "q.db")
    q.set_meta(POLL_KEY, "2026-01-20T09:00:00.000+00:00")
    assert Poller(client, q, site_k).poll_once() == 30
    assert q.get_meta(POLL_KEY) == "2026-01-20T10:30:00.000+00:00"


@responses.activate
def test_an_interrupted_poll_keeps_what_it_read(tmp_path: Path, site_k: Knowledge) -> None:
    serve(10, fail_at=6)
    q = JobQueue(tmp_path / "q.db")
    q.set_meta(POLL_KEY, "2026-01-20T09:00:00.000+00:00")
    with pytest.raises(FhirTemporaryError):
        Poller(client, q, site_k).poll_once()
    assert q.counts()["pending"] == 5 and q.get_meta(POLL_KEY) == "2026-01-20T10:05:00.000+00:00"


@responses.activate
def test_a_backlog_is_read_over_several_polls(tmp_path: Path, site_k: Knowledge) -> None:
    serve(7)
    q = JobQueue(tmp_path / "q.db")
    q.set_meta(POLL_KEY, "2026-01-20T09:00:00.000+00:00")
    assert Poller(client, q, site_k, max_pages=3).poll_once() == 3
    assert q.get_meta(POLL_KEY) == "2026-01-20T10:03:00.000+00:00"  # the next poll starts there


def test_the_patient_lock_table_is_bounded() -> None:
    services = Services.__new__(Services)
    object.__setattr__(services, "_locks", Services.__dataclass_fields__["_locks"].default_factory())  # type: ignore[misc]
    locks = {id(services._patient_lock(f"p{i}")) for i in range(5000)}
    assert len(locks) <= LOCK_STRIPES
    assert services._patient_lock("p1") is services._patient_lock("p1")


@responses.activate
def test_the_poll_is_filtered_by_the_subscriptions_codes(tmp_path: Path, site_k: Knowledge) -> None:
    """Before: every Observation changed since the watermark (weights, potassium, labinterp's own eGFR...) was read
    and its patient enqueued. Now the poll watches what the Subscription watches (see worker's docstring for what
    it then does not see, and where that is caught)."""
    from urllib.parse import parse_qs, urlparse

    from labinterp.server.worker import subscription, subscription_codes

    serve(2)
    q = JobQueue(tmp_path / "q.db")
    q.set_meta(POLL_KEY, "2026-01-20T09:00:00.000+00:00")
    assert Poller(client, q, site_k).poll_once() == 2
    sent = parse_qs(urlparse(responses.calls[0].request.url).query)
    codes = sent["code"][0].split(",")
    assert (
        codes
        == subscription_codes(site_k)
        == subscription(site_k, "http://svc/hook", None)["criteria"].split("=", 1)[1].split(",")
    )
    assert "http://lab.example.org/codes|LZD-P" in codes and "http://loinc.org|2160-0" in codes
    assert sent["_lastUpdated"] == ["ge2026-01-20T09:00:00.000+00:00"] and sent["_sort"] == ["_lastUpdated"]
    assert q.get_meta(POLL_KEY) == "2026-01-20T10:02:00.000+00:00"  # saved page by page, as before
