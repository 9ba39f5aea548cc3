"""The job queue on PostgreSQL (LABINTERP_QUEUE_URL=postgresql://...), with procrastinate: the same interface and
semantics as the SQLite queue (labinterp.server.queue), shared by service replicas and `labinterp worker` processes
on any number of machines.

- Jobs are procrastinate jobs in queue `labinterp`, tasks `labinterp.patient`, `labinterp.listing` and
  `labinterp.chunk`, their key (a patient id, `run:<id>`, `chunk:<id>:<n>`: labinterp.server.runs) in the arguments.
- Per key, procrastinate's `queueing_lock` coalesces (at most one waiting job: `AlreadyEnqueued` is a coalesced
  notification, not an error) and its `lock` serializes (a job is not fetched while one with the same lock runs):
  exactly the SQLite queue's "one pending job per patient, never two running at once".
- Claiming is procrastinate's `fetch_job` for a worker registered in `procrastinate_workers`; the lease is its
  heartbeat (`renew` updates it, every lease/3 from the worker's heartbeat thread). A worker killed mid-job (SIGKILL)
  stops beating: after `lease_seconds`, any live worker prunes it (`prune_stalled_workers`) and puts its jobs back to
  `todo` (`get_stalled_jobs` + `retry_job`), one recoverer at a time (a PostgreSQL advisory lock), so a stalled job
  is handed out again once, never twice. A stalled job whose key has a waiting job meanwhile is finished as
  `aborted` (superseded: the waiting job does the same work). Nothing is lost; what runs twice is a chunk or a patient
  that was cut off mid-write, and writes are idempotent on the FHIR side (a replayed chunk writes nothing new), the
  run's totals counted once (labinterp.server.runs).
- What procrastinate does not hold lives in tables of our own in the same database: `labinterp_job_notes` (a job's
  last error, warnings, retryable flag: GET /queue), `labinterp_meta` (the poll's watermark), `labinterp_runs` and
  `labinterp_run_chunks` (population runs).
- `release` (a stopping worker hands back a job) and `retry` are procrastinate's `retry_job`, which counts an attempt
  (the SQLite queue does not count a release's): a released job's next backoff is one step longer.
Procrastinate's calls are async: they run on an event loop in a thread of our own, so the threads of
labinterp.server.worker call them as plain functions."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TypeVar

import procrastinate
from procrastinate import exceptions as pexc
from procrastinate import jobs as pjobs
from procrastinate import utils as putils
from procrastinate.schema import SchemaManager

from labinterp.server.observability import current_request_id
from labinterp.server.queue import MAX_FINISHED, RETENTION, Job, redacted
from labinterp.server.runs import RunStore, Tx, parse_key

log = logging.getLogger("labinterp.pgqueue")
QUEUE = "labinterp"
TASKS = {"patient": "labinterp.patient", "listing": "labinterp.listing", "chunk": "labinterp.chunk"}
PREFIX = "labinterp_"
ADVISORY_SCHEMA = 0x6C6162_01  # pg_advisory_lock keys: schema setup, stalled-job recovery
ADVISORY_RECOVERY = 0x6C6162_02
T = TypeVar("T")

NOTES = [
    """CREATE TABLE IF NOT EXISTS {p}job_notes (
        job_id BIGINT PRIMARY KEY,
        patient TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        error TEXT NOT NULL DEFAULT '',
        warnings TEXT NOT NULL DEFAULT '',
        retryable INTEGER NOT NULL DEFAULT 0,
        next_try DOUBLE PRECISION,
        updated DOUBLE PRECISION NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS {p}job_notes_state ON {p}job_notes (state, updated)",
    "CREATE TABLE IF NOT EXISTS {p}meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
]


