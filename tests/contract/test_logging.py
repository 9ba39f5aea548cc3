"""Structured logs with a correlation id: one per request (the caller's X-Request-ID when safe, else a new one),
echoed, in every record emitted while handling the request, stored with the jobs it enqueues and carried into the
worker's logs of those jobs. No patient id in what is logged."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labinterp.server.app import create_app
from labinterp.server.observability import SAFE_REQUEST_ID, configure_logging, correlation, current_request_id
from labinterp.server.queue import JobQueue
from labinterp.server.worker import Worker
from tests.conftest import SITE

BASE = "http://fhir.test/fhir"


@pytest.fixture
def app(tmp_path: Path) -> Any:
    return create_app({"FHIR_BASE_URL": BASE, "MAPPINGS_DIR": str(SITE), "QUEUE_PATH": str(tmp_path / "q.db"), "WORKER": False})


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = configure_logging(json=True, stream=stream)
    before = logging.getLogger("labinterp").level
    try:
        yield stream
    finally:
        logging.getLogger().removeHandler(handler)
        logging.getLogger("labinterp").setLevel(before)


def records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_a_safe_request_id_is_echoed_and_logged(app: Any, json_lines: io.StringIO) -> None:
    r = app.test_client().get("/queue", headers={"X-Request-ID": "abc-12345-def"})
    assert r.headers["X-Request-ID"] == "abc-12345-def"
    done = [x for x in records(json_lines) if x["message"].startswith("request done")]
    assert done and done[-1]["request_id"] == "abc-12345-def"
    assert done[-1]["route"] == "/queue" and done[-1]["status"] == 200 and done[-1]["level"] == "INFO"
    assert current_request_id() is None  # not left behind in the test's context


@pytest.mark.parametrize("given", ["short", "has space in it", "x" * 65, "a_b_c_d_e_f", "id;rm -rf /"])
def test_an_unsafe_request_id_is_replaced(app: Any, given: str) -> None:
    r = app.test_client().get("/healthz", headers={"X-Request-ID": given})
    rid = r.headers["X-Request-ID"]
    assert rid != given and SAFE_REQUEST_ID.fullmatch(rid)


def test_each_request_gets_its_own_id(app: Any) -> None:
    c = app.test_client()
    ids = {c.get("/healthz").headers["X-Request-ID"] for _ in range(3)}
    assert len(ids) == 3


def test_errors_carry_the_id_and_the_route_template_not_the_path(app: Any, json_lines: io.StringIO) -> None:
    r = app.test_client().post("/Patient/secret-patient-42/$interpret?dry-run=maybe", headers={"X-Request-ID": "req-00000001"})
    assert r.status_code == 400 and r.headers["X-Request-ID"] == "req-00000001"
    out = json_lines.getvalue()
    assert "secret-patient-42" not in out and "maybe" not in out
    done = [x for x in records(json_lines) if x["message"].startswith("request done")]
    assert done[-1]["route"] == "/Patient/<pid>/$interpret" and done[-1]["request_id"] == "req-00000001"


def test_a_job_carries_the_id_of_the_request_that_enqueued_it_into_the_workers_logs(
    tmp_path: Path, json_lines: io.StringIO
) -> None:
    q = JobQueue(tmp_path / "q.db")
    with correlation("hook-req-0001"):
        q.enqueue("p1", "notification")
        q.enqueue("p1", "notification")  # coalesced: keeps the first request's id
    q.enqueue("p2", "poll", correlation="")  # none: the worker makes one for the job
    log = logging.getLogger("labinterp.test")
    seen: dict[str, str | None] = {}

    def process(patient: str) -> list[str]:
        seen[patient] = current_request_id()
        log.info("processing a job")
        return []

    Worker(q, process).drain()
    assert seen["p1"] == "hook-req-0001"
    assert seen["p2"] and SAFE_REQUEST_ID.fullmatch(seen["p2"]) and seen["p2"] != "hook-req-0001"
    ids = [x["request_id"] for x in records(json_lines) if x["message"] == "processing a job"]
    assert sorted(ids) == sorted([seen["p1"], seen["p2"]])


def test_text_logs_carry_the_id_too() -> None:
    stream = io.StringIO()
    handler = configure_logging(json=False, stream=stream)
    try:
        with correlation("text-req-0001"):
            logging.getLogger("labinterp.test").warning("something")
        logging.getLogger("labinterp.test").warning("outside")
    finally:
        logging.getLogger().removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert "[text-req-0001] something" in lines[0] and "[-] outside" in lines[1]
