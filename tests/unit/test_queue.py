"""The durable queue and the worker: coalescing, one patient never processed twice at once, recovery
of work left by a stopped process, retries and permanent failures."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from labinterp.errors import FhirTemporaryError, ResourceError
from labinterp.fhir.retry import RetryPolicy
from labinterp.server.queue import JobQueue
from labinterp.server.worker import Worker


def test_enqueue_coalesces_pending_jobs(tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "q.db")
    for _ in range(5):
        q.enqueue("p1", "notification")
    q.enqueue("p2")
    assert q.counts()["pending"] == 2


def test_a_patient_is_never_claimed_twice_at_once(tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "q.db")
    q.enqueue("p1")
    first = q.claim()
    q.enqueue("p1")  # a notification while p1 runs: a new pending job...
    assert first is not None and q.counts() == {"pending": 1, "running": 1, "done": 0, "failed": 0}
    assert q.claim() is None  # ...not handed out while the first runs
    q.done(first)
    second = q.claim()
    assert second is not None and second.patient == "p1"


def test_concurrent_workers_serialize_per_patient(tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "q.db")
    active: dict[str, int] = {}
    overlaps: list[str] = []
    lock = threading.Lock()
    processed: list[str] = []

    def process(patient: str) -> None:
        with lock:
            active[patient] = active.get(patient, 0) + 1
            if active[patient] > 1:
                overlaps.append(patient)
        time.sleep(0.04)
        with lock:
            active[patient] -= 1
            processed.append(patient)

    workers = [Worker(q, process, threads=1, idle_seconds=0.01) for _ in range(4)]
    for w in workers:
        w.start()
    for i in range(30):
        q.enqueue(f"p{i % 3}", "burst")  # bursts of notifications for three patients
        time.sleep(0.005)
    deadline = time.time() + 20
    while time.time() < deadline and (q.counts()["pending"] or q.counts()["running"]):
        time.sleep(0.05)
    for w in workers:
        w.stop()
    assert overlaps == [] and q.counts()["pending"] == 0 and q.counts()["running"] == 0
    assert set(processed) == {"p0", "p1", "p2"}  # (coalescing is tested deterministically above)


def test_work_left_running_by_a_dead_process_is_recovered(tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "q.db", lease_seconds=0.2)
    q.enqueue("p1")
    q.enqueue("p2")
    assert q.claim() is not None  # the process "dies" here with p1 running
    again = JobQueue(tmp_path / "q.db", lease_seconds=0.2)  # a new process on the same file
    time.sleep(0.3)
    seen = set()
    while (job := again.claim()) is not None:
        seen.add(job.patient)
        again.done(job)
    assert seen == {"p1", "p2"}


def test_worker_retries_temporary_errors_and_fails_broken_input(tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "q.db")
    calls: dict[str, int] = {}

    def process(patient: str) -> None:
        calls[patient] = calls.get(patient, 0) + 1
        if patient == "flaky" and calls[patient] < 3:
            raise FhirTemporaryError("POST", "http://x/fhir", 503, "busy")
        if patient == "broken":
            raise ResourceError("Observation/o1 valueQuantity.unit", "unknown unit 'furlongs'")
        if patient == "down":
            raise FhirTemporaryError("POST", "http://x/fhir", None, "no answer")

    w = Worker(q, process, attempts=3, backoff=RetryPolicy(base_delay=0.0, max_delay=0.0, jitter=0.0))
    for p in ("flaky", "broken", "down"):
        q.enqueue(p)
    w.drain(timeout=10)
    assert calls == {"flaky": 3, "broken": 1, "down": 3}
    assert q.counts() == {"pending": 0, "running": 0, "done": 1, "failed": 2}
    errors = {f["patient"]: f["error"] for f in q.failures()}
    assert "unknown unit 'furlongs'" in errors["broken"] and "no answer" in errors["down"]


def test_retry_merges_into_a_newer_pending_job(tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "q.db")
    q.enqueue("p1")
    job = q.claim()
    assert job is not None
    q.enqueue("p1", "newer")
    q.retry(job, "boom", delay=0)
    assert q.counts() == {"pending": 1, "running": 0, "done": 1, "failed": 0}


def test_meta_watermark(tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "q.db")
    assert q.get_meta("poll") is None
    q.set_meta("poll", "2026-01-01T00:00:00Z")
    q.set_meta("poll", "2026-01-02T00:00:00Z")
    assert JobQueue(tmp_path / "q.db").get_meta("poll") == "2026-01-02T00:00:00Z"


class Clock:
    """A fake clock the queue and the worker read instead of the real one: tests never sleep."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def test_finished_jobs_are_pruned_by_age_and_count(tmp_path: Path) -> None:
    """Before: every finished job stayed in the file for good (a flood of notifications grew it without bound)."""
    clock = Clock()
    q = JobQueue(tmp_path / "q.db", retention=3600.0, max_finished=5, clock=clock)
    for i in range(3):  # three done jobs, two hours ago
        q.enqueue(f"old{i}")
        job = q.claim()
        assert job is not None
        q.done(job)
    clock.now += 7200
    for i in range(8):  # eight done jobs now, and seven failed ones
        q.enqueue(f"new{i}")
        job = q.claim()
        assert job is not None
        q.done(job)
        q.enqueue(f"bad{i}")
        job = q.claim()
        assert job is not None
        q.fail(job, "broken")
    q.enqueue("waiting")
    q.enqueue("running")
    running = q.claim()
    assert running is not None and running.patient == "waiting"
    assert q.prune() == 3 + 3 + 3  # the old ones, then all but the newest five done and five failed
    assert q.counts() == {"pending": 1, "running": 1, "done": 5, "failed": 5}
    assert {f["patient"] for f in q.failures()} == {f"bad{i}" for i in range(3, 8)}


