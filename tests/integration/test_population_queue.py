"""A population run on the PostgreSQL queue (procrastinate), against the session's HAPI: `labinterp serve` (no
worker) takes POST /$interpret with a Group and answers 202; two `labinterp worker` processes share the run's chunk
jobs; one is SIGKILLed mid-run. The run finishes, and HAPI holds every patient's reports exactly once (counted per
series identifier), none lost, none duplicated.

PostgreSQL: the session's `postgres` fixture (tests/integration/conftest.py: labinterp.sandbox.postgres), or a server
already running at PGQUEUE_TEST_URL (postgresql://user@host:port/db: a database is created on it per test)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from labinterp.sandbox.hapi import as_transaction
from scripts.faultproxy import synth_cohort, written_series
from tests.conftest import ROOT, SITE
from tests.integration.conftest import Service

pytestmark = pytest.mark.integration

PATIENTS = int(os.environ.get("LABINTERP_HAPI_POPULATION_PATIENTS", "120"))  # LABINTERP_HAPI_*: not a setting
CHUNK = 8


@pytest.fixture
def queue_url(request: pytest.FixtureRequest) -> str:
    name = f"lbq{uuid.uuid4().hex[:12]}"
    given = os.environ.get("PGQUEUE_TEST_URL")
    if given:
        import psycopg

        with psycopg.connect(given, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return given.rsplit("/", 1)[0] + f"/{name}"
    try:
        postgres = request.getfixturevalue("postgres")
    except pytest.FixtureLookupError:
        pytest.skip("no PostgreSQL: neither the postgres fixture nor PGQUEUE_TEST_URL")
    return str(postgres.create_database(name))


class WorkerProcess:
    """`labinterp worker` in a subprocess, as an operator runs it on another machine."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "labinterp.cli.main", "worker", "--threads", "2"],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for w in started:
        w.stop()


