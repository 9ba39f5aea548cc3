"""Population runs on the job queue (labinterp.server.runs): a listing job splits a run into chunk jobs that several
workers share, each chunk counted once however often its job runs, on the SQLite queue and on procrastinate (its
in-memory connector here; tests/integration/test_population_queue.py runs real PostgreSQL). The lead's
`select_patients` and `run_chunk` are replaced by fakes: these tests are about the queue."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from labinterp import population
from labinterp.errors import FhirAuthError, FhirTemporaryError, InputError
from labinterp.knowledge import Knowledge
from labinterp.population import ChunkOutcome, Selection
from labinterp.server.backend import Queue
from labinterp.server.pgqueue import in_memory
from labinterp.server.queue import JobQueue
from labinterp.server.runs import chunk_key, listing_key, parse_key
from labinterp.server.services import Services
from labinterp.server.worker import Worker
from tests.builders import old_queue_file

PATIENTS = [f"pt{i:03d}" for i in range(23)]


class Fakes:
    """select_patients and run_chunk stand-ins that record which patients each chunk job ran."""

    def __init__(self, patients: list[str]) -> None:
        self.patients = patients
        self.ran: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.fail_for: set[str] = set()  # a chunk with one of these fails for good (InputError): that patient's data
        self.auth_refused = False  # every chunk fails for good (FhirAuthError): no one patient's fault
        self.slow = 0.0
        self.listed_at: datetime | None = None
        self.chunk_times: set[datetime] = set()

    def select(self, client: Any, selection: Selection, now: datetime | None = None) -> Any:
        self.listed_at = now
        return population.Selected(iter(self.patients), len(self.patients), [("Group/g member[3]", "not a Patient")])

    def run_chunk(self, client: Any, ids: list[str], k: Any, now: datetime, options: Any = None) -> ChunkOutcome:
        if self.auth_refused:
            raise FhirAuthError("POST", "batch", 401, "the server refused the credentials")
        if set(ids) & self.fail_for:
            raise InputError("chunk", "cannot be read")
        time.sleep(self.slow)
        with self.lock:
            self.ran.update(ids)
            self.chunk_times.add(now)
        return ChunkOutcome(
            patients=len(ids), created=2 * len(ids), failed=[(ids[0], "no such Patient")] if "pt005" in ids else []
        )


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> Fakes:
    f = Fakes(PATIENTS)
    monkeypatch.setattr(population, "select_patients", f.select)
    monkeypatch.setattr(population, "run_chunk", f.run_chunk)
    monkeypatch.setattr(population, "ensure_device", lambda *args, **kwargs: None)  # no FHIR server here
    return f


@pytest.fixture(params=["sqlite", "procrastinate"])
def queue(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Queue]:
    if request.param == "sqlite":
        yield JobQueue(tmp_path / "q.db", lease_seconds=5)
    else:
        q = in_memory(str(tmp_path / "side.db"), lease_seconds=5)
        yield q
        q.close()


def services(q: Queue, k: Knowledge, chunk: int = 5) -> Services:
    return Services(k, "http://fhir.test/fhir", q, chunk_size=chunk, render=False)


def wait_for(q: Queue, run_id: str, states: tuple[str, ...] = ("done", "failed"), limit: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        run = q.runs.get(run_id)
        assert run is not None
        if run["state"] in states:
            return run
        time.sleep(0.02)
    raise AssertionError(f"run still {q.runs.get(run_id)}")


def test_keys() -> None:
    assert parse_key("p1").kind == "patient"
    assert parse_key(listing_key("r1")) == parse_key("run:r1") and parse_key("run:r1").key == "r1"
    kind = parse_key(chunk_key("r1", 12))
    assert (kind.kind, kind.key, kind.chunk) == ("chunk", "r1", 12)


def test_two_workers_share_a_run_and_count_each_chunk_once(queue: Queue, site_k: Knowledge, fakes: Fakes) -> None:
    s = services(queue, site_k)
    fakes.slow = 0.1  # each chunk long enough that every worker gets one
    run_id = s.start_run(Selection(all=True))
    assert queue.runs.get(run_id)["state"] == "listing"  # type: ignore[index]
    seen: list[set[str]] = [set(), set()]

    def tracked(i: int) -> Any:
        def jobs(job: Any) -> Any:
            seen[i].add(job.patient)
            return s.run_job(job)

        return jobs

    workers = [Worker(queue, s.process, jobs=tracked(i), threads=2, idle_seconds=0.01) for i in range(2)]
    for w in workers:
        w.start()
    try:
        run = wait_for(queue, run_id)
    finally:
        for w in workers:
            w.stop(1.0)
    assert run["state"] == "done" and run["chunks_total"] == 5 and run["chunks_done"] == 5
    assert run["patients"] == 23 and run["created"] == 46
    assert fakes.ran == Counter(PATIENTS)  # every patient once
    assert run["failed_count"] == 2  # the Group member that is no Patient, and pt005
    assert {f["patient"] for f in run["failed"]} == {"Group/g member[3]", "pt005"}
    assert seen[0] and seen[1]  # both workers took part
    assert run["finished"] >= run["started"]


def test_the_listing_and_every_chunk_are_judged_at_the_runs_start(queue: Queue, site_k: Knowledge, fakes: Fakes) -> None:
    """A Group's members are those current when the run started, the time its chunks interpret at: a member whose
    period ends while the run goes on is still in it, and one chunk is never judged at another time than the rest."""
    s = services(queue, site_k)
    run_id = s.start_run(Selection(group="g"))
    time.sleep(1.1)  # the run's start is a whole second before the jobs run
    Worker(queue, s.process, jobs=s.run_job, threads=1).drain(20)
    run = queue.runs.get(run_id)
    assert run is not None and run["state"] == "done"
    started = datetime.fromtimestamp(run["started"], UTC).replace(microsecond=0)
    assert fakes.listed_at == started and fakes.chunk_times == {started}


def test_a_chunk_that_runs_twice_counts_once_and_a_second_listing_lists_nothing_new(
    queue: Queue, site_k: Knowledge, fakes: Fakes
) -> None:
    s = services(queue, site_k, chunk=10)
    run_id = s.start_run(Selection(group="g"))
    job = queue.claim()
    assert job is not None and job.patient == listing_key(run_id)
    s.run_job(job)
    s.run_job(job)  # the same listing again (its worker died after listing): nothing listed twice
    queue.done(job)
    assert queue.runs.get(run_id)["chunks_total"] == 3  # type: ignore[index]
    chunk = queue.claim()
    assert chunk is not None and parse_key(chunk.patient).kind == "chunk"
    s.run_job(chunk)
    s.run_job(chunk)  # replayed: the chunk is finished, nothing runs
    run = queue.runs.get(run_id)
    assert run is not None and run["chunks_done"] == 1 and run["patients"] == 10
    assert sum(fakes.ran.values()) == 10


def test_a_patient_failing_for_good_fails_alone_and_its_chunk_and_run_finish(
    queue: Queue, site_k: Knowledge, fakes: Fakes
) -> None:
    """A chunk that fails for good on one patient's data is run again patient by patient: that patient is named
    as failed, the 4 others of its chunk are interpreted, and the run finishes (SPEC section 7)."""
    fakes.fail_for = {"pt012"}
    s = services(queue, site_k)
    run_id = s.start_run(Selection(all=True))
    Worker(queue, s.process, jobs=s.run_job, threads=1).drain(20)
    run = queue.runs.get(run_id)
    assert run is not None and run["state"] == "done"
    assert run["chunks_failed"] == 0 and run["chunks_done"] == 5
    assert "pt012" in {f["patient"] for f in run["failed"]}
    assert not {"pt010", "pt011", "pt013", "pt014"} & {f["patient"] for f in run["failed"]}
    assert {"pt010", "pt011", "pt013", "pt014"} <= set(fakes.ran)
    assert queue.counts()["failed"] == 0


def test_a_chunk_failing_for_good_for_everyone_fails_the_run_with_its_patients(
    queue: Queue, site_k: Knowledge, fakes: Fakes
) -> None:
    """Refused credentials are no one patient's fault: the chunk fails whole (its patients counted as failed), not
    patient by patient."""
    fakes.auth_refused = True
    s = services(queue, site_k)
    run_id = s.start_run(Selection(all=True))
    Worker(queue, s.process, jobs=s.run_job, threads=1).drain(20)
    run = queue.runs.get(run_id)
    assert run is not None and run["state"] == "failed"
    assert run["chunks_failed"] == 5 and run["chunks_done"] == 0
    assert {"pt010", "pt014"} <= {f["patient"] for f in run["failed"]}
    assert not fakes.ran


def test_a_listing_failing_for_good_fails_the_run(queue: Queue, site_k: Knowledge, monkeypatch: pytest.MonkeyPatch) -> None:
    def gone(client: Any, selection: Selection, now: Any = None) -> Any:
        raise InputError("Group/g", "no such Group on the server")

    monkeypatch.setattr(population, "select_patients", gone)
    s = services(queue, site_k)
    run_id = s.start_run(Selection(group="g"))
    Worker(queue, s.process, jobs=s.run_job, threads=1).drain(5)
    run = queue.runs.get(run_id)
    assert run is not None and run["state"] == "failed" and "no such Group" in run["error"]


def test_a_temporary_error_retries_the_chunk(
    queue: Queue, site_k: Knowledge, fakes: Fakes, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = Counter[str]()
    real = fakes.run_chunk

    def flaky(client: Any, ids: list[str], k: Any, now: datetime, options: Any = None) -> ChunkOutcome:
        calls[ids[0]] += 1
        if calls[ids[0]] == 1:
            raise FhirTemporaryError("POST", "http://fhir.test/fhir", 503, "busy")
        return real(client, ids, k, now, options)

    monkeypatch.setattr(population, "run_chunk", flaky)
    s = services(queue, site_k, chunk=50)
    run_id = s.start_run(Selection(all=True))
    w = Worker(queue, s.process, jobs=s.run_job, threads=1, backoff=population_backoff())
    w.drain(10)
    time.sleep(0.05)
    w.drain(10)
    run = queue.runs.get(run_id)
    assert run is not None and run["state"] == "done" and run["patients"] == 23 and sum(fakes.ran.values()) == 23


def population_backoff() -> Any:
    from labinterp.fhir.retry import RetryPolicy

    return RetryPolicy(base_delay=0.01, max_delay=0.01)


def test_sqlite_a_killed_processs_chunk_is_redone_after_its_lease(tmp_path: Path, site_k: Knowledge, fakes: Fakes) -> None:
    """A process claims a chunk and dies (no release, no heartbeat): the chunk is handed out again after the lease,
    done once, and the run finishes."""
    path = tmp_path / "q.db"
    dying = JobQueue(path, lease_seconds=0.3)
    s = services(dying, site_k, chunk=10)
    run_id = s.start_run(Selection(all=True))
    listing = dying.claim()
    assert listing is not None
    s.run_job(listing)
    dying.done(listing)
    lost = dying.claim()  # the process "dies" here with this chunk running
    assert lost is not None and parse_key(lost.patient).kind == "chunk"
    alive = JobQueue(path, lease_seconds=0.3)
    survivor = services(alive, site_k, chunk=10)
    worker = Worker(alive, survivor.process, jobs=survivor.run_job, threads=1, idle_seconds=0.02)
    worker.drain(5)  # the other chunks
    assert alive.runs.get(run_id)["state"] == "running"  # type: ignore[index]
    time.sleep(0.4)
    worker.drain(5)  # the dead process's chunk, after its lease
    run = alive.runs.get(run_id)
    assert run is not None and run["state"] == "done" and run["patients"] == 23
    assert fakes.ran == Counter(PATIENTS)


def test_sqlite_existing_files_gain_the_run_tables(tmp_path: Path) -> None:
    path = old_queue_file(tmp_path / "old.db", "p1")
    q = JobQueue(path)
    assert q.counts()["pending"] == 1
    run_id = q.runs.create(Selection(all=True).to_json())
    assert q.runs.get(run_id)["state"] == "listing"  # type: ignore[index]


def test_procrastinate_coalesces_and_serializes_per_patient(tmp_path: Path) -> None:
    q = in_memory(str(tmp_path / "side.db"), lease_seconds=5)
    try:
        for _ in range(3):
            q.enqueue("p1", "notification")  # AlreadyEnqueued: coalesced, not an error
        q.enqueue("p2")
        assert q.counts()["pending"] == 2
        first = q.claim()
        assert first is not None and first.patient == "p1"
        q.enqueue("p1")  # while p1 runs: one more waiting job...
        second = q.claim()
        assert second is not None and second.patient == "p2"
        assert q.claim() is None  # ...not handed out while the first runs (procrastinate's lock)
        q.done(first)
        again = q.claim()
        assert again is not None and again.patient == "p1"
    finally:
        q.close()


def test_procrastinate_stalled_jobs_of_a_dead_worker_are_handed_out_again(tmp_path: Path) -> None:
    """Two processes on one queue (here: two PgQueues on one in-memory database); one claims and dies (stops beating):
    after the lease, the live one's claim puts the job back and gets it."""
    first = in_memory(str(tmp_path / "side.db"), lease_seconds=0.3)
    try:
        first.enqueue("p1")
        job = first.claim()
        assert job is not None
        second = first  # the same database; a second registered worker stands for the live process
        second._worker_id = None  # the dead process's registration stays behind, beating no more
        assert second.claim() is None  # its lease still runs
        time.sleep(0.6)  # past the lease (and the half-second between two recoveries)
        second.renew([])  # the live worker beats
        again = second.claim()
        assert again is not None and again.patient == "p1" and again.id == job.id and again.attempts == 2
    finally:
        first.close()