def test_jobs_failed_on_a_temporary_error_are_requeued(tmp_path: Path) -> None:
    clock = Clock()
    q = JobQueue(tmp_path / "q.db", clock=clock)
    for pid in ("t1", "t2", "fatal"):
        q.enqueue(pid)
    for _ in range(3):
        job = q.claim()
        assert job is not None
        q.fail(job, "FhirTemporaryError: no answer", retryable=job.patient != "fatal")
    q.enqueue("t2", "newer")  # a notification came meanwhile: t2's failed job merges into it
    assert q.has_retryable()
    assert q.requeue_retryable() == 1
    assert q.counts() == {"pending": 2, "running": 0, "done": 1, "failed": 1}
    assert not q.has_retryable() and q.failures()[0]["patient"] == "fatal"


def test_jobs_in_backoff_are_woken(tmp_path: Path) -> None:
    clock = Clock()
    q = JobQueue(tmp_path / "q.db", clock=clock)
    q.enqueue("p1")
    job = q.claim()
    assert job is not None
    q.retry(job, "FhirTemporaryError: 503", delay=300)
    assert q.claim() is None and q.has_retryable()
    assert q.wake_retrying() == 1
    again = q.claim()
    assert again is not None and again.patient == "p1" and again.attempts == 2


def test_a_queue_file_from_before_retryable_failures_keeps_its_temporary_failures(tmp_path: Path) -> None:
    """Jobs that failed on a temporary error under the old five-try limit are requeued once the server answers."""
    import sqlite3

    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, patient TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', "
        "state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0, not_before REAL NOT NULL, "
        "created REAL NOT NULL, updated REAL NOT NULL, error TEXT NOT NULL DEFAULT '', warnings TEXT NOT NULL DEFAULT '');"
        "INSERT INTO jobs (patient, state, attempts, not_before, created, updated, error) VALUES "
        "('lost', 'failed', 5, 0, 0, 0, 'FhirTemporaryError: POST http://x/fhir: no response: ConnectionError'), "
        "('broken', 'failed', 1, 0, 0, 0, 'ResourceError: Observation/o1: unknown unit');"
    )
    db.commit()
    db.close()
    q = JobQueue(path)
    assert q.requeue_retryable() == 1
    job = q.claim()
    assert job is not None and job.patient == "lost"


def test_release_puts_a_running_job_back_without_counting_the_attempt(tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "q.db", lease_seconds=300)
    q.enqueue("p1")
    job = q.claim()
    assert job is not None and job.attempts == 1
    assert q.release(job)
    assert q.counts() == {"pending": 1, "running": 0, "done": 0, "failed": 0}
    again = q.claim()  # at once: no lease to wait for
    assert again is not None and again.id == job.id and again.attempts == 1
    q.done(again)
    assert not q.release(again)  # no longer running: nothing to hand back


def test_release_merges_into_a_pending_job_of_the_same_patient(tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "q.db")
    q.enqueue("p1")
    job = q.claim()
    assert job is not None
    q.enqueue("p1", delay=60)  # a job for the same patient waiting meanwhile
    assert q.release(job)
    assert q.counts() == {"pending": 1, "running": 0, "done": 1, "failed": 0}
    nxt = q.claim()  # made due now
    assert nxt is not None and nxt.patient == "p1" and nxt.id != job.id


def test_jobs_keep_the_correlation_id_they_were_enqueued_with(tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "q.db")
    q.enqueue("p1", correlation="req-00000001")
    q.enqueue("p1", correlation="req-00000002")  # coalesced: the first id stays
    job = q.claim()
    assert job is not None and job.correlation == "req-00000001"


def test_a_queue_file_from_before_correlation_ids_gets_the_column(tmp_path: Path) -> None:
    from tests.builders import old_queue_file

    path = old_queue_file(tmp_path / "old.db", "p1")
    q = JobQueue(path)
    job = q.claim()
    assert job is not None and job.patient == "p1" and job.correlation == ""
    assert q.oldest_pending_age() is None


def test_a_renewed_lease_keeps_a_slow_job_with_its_worker(tmp_path: Path) -> None:
    """A live worker renews its jobs' leases: a job slower than the lease is not handed out a second time."""
    t = [1000.0]
    q = JobQueue(tmp_path / "q.db", lease_seconds=5, clock=lambda: t[0])
    q.enqueue("a")
    job = q.claim()
    assert job is not None
    for _ in range(5):  # 20 s on one job, renewed every 4 s
        t[0] += 4
        q.renew([job.id])
        assert q.claim() is None
    q.done(job)
    assert q.counts()["done"] == 1


def test_the_worker_renews_the_leases_of_its_running_jobs(tmp_path: Path) -> None:
    import threading

    from labinterp.server.worker import Worker

    q = JobQueue(tmp_path / "q.db", lease_seconds=1.5)
    q.enqueue("slow")
    release = threading.Event()
    w = Worker(q, lambda pid: release.wait(10), threads=1, idle_seconds=0.05)
    w.start()
    try:
        deadline = time.monotonic() + 5
        while q.counts()["running"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(2.5)  # past the lease: the heartbeat (every 0.5 s) has renewed it
        assert JobQueue(tmp_path / "q.db", lease_seconds=1.5).claim() is None  # another process gets nothing
    finally:
        release.set()
        w.stop(grace=5)
