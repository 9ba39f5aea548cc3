"""GET /metrics: Prometheus text, HTTP requests by route template (never a path with its ids), FHIR round trips
per interpretation, reports written by kind and interpretation code, problems left out, the queue at scrape time."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import responses
from prometheus_client.parser import text_string_to_metric_families

from labinterp.server.app import create_app
from labinterp.server.observability import Metrics
from tests.conftest import SITE
from tests.contract.test_api import BASE, EXAMPLES, READ, batch_response_for, tx_response

TOKEN = "metrics-test-token-0123456789"


def make_app(tmp_path: Path, **extra: Any) -> Any:
    return create_app(
        {"FHIR_BASE_URL": BASE, "MAPPINGS_DIR": str(SITE), "QUEUE_PATH": str(tmp_path / "q.db"), "WORKER": False, **extra}
    )


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def serve(patient_file: str) -> None:
    READ[:] = [batch_response_for(json.loads((EXAMPLES / patient_file).read_text()))]
    responses.add_callback(responses.POST, BASE, callback=tx_response)


@responses.activate
def test_requests_round_trips_and_reports_are_counted_without_patient_ids(tmp_path: Path) -> None:
    client = make_app(tmp_path).test_client()
    serve("p01.json")
    assert client.post("/Patient/p01/$interpret").status_code == 200
    assert client.post("/Patient/p01/$interpret?dry-run").status_code == 200
    r = client.get("/metrics")
    assert r.status_code == 200 and r.mimetype == "text/plain"
    text = r.get_data(as_text=True)
    assert "p01" not in text  # route templates only: the patient id is in no label
    got = samples(text)
    route = "/Patient/<pid>/$interpret"
    key = (("method", "POST"), ("route", route), ("status", "200"))
    assert got[("labinterp_http_requests_total", key)] == 2
    assert got[("labinterp_http_request_duration_seconds_count", (("method", "POST"), ("route", route)))] == 2
    assert got[("labinterp_interpretations_total", (("outcome", "written"),))] == 1
    assert got[("labinterp_interpretations_total", (("outcome", "dry_run"),))] == 1
    assert got[("labinterp_fhir_requests_per_interpretation_count", ())] == 2
    assert got[("labinterp_fhir_requests_total", ())] == 3  # read + write, then a dry run's read
    written = {labels: v for (name, labels), v in got.items() if name == "labinterp_reports_written_total"}
    assert written, "the written reports are counted"
    kinds = {dict(labels)["kind"] for labels in written}
    assert "linezolid" in kinds and "provenance" not in kinds and "other" not in kinds
    assert {dict(labels)["interpretation"] for labels in written} <= {"<", ">", "L", "N", "H", "LL", "HH", "none"}


def test_unmatched_paths_are_one_label(tmp_path: Path) -> None:
    client = make_app(tmp_path).test_client()
    assert client.get("/no/such/path/p42").status_code == 404
    text = client.get("/metrics").get_data(as_text=True)
    assert 'route="(unmatched)"' in text and "p42" not in text


def test_metrics_take_the_api_token(tmp_path: Path) -> None:
    client = make_app(tmp_path, API_TOKEN=TOKEN).test_client()
    assert client.get("/metrics").status_code == 401
    r = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200 and "labinterp_queue_jobs" in r.get_data(as_text=True)


def test_queue_depth_and_oldest_pending_age_at_scrape_time(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    queue = app.extensions["labinterp"].queue
    queue.enqueue("p1", "test")
    queue.enqueue("p2", "test")
    got = samples(app.test_client().get("/metrics").get_data(as_text=True))
    assert got[("labinterp_queue_jobs", (("state", "pending"),))] == 2
    assert got[("labinterp_queue_jobs", (("state", "running"),))] == 0
    assert got[("labinterp_queue_oldest_pending_age_seconds", ())] >= 0
    job = queue.claim()
    assert job is not None
    queue.done(job)
    queue.done(queue.claim())  # type: ignore[arg-type]
    got = samples(app.test_client().get("/metrics").get_data(as_text=True))
    assert got[("labinterp_queue_jobs", (("state", "done"),))] == 2
    assert got[("labinterp_queue_oldest_pending_age_seconds", ())] == 0


def test_each_app_has_its_own_registry(tmp_path: Path) -> None:
    a, b = make_app(tmp_path / "a"), make_app(tmp_path / "b")
    a.test_client().get("/healthz")
    assert 'route="/healthz"' in a.test_client().get("/metrics").get_data(as_text=True)
    assert 'route="/healthz"' not in b.test_client().get("/metrics").get_data(as_text=True)


@pytest.mark.parametrize(
    "where, expected", [("Observation/o1 valueQuantity.unit", "Observation"), ("Foo/x", "other"), ("input", "other")]
)
def test_problems_are_counted_by_a_known_resource_type_only(where: str, expected: str) -> None:
    from labinterp.extract.facts import Problem
    from labinterp.server.services import Interpretation

    result = SimpleNamespace(problems=[Problem(where, "left out")], response=None)
    m = Metrics()
    m.interpreted(Interpretation(result, None, 1, 0, 0.1, 0.2, True))  # type: ignore[arg-type]
    got = samples(m.exposition().decode())
    assert got[("labinterp_problems_left_out_total", (("resource_type", expected),))] == 1