def test_procrastinate_retry_fail_release_and_the_queue_view(tmp_path: Path) -> None:
    q = in_memory(str(tmp_path / "side.db"), lease_seconds=5)
    try:
        q.enqueue("p1")
        q.enqueue("p2")
        a, b = q.claim(), q.claim()
        assert a is not None and b is not None
        q.retry(a, "FhirTemporaryError: https://user:secret@fhir.test/x?token=abc", 60)
        assert q.retrying()[0]["patient"] == "p1" and "secret" not in str(q.retrying())
        assert q.has_retryable() and q.wake_retrying() == 1
        q.fail(b, "FhirTemporaryError: down", retryable=True)
        assert q.failures()[0]["retryable"] is True
        assert q.requeue_retryable() == 1 and not q.failures()
        c = q.claim()
        assert c is not None and q.release(c)
        q.set_meta("poll.last_updated", "2026-01-01T00:00:00Z")
        assert q.get_meta("poll.last_updated") == "2026-01-01T00:00:00Z"
        assert q.oldest_pending_age() is not None
        assert q.counts()["pending"] == 2
    finally:
        q.close()


def test_the_worker_command_is_there() -> None:
    from click.testing import CliRunner

    from labinterp.cli.main import cli

    r = CliRunner().invoke(cli, ["worker", "--help"])
    assert r.exit_code == 0 and "--threads" in r.output and "population runs" in r.output
