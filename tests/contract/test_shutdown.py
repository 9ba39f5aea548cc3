"""Graceful shutdown: the worker stops claiming, running jobs get a grace period, and a job still running then is
handed back to the queue (not waiting for its lease) and claimed again at once by the next worker."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from labinterp.server.app import create_app
from labinterp.server.queue import JobQueue
from labinterp.server.worker import Worker, chain_sigterm
from tests.conftest import SITE


def wait_for(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_job_running_at_stop_is_released_and_claimed_again_at_once(tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "q.db", lease_seconds=300)  # a lease far longer than the test
    q.enqueue("p1", "notification")
    started, finish = threading.Event(), threading.Event()

    def slow(patient: str) -> list[str]:
        started.set()
        finish.wait(10)
        return []

    old = Worker(q, slow, threads=1, idle_seconds=0.01)
    old.start()
    assert started.wait(5)
    assert old.stop(grace=0.2) == 1
    assert q.counts() == {"pending": 1, "running": 0, "done": 0, "failed": 0}
    finish.set()  # the old thread ends its job after the hand-back: its outcome is not recorded
    wait_for(lambda: not any(t.is_alive() for t in old._threads))
    assert q.counts()["pending"] == 1 and q.counts()["done"] == 0

    processed: list[str] = []
    new = Worker(q, lambda p: processed.append(p) or [], threads=1)
    job = q.claim()
    assert job is not None and job.patient == "p1" and job.attempts == 1  # the interrupted try is not counted
    q.release(job)  # (put back for the new worker's own claim)
    assert new.run_one() and processed == ["p1"]
    assert q.counts() == {"pending": 0, "running": 0, "done": 1, "failed": 0}


def test_a_job_that_finishes_within_the_grace_is_done_not_released(tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "q.db")
    q.enqueue("p1")
    started = threading.Event()

    def quick(patient: str) -> list[str]:
        started.set()
        time.sleep(0.2)
        return []

    w = Worker(q, quick, threads=1, idle_seconds=0.01)
    w.start()
    assert started.wait(5)
    assert w.stop(grace=5.0) == 0
    assert q.counts() == {"pending": 0, "running": 0, "done": 1, "failed": 0}


def test_no_job_is_claimed_once_a_stop_is_requested(tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "q.db")
    w = Worker(q, lambda p: [], threads=2, idle_seconds=0.01)
    w.start()
    w.request_stop()
    q.enqueue("p1")
    time.sleep(0.1)
    assert w.stop(grace=1.0) == 0
    assert q.counts()["pending"] == 1


def test_the_apps_stop_hands_back_running_jobs_and_is_idempotent(tmp_path: Path) -> None:
    app = create_app(
        {
            "FHIR_BASE_URL": "http://fhir.test/fhir",
            "MAPPINGS_DIR": str(SITE),
            "QUEUE_PATH": str(tmp_path / "q.db"),
            "WORKER": True,
            "POLL_SECONDS": 0,
        }
    )
    services, worker = app.extensions["labinterp"], app.extensions["labinterp.worker"]
    started, finish = threading.Event(), threading.Event()

    def slow(patient: str) -> list[str]:
        started.set()
        finish.wait(10)
        return []

    worker.process = slow
    services.queue.enqueue("p1", "notification")
    assert started.wait(5)
    worker._stop_requested = time.monotonic() - 100  # the grace (15 s) has passed already
    try:
        assert app.extensions["labinterp.stop"]() == 1
        assert app.extensions["labinterp.stop"]() == 1  # once only (atexit calls it again)
        assert services.queue.counts()["pending"] == 1 and services.queue.counts()["running"] == 0
        text = app.test_client().get("/metrics").get_data(as_text=True)
        assert 'labinterp_jobs_total{outcome="released"} 1.0' in text
    finally:
        finish.set()


def test_sigterm_requests_the_stop_before_the_handler_already_there() -> None:
    calls: list[str] = []
    original = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda signum, frame: calls.append("gunicorn"))
    try:
        assert chain_sigterm(lambda: calls.append("stop"))
        os.kill(os.getpid(), signal.SIGTERM)
        wait_for(lambda: len(calls) == 2, 5)
        assert calls == ["stop", "gunicorn"]
    finally:
        signal.signal(signal.SIGTERM, original)


def test_sigterm_is_left_alone_without_a_python_handler() -> None:
    original = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        assert not chain_sigterm(lambda: None)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, original)