def test_two_workers_one_killed_mid_run_write_every_report_once(
    fhir_url: str, queue_url: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    prefix = f"pq{uuid.uuid4().hex[:6]}x"
    cohort = synth_cohort(PATIENTS, prefix=prefix, seed=11)
    entries = cohort.bundle["entry"]
    load = requests.Session()
    for i in range(0, len(entries), 1400):
        r = load.post(
            fhir_url,
            json=as_transaction({"entry": entries[i : i + 1400]}, fhir_url),
            headers={"Content-Type": "application/fhir+json"},
            timeout=600,
        )
        r.raise_for_status()
    group = f"{prefix}group"
    members = [{"entity": {"reference": f"Patient/{pid}"}} for pid in cohort.patients]
    r = load.put(
        f"{fhir_url}/Group/{group}",
        json={"resourceType": "Group", "id": group, "type": "person", "actual": True, "member": members},
        headers={"Content-Type": "application/fhir+json"},
        timeout=120,
    )
    r.raise_for_status()

    settings = {
        "LABINTERP_FHIR_BASE_URL": fhir_url,
        "LABINTERP_QUEUE_URL": queue_url,
        "LABINTERP_MAPPINGS_DIR": str(SITE),
        "LABINTERP_WORKDIR": str(tmp_path),
        "LABINTERP_POPULATION_CHUNK": str(CHUNK),
        "LABINTERP_POPULATION_TRANSACTION": "4",
        "LABINTERP_QUEUE_LEASE": "4",  # a killed worker's chunk is handed out again 4 s after its last heartbeat
        "LABINTERP_RENDER": "false",
        "LABINTERP_FHIR_RETRY_DELAY": "0.2",
    }
    service = Service(fhir_url, tmp_path, worker=False, extra_env=settings)
    try:
        r = requests.post(
            f"{service.url}/$interpret",
            json={"resourceType": "Parameters", "parameter": [{"name": "group", "valueString": group}]},
            timeout=60,
        )
        assert r.status_code == 202, r.text
        status_url = r.headers["Content-Location"]

        env = {**os.environ, **settings}
        workers.append(WorkerProcess(env, tmp_path / "worker-a.log"))
        workers.append(WorkerProcess(env, tmp_path / "worker-b.log"))

        def status() -> dict[str, Any]:
            got = requests.get(status_url, timeout=30)
            assert got.status_code == 200, got.text
            return dict(got.json())

        total = -(-PATIENTS // CHUNK)
        deadline = time.monotonic() + 600
        run = status()
        while time.monotonic() < deadline and not (run["state"] == "running" and run["chunks"]["done"] >= 2):
            time.sleep(0.2)
            run = status()
        assert run["state"] == "running" and run["chunks"]["done"] < total - 2, run  # mid-run
        workers[0].kill()  # SIGKILL: no release, no unregistering; its running chunks stall
        killed_at = run["chunks"]["done"]
        while time.monotonic() < deadline and run["state"] not in ("done", "failed"):
            time.sleep(0.5)
            run = status()
        queue = requests.get(f"{service.url}/queue", timeout=30).json()  # GET /queue and /metrics read PostgreSQL
        assert queue["counts"]["done"] >= total + 1 and queue["counts"]["pending"] == 0 and queue["failed"] == [], queue
        metrics = requests.get(f"{service.url}/metrics", timeout=30).text
        assert 'labinterp_queue_jobs{state="done"}' in metrics
    finally:
        service.stop()

    assert run["state"] == "done", run
    assert run["chunks"] == {"total": total, "done": total, "failed": 0}, run
    assert run["patients"] == PATIENTS and run["failed"]["count"] == 0, run
    assert killed_at < total
    survivor_log = (tmp_path / "worker-b.log").read_text()
    assert "stopped beating handed out again" in survivor_log, "the killed worker held no chunk: nothing was recovered"

    found = written_series(fhir_url, prefix)
    duplicated = {pid: {k: n for k, n in c.items() if n > 1} for pid, c in found.items() if any(n > 1 for n in c.values())}
    assert duplicated == {}, duplicated
    lost = {
        pid: sorted(want - {key.split("|", 1)[1] for key in found.get(pid, {})})
        for pid, want in cohort.expected.items()
        if want - {key.split("|", 1)[1] for key in found.get(pid, {})}
    }
    assert lost == {}, lost
    assert sum(len(v) for v in cohort.expected.values()) == sum(len(c) for c in found.values())
    assert run["created"] > 0


def test_procrastinate_semantics_on_real_postgresql(queue_url: str) -> None:
    """What the in-memory connector cannot show: the queueing lock's unique index (a job retried while another waits
    for its patient is superseded, not duplicated), a second process's claim, and a dead process's stalled job put
    back once by a live one."""
    from labinterp.server.pgqueue import PgQueue

    a, b = PgQueue.connect(queue_url, lease_seconds=1.0), PgQueue.connect(queue_url, lease_seconds=1.0)
    try:
        a.enqueue("p1")
        a.enqueue("p1")  # coalesced
        b.enqueue("p2")
        assert a.counts() == {"pending": 2, "running": 0, "done": 0, "failed": 0}
        first = a.claim()
        assert first is not None and first.patient == "p1"
        b.enqueue("p1")  # a notification while p1 runs: one waiting job
        other = b.claim()
        assert other is not None and other.patient == "p2"  # never p1 while p1 runs (procrastinate's lock)
        assert b.claim() is None
        a.retry(first, "FhirTemporaryError: busy", 0)  # a job for p1 waits already: this one is superseded
        assert a.counts() == {"pending": 1, "running": 1, "done": 1, "failed": 0}
        b.done(other)
        dying = a.claim()  # p1's waiting job; then process a stops beating
        assert dying is not None and dying.patient == "p1"
        time.sleep(1.3)
        b.renew([])
        assert b.recover_stalled(force=True) == 1 and b.recover_stalled(force=True) == 0  # put back once
        again = b.claim()
        assert again is not None and again.id == dying.id
        b.done(again)
        a.set_meta("k", "v")
        assert b.get_meta("k") == "v" and b.oldest_pending_age() is None
        assert b.counts() == {"pending": 0, "running": 0, "done": 3, "failed": 0}
    finally:
        a.close()
        b.close()