class SideStore:
    """Our own tables beside procrastinate's: job notes, meta, runs. `tx`: transactions on PostgreSQL (or, in unit
    tests with procrastinate's in-memory connector, on a SQLite file); `exclusive`: a mutex across processes."""

    def __init__(
        self,
        tx: Callable[[], AbstractContextManager[Tx]],
        *,
        postgres: bool,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.tx, self.postgres, self.clock = tx, postgres, clock
        self.p = PREFIX
        self.runs = RunStore(tx, prefix=PREFIX, lock=" FOR UPDATE" if postgres else "", clock=clock)
        self._local = threading.Lock()
        with tx() as db:
            self.create_schema(db)

    def create_schema(self, db: Tx) -> None:
        self.runs.create_schema(db)
        for statement in NOTES:
            db.execute(statement.format(p=self.p))

    @contextmanager
    def exclusive(self, key: int) -> Iterator[bool]:
        """Whether this process holds the mutex `key` (PostgreSQL: a transaction-level advisory lock, tried)."""
        if not self.postgres:
            with self._local:
                yield True
            return
        with self.tx() as db:
            yield bool(db.execute("SELECT pg_try_advisory_xact_lock(?)", (key,)).fetchone()[0])

    def note(
        self, job: Job, state: str, *, error: str = "", warnings: str = "", retryable: bool = False, next_try: float | None = None
    ) -> None:
        with self.tx() as db:
            db.execute(
                f"INSERT INTO {self.p}job_notes (job_id, patient, state, attempts, error, warnings, retryable, next_try, updated) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (job_id) DO UPDATE SET state = excluded.state, "
                "attempts = excluded.attempts, error = excluded.error, warnings = excluded.warnings, "
                "retryable = excluded.retryable, next_try = excluded.next_try, updated = excluded.updated",
                (job.id, job.patient, state, job.attempts, error, warnings, int(retryable), next_try, self.clock()),
            )

    def forget(self, job_id: int) -> None:
        with self.tx() as db:
            db.execute(f"DELETE FROM {self.p}job_notes WHERE job_id = ?", (job_id,))

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        with self.tx() as db:
            return list(db.execute(sql.format(p=self.p), params).fetchall())

    def run(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        with self.tx() as db:
            return int(db.execute(sql.format(p=self.p), params).rowcount)


class _PgTx:
    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Any = ()) -> Any:
        return self.conn.execute(sql.replace("?", "%s"), tuple(params) or None)


def pg_tx(url: str) -> tuple[Callable[[], AbstractContextManager[Tx]], Any]:
    """Transactions on PostgreSQL from a small pool of its own; (tx, pool)."""
    from psycopg_pool import ConnectionPool

    pool = ConnectionPool(url, min_size=1, max_size=4, open=True, name="labinterp-side")

    @contextmanager
    def tx() -> Iterator[Tx]:
        with pool.connection() as conn, conn.transaction():
            yield _PgTx(conn)

    return tx, pool


def setup_schema(url: str) -> None:
    """procrastinate's schema applied when the database has none, once however many processes start together."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_SCHEMA,))
        try:
            row = conn.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()
            if row is None or row[0] is None:
                conn.execute(SchemaManager.get_schema().encode())
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_SCHEMA,))


class PgQueue:
    """labinterp.server.backend.Queue on procrastinate (see the module's docstring)."""

    def __init__(
        self,
        app: procrastinate.App,
        side: SideStore,
        lease_seconds: float = 300.0,
        *,
        retention: float = RETENTION,
        clock: Callable[[], float] = time.time,
        closers: list[Callable[[], None]] | None = None,
    ) -> None:
        self.app, self.side, self.lease_seconds, self.retention, self.clock = app, side, lease_seconds, retention, clock
        self.runs = side.runs
        self.max_finished = MAX_FINISHED
        self._closers = closers or []
        self._worker_id: int | None = None
        self._worker_lock = threading.Lock()
        self._recovered_at = float("-inf")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="labinterp-pgqueue", daemon=True)
        self._thread.start()

        async def open_app() -> None:
            await self.app.open_async()

        self._call(open_app())

    @classmethod
    def connect(cls, url: str, lease_seconds: float = 300.0) -> PgQueue:
        setup_schema(url)
        tx, pool = pg_tx(url)
        side = SideStore(tx, postgres=True)
        app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url, min_size=1, max_size=8))
        return cls(app, side, lease_seconds, closers=[pool.close])

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=120)

    def close(self) -> None:
        """Unregister this process's worker, close the connections and stop the loop."""
        self.worker_stopped()
        self._call(self.app.close_async())
        for close in self._closers:
            close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()

    # --- enqueueing ---------------------------------------------------------------------------------

    def _job(self, key: str, reason: str, delay: float, correlation: str) -> pjobs.Job:
        return pjobs.Job(
            queue=QUEUE,
            task_name=TASKS[parse_key(key).kind],
            lock=f"labinterp:{key}",
            queueing_lock=f"labinterp:{key}",
            task_kwargs={"key": key, "reason": reason, "correlation": correlation},
            scheduled_at=putils.utcnow() + dt.timedelta(seconds=delay) if delay > 0 else None,
        )

    def enqueue(self, patient: str, reason: str = "", delay: float = 0.0, *, correlation: str | None = None) -> None:
        """A waiting job for `patient` (or a run's key); coalesced into the waiting one if there is one."""
        correlation = current_request_id() if correlation is None else correlation
        with contextlib.suppress(pexc.AlreadyEnqueued):  # coalesced: the waiting job reads the patient's data when it runs
            self._call(self.app.job_manager.defer_job_async(self._job(patient, reason, delay, correlation or "")))

    def enqueue_many(self, keys: list[str], reason: str = "", *, correlation: str | None = None) -> None:
        correlation = current_request_id() if correlation is None else correlation
        jobs = [self._job(key, reason, 0.0, correlation or "") for key in keys]
        for i in range(0, len(jobs), 500):
            try:
                self._call(self.app.job_manager.batch_defer_jobs_async(jobs[i : i + 500]))
            except pexc.AlreadyEnqueued:  # some were waiting already (a listing that ran twice): one by one
                for key in keys[i : i + 500]:
                    self.enqueue(key, reason, correlation=correlation)

    # --- claiming and the lease ---------------------------------------------------------------------

    def _worker(self) -> int:
        with self._worker_lock:
            if self._worker_id is None:
                self._worker_id = self._call(self.app.job_manager.register_worker())
            return self._worker_id

    def claim(self) -> Job | None:
        """The next due job whose key is not running, for this process's registered worker; stalled jobs of dead
        workers are put back first (at most every lease/4)."""
        self.recover_stalled()
        worker = self._worker()
        try:
            found = self._call(self.app.job_manager.fetch_job(queues=[QUEUE], worker_id=worker))
        except (pexc.ConnectorException, AssertionError):  # our registration was pruned (no beat for a lease): again
            with self._worker_lock:
                self._worker_id = None
            found = self._call(self.app.job_manager.fetch_job(queues=[QUEUE], worker_id=self._worker()))
        if found is None or found.id is None:
            return None
        args = found.task_kwargs
        return Job(
            found.id, str(args.get("key", "")), str(args.get("reason", "")), found.attempts + 1, str(args.get("correlation", ""))
        )

    def renew(self, job_ids: list[int]) -> None:
        """The worker's heartbeat: its jobs are its own while it beats."""
        if self._worker_id is not None:
            self._call(self.app.job_manager.update_heartbeat(self._worker_id))

    def worker_stopped(self) -> None:
        with self._worker_lock:
            worker, self._worker_id = self._worker_id, None
        if worker is not None:
            self._call(self.app.job_manager.unregister_worker(worker))

    def recover_stalled(self, *, force: bool = False) -> int:
        """Jobs of workers that sent no heartbeat for `lease_seconds` put back to todo (or finished as superseded when
        their key has a waiting job); how many. One process at a time."""
        now = time.monotonic()
        if not force and now - self._recovered_at < max(0.5, self.lease_seconds / 4):
            return 0
        self._recovered_at = now
        manager = self.app.job_manager
        recovered = 0
        with self.side.exclusive(ADVISORY_RECOVERY) as mine:
            if not mine:
                return 0
            self._call(manager.prune_stalled_workers(self.lease_seconds))
            stalled = self._call(manager.get_stalled_jobs(queue=QUEUE, seconds_since_heartbeat=self.lease_seconds))
            for job in stalled:
                if job.id is None or (job.worker_id is not None and job.worker_id == self._worker_id):
                    continue
                try:
                    self._call(manager.retry_job(job, retry_at=putils.utcnow()))
                except pexc.UniqueViolation:
                    self._finish(job.id, pjobs.Status.ABORTED)
                except pexc.ConnectorException:
                    continue  # finished meanwhile
                recovered += 1
        if recovered:
            log.warning("%d jobs of workers that stopped beating handed out again", recovered)
        return recovered

    def _finish(self, job_id: int, status: pjobs.Status) -> bool:
        try:
            self._call(self.app.job_manager.finish_job_by_id_async(job_id=job_id, status=status, delete_job=False))
        except pexc.ConnectorException:  # no longer running: handed out again after the worker stopped beating
            return False
        return True

    def _retry_at(self, job: Job, delay: float) -> str:
        """Back to todo after `delay`: "retried", "superseded" (a waiting job for the same key came meanwhile: this one
        is finished) or "gone" (no longer ours)."""
        when = putils.utcnow() + dt.timedelta(seconds=max(0.0, delay))
        try:
            self._call(self.app.job_manager.retry_job_by_id_async(job_id=job.id, retry_at=when))
        except pexc.UniqueViolation:
            return "superseded" if self._finish(job.id, pjobs.Status.ABORTED) else "gone"
        except pexc.ConnectorException:
            return "gone"
        return "retried"

    # --- outcomes -----------------------------------------------------------------------------------

    def release(self, job: Job) -> bool:
        return self._retry_at(job, 0.0) != "gone"

    def done(self, job: Job, warnings: list[str] | None = None) -> None:
        self._finish(job.id, pjobs.Status.SUCCEEDED)
        if warnings:
            self.side.note(job, "done", warnings="\n".join(redacted(w) for w in warnings))
        elif job.attempts > 1:
            self.side.forget(job.id)  # a note of an earlier try's error

    def retry(self, job: Job, error: str, delay: float) -> None:
        outcome = self._retry_at(job, delay)
        if outcome == "retried":
            self.side.note(job, "retrying", error=redacted(error), next_try=self.clock() + delay)
        elif outcome == "superseded":
            self.side.note(job, "superseded", error=f"superseded: {redacted(error)}")

    def fail(self, job: Job, error: str, *, retryable: bool = False) -> None:
        self._finish(job.id, pjobs.Status.FAILED)
        self.side.note(job, "failed", error=redacted(error), retryable=retryable)

    def has_retryable(self) -> bool:
        rows = self.side.rows(
            "SELECT 1 FROM {p}job_notes WHERE (state = 'failed' AND retryable = 1) OR (state = 'retrying' AND next_try > ?)",
            (self.clock(),),
        )
        return bool(rows)

    def requeue_retryable(self) -> int:
        """Jobs that failed on a temporary error queued again as new jobs (their attempts start over), coalesced per key."""
        rows = self.side.rows("SELECT job_id, patient FROM {p}job_notes WHERE state = 'failed' AND retryable = 1")
        keys = sorted({str(r[1]) for r in rows})
        for key in keys:
            self.enqueue(key, "requeued", correlation="")
        for job_id, _ in rows:
            self.side.run(
                "UPDATE {p}job_notes SET state = 'requeued', retryable = 0, updated = ? WHERE job_id = ?", (self.clock(), job_id)
            )
        return len(keys)

    def wake_retrying(self) -> int:
        ids = [
            int(r[0])
            for r in self.side.rows("SELECT job_id FROM {p}job_notes WHERE state = 'retrying' AND next_try > ?", (self.clock(),))
        ]
        if not ids:
            return 0
        if self.side.postgres:
            marks = ",".join("?" for _ in ids)
            woken = self.side.run(
                f"UPDATE procrastinate_jobs SET scheduled_at = now() WHERE status = 'todo' AND scheduled_at > now() AND id IN ({marks})",
                tuple(ids),
            )
        else:  # procrastinate's in-memory connector (unit tests)
            jobs = getattr(self.app.connector, "jobs", {})
            woken = 0
            for job_id in ids:
                row = jobs.get(job_id)
                if row and row["status"] == "todo":
                    row["scheduled_at"], woken = putils.utcnow(), woken + 1
        self.side.run(
            "UPDATE {p}job_notes SET next_try = ? WHERE state = 'retrying' AND next_try > ?", (self.clock(), self.clock())
        )
        return woken

    def prune(self) -> int:
        hours = max(1, round(self.retention / 3600))
        self._call(self.app.job_manager.delete_old_jobs(nb_hours=hours, queue=QUEUE, include_aborted=True))
        return self.side.run(
            "DELETE FROM {p}job_notes WHERE state IN ('done', 'superseded', 'requeued') AND updated < ?",
            (self.clock() - self.retention,),
        )

    # --- what GET /queue and /metrics show ------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        out = {"pending": 0, "running": 0, "done": 0, "failed": 0}
        for row in self._call(self.app.job_manager.list_queues_async(queue=QUEUE)):
            out["pending"] += int(row["todo"])
            out["running"] += int(row["doing"])
            out["done"] += int(row["succeeded"]) + int(row["aborted"])
            out["failed"] += int(row["failed"])
        return out

    def oldest_pending_age(self) -> float | None:
        if self.side.postgres:
            rows = self.side.rows(
                "SELECT EXTRACT(EPOCH FROM now() - MIN(e.at)) FROM procrastinate_jobs j JOIN procrastinate_events e "
                "ON e.job_id = j.id AND e.type = 'deferred' WHERE j.status = 'todo' AND j.queue_name = ?",
                (QUEUE,),
            )
            age = rows[0][0] if rows else None
            return None if age is None else max(0.0, float(age))
        connector = self.app.connector
        times = [
            e["at"]
            for job_id, row in getattr(connector, "jobs", {}).items()
            if row["status"] == "todo"
            for e in getattr(connector, "events", {}).get(job_id, [])
            if e["type"] == "deferred"
        ]
        return max(0.0, (putils.utcnow() - min(times)).total_seconds()) if times else None

    def failures(self, limit: int = 20) -> list[dict[str, object]]:
        rows = self.side.rows(
            "SELECT job_id, patient, attempts, error, updated, retryable FROM {p}job_notes WHERE state = 'failed' "
            "ORDER BY updated DESC LIMIT ?",
            (limit,),
        )
        return [
            {"id": r[0], "patient": r[1], "attempts": r[2], "error": redacted(r[3]), "updated": r[4], "retryable": bool(r[5])}
            for r in rows
        ]

    def retrying(self, limit: int = 20) -> list[dict[str, object]]:
        rows = self.side.rows(
            "SELECT job_id, patient, attempts, error, next_try FROM {p}job_notes WHERE state = 'retrying' "
            "ORDER BY updated DESC LIMIT ?",
            (limit,),
        )
        return [{"id": r[0], "patient": r[1], "attempts": r[2], "error": redacted(r[3]), "next_try": r[4]} for r in rows]

    def warned(self, limit: int = 20) -> list[dict[str, object]]:
        rows = self.side.rows(
            "SELECT job_id, patient, warnings, updated FROM {p}job_notes WHERE state = 'done' AND warnings != '' "
            "ORDER BY updated DESC LIMIT ?",
            (limit,),
        )
        return [{"id": r[0], "patient": r[1], "warnings": [redacted(w) for w in r[2].split("\n")], "updated": r[3]} for r in rows]

    def get_meta(self, key: str) -> str | None:
        rows = self.side.rows("SELECT value FROM {p}meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def set_meta(self, key: str, value: str) -> None:
        self.side.run(
            "INSERT INTO {p}meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value)
        )


def in_memory(path: str, lease_seconds: float = 300.0, *, clock: Callable[[], float] = time.time) -> PgQueue:
    """A PgQueue on procrastinate's in-memory connector, its own tables in a SQLite file (unit tests)."""
    from procrastinate.testing import InMemoryConnector

    from labinterp.server.runs import sqlite_tx

    side = SideStore(sqlite_tx(path), postgres=False, clock=clock)
    return PgQueue(procrastinate.App(connector=InMemoryConnector()), side, lease_seconds, clock=clock)


__all__ = ["PgQueue", "SideStore", "in_memory"]
