"""A durable work queue in SQLite: one job per patient to (re)interpret.

- Enqueueing coalesces: a patient has at most one pending job; a notification for a patient whose job
  is running adds one pending job, done after the running one.
- Claiming is atomic and never hands out a patient that is already running, so two notifications for
  one patient are never processed at once (in any number of threads or processes sharing the file).
- A job left `running` by a process that died is handed out again after its lease expires, so stopping
  the service with queued or running work loses nothing.
- A job that failed on a temporary error (`retryable`: only when a caller capped the attempts) goes back
  to pending with `requeue_retryable()`, which the poll and the worker call once the FHIR server answers
  again; `wake_retrying()` makes jobs waiting in backoff due at once.
- Finished jobs are pruned: done jobs older than `retention` seconds, and beyond the newest `max_finished`
  done (and failed) jobs, so a flood of notifications cannot grow the file without bound.
- `release(job)` puts a running job back to pending, due at once, without counting the attempt: a stopping
  process hands back the jobs it could not finish within its grace period, so none waits for its lease.
- Each job carries a correlation id (`correlation`: the X-Request-ID of the request that enqueued it, or the
  poll's), so a worker's logs for the job share the id of the logs that queued it.
- Error and warning texts are stored and shown redacted (`redacted`): no URL's user, password or query
  values, no bearer or basic credentials.
- Population runs (labinterp.server.runs): a run's listing and chunk jobs are jobs of this queue under keys no
  FHIR id can be (`run:<id>`, `chunk:<id>:<n>`), so coalescing, exclusivity, leases and release hold for them too;
  the runs' records are tables of the same file (`runs`, `run_chunks`, created when missing: older files migrate).
Every call opens its own connection (WAL mode), so threads and processes can share the file."""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from labinterp.errors import shown_url
from labinterp.server.observability import current_request_id
from labinterp.server.runs import RunStore, sqlite_tx

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    patient TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'running', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before REAL NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    error TEXT NOT NULL DEFAULT '',
    warnings TEXT NOT NULL DEFAULT '',
    retryable INTEGER NOT NULL DEFAULT 0,
    correlation TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_one_pending ON jobs (patient) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, not_before);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
INDEXES = "CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (state, updated);"
# errors recorded before `retryable` existed whose class the error tree calls temporary (their text starts with it)
LEGACY_TEMPORARY = ("FhirTemporaryError:", "FhirConflict:", "OSError:", "ConnectionError:", "TimeoutError:")
RETENTION = 7 * 24 * 3600.0  # done jobs kept a week: GET /queue shows recent warnings and failures
MAX_FINISHED = 10_000  # and at most this many done jobs, and this many failed ones
PRUNE_EVERY = 60.0  # seconds between prunes triggered by finished jobs

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_CREDENTIAL = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9\-._~+/]+=*")
_SECRET_PARAM = re.compile(r"(?i)\b(token|access_token|password|passwd|secret|api[_-]?key)=[^\s&'\"]+")


def redacted(text: str) -> str:
    """`text` as a log, the queue or an answer may show it: each URL as errors.shown_url shows it (no user or
    password, no query values), no bearer or basic credentials, no `token=`/`password=` values."""
    text = _URL.sub(lambda m: shown_url(m.group(0)), text)
    text = _CREDENTIAL.sub(lambda m: f"{m.group(1)} …", text)
    return _SECRET_PARAM.sub(lambda m: f"{m.group(1)}=…", text)


@dataclass(frozen=True)
class Job:
    id: int
    patient: str
    reason: str
    attempts: int
    correlation: str = ""  # the correlation id of the request (or poll) that enqueued it; "" for older jobs


class JobQueue:
    def __init__(
        self,
        path: str | Path,
        lease_seconds: float = 300.0,
        *,
        retention: float = RETENTION,
        max_finished: int = MAX_FINISHED,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lease_seconds, self.retention, self.max_finished, self.clock = lease_seconds, retention, max_finished, clock
        self._pruned_at = float("-inf")
        with self._db() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
            if "warnings" not in columns:  # a queue file from before warnings were recorded
                db.execute("ALTER TABLE jobs ADD COLUMN warnings TEXT NOT NULL DEFAULT ''")
            if "retryable" not in columns:  # from before retryable failures: those that failed on a temporary error
                db.execute("ALTER TABLE jobs ADD COLUMN retryable INTEGER NOT NULL DEFAULT 0")
                db.execute(
                    "UPDATE jobs SET retryable = 1 WHERE state = 'failed' AND ("
                    + " OR ".join("error LIKE ?" for _ in LEGACY_TEMPORARY)
                    + ")",
                    [prefix + "%" for prefix in LEGACY_TEMPORARY],
                )
            if "correlation" not in columns:  # from before correlation ids: those jobs get one when claimed
                try:
                    db.execute("ALTER TABLE jobs ADD COLUMN correlation TEXT NOT NULL DEFAULT ''")
                except sqlite3.OperationalError as exc:  # another process added it meanwhile
                    if "duplicate column" not in str(exc):
                        raise
            db.executescript(INDEXES)
        self.runs = RunStore(sqlite_tx(self.path), clock=clock)  # population runs: their records beside the jobs
        with self.runs.tx() as tx:
            self.runs.create_schema(tx)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            yield db
        finally:
            db.close()

    @contextmanager
    def _immediate(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE: the write lock taken first), committed when the block ends, rolled
        back when it raises."""
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def enqueue(self, patient: str, reason: str = "", delay: float = 0.0, *, correlation: str | None = None) -> None:
        """A pending job for `patient` (merged into its pending job if there is one, which keeps its correlation
        id). `correlation`: the id the worker's logs for the job carry; by default the current request's."""
        now = self.clock()
        correlation = current_request_id() if correlation is None else correlation
        with self._db() as db:
            db.execute(
                "INSERT INTO jobs (patient, reason, state, not_before, created, updated, correlation) "
                "VALUES (?, ?, 'pending', ?, ?, ?, ?) "
                "ON CONFLICT (patient) WHERE state = 'pending' DO UPDATE SET reason = excluded.reason, "
                "updated = excluded.updated, "
                "correlation = CASE WHEN jobs.correlation = '' THEN excluded.correlation ELSE jobs.correlation END",
                (patient, reason, now + delay, now, now, correlation or ""),
            )

    def enqueue_many(self, keys: list[str], reason: str = "", *, correlation: str | None = None) -> None:
        """Pending jobs for `keys` (a run's chunks), in one transaction, each coalesced as `enqueue` does."""
        now = self.clock()
        correlation = current_request_id() if correlation is None else correlation
        with self._immediate() as db:
            db.executemany(
                "INSERT INTO jobs (patient, reason, state, not_before, created, updated, correlation) "
                "VALUES (?, ?, 'pending', ?, ?, ?, ?) ON CONFLICT (patient) WHERE state = 'pending' DO NOTHING",
                [(key, reason, now, now, now, correlation or "") for key in keys],
            )

    def claim(self) -> Job | None:
        """The oldest due job whose patient is not being worked on, marked running; None when there is none."""
        now = self.clock()
        with self._immediate() as db:
            # a running job whose lease expired belongs to a process that died: hand it out again
            db.execute(
                "UPDATE jobs SET state = 'pending', updated = ? WHERE state = 'running' AND updated < ? "
                "AND patient NOT IN (SELECT patient FROM jobs WHERE state = 'pending')",
                (now, now - self.lease_seconds),
            )
            row = db.execute(
                "SELECT id, patient, reason, attempts, correlation FROM jobs WHERE state = 'pending' AND not_before <= ? "
                "AND patient NOT IN (SELECT patient FROM jobs WHERE state = 'running') ORDER BY not_before, id LIMIT 1",
                (now,),
            ).fetchone()
            if row is None:
                return None
            db.execute("UPDATE jobs SET state = 'running', attempts = attempts + 1, updated = ? WHERE id = ?", (now, row[0]))
        return Job(row[0], row[1], row[2], row[3] + 1, row[4])

    def release(self, job: Job) -> bool:
        """A running job handed back (a stopping process could not finish it): pending again, due now, its attempt
        not counted; merged into a pending job for the same patient if one came meanwhile (that one made due now).
        False when the job was no longer running (finished, or already handed out again after its lease)."""
        now = self.clock()
        with self._immediate() as db:
            row = db.execute("SELECT state FROM jobs WHERE id = ?", (job.id,)).fetchone()
            if row is None or row[0] != "running":
                return False
            pending = db.execute("SELECT id FROM jobs WHERE patient = ? AND state = 'pending'", (job.patient,)).fetchone()
            if pending:
                db.execute(
                    "UPDATE jobs SET state = 'done', updated = ?, error = 'superseded: released at shutdown' WHERE id = ?",
                    (now, job.id),
                )
                db.execute("UPDATE jobs SET not_before = MIN(not_before, ?) WHERE id = ?", (now, pending[0]))
            else:
                db.execute(
                    "UPDATE jobs SET state = 'pending', attempts = MAX(attempts - 1, 0), not_before = ?, updated = ? "
                    "WHERE id = ?",
                    (now, now, job.id),
                )
        return True

    def done(self, job: Job, warnings: list[str] | None = None) -> None:
        """Finished. `warnings`: one line per resource the job left out (the reports were written without it)."""
        with self._db() as db:
            db.execute(
                "UPDATE jobs SET state = 'done', updated = ?, error = '', warnings = ? WHERE id = ?",
                (self.clock(), "\n".join(redacted(w) for w in warnings or []), job.id),
            )
        self._prune_now_and_then()

    def renew(self, job_ids: list[int]) -> None:
        """The lease of running jobs whose worker is alive and still on them, renewed: only a job of a process that
        died outlives its lease (a job slower than the lease was once handed out again, then lost)."""
        if not job_ids:
            return
        with self._db() as db:
            marks = ",".join("?" for _ in job_ids)
            db.execute(f"UPDATE jobs SET updated = ? WHERE state = 'running' AND id IN ({marks})", (self.clock(), *job_ids))

    def retry(self, job: Job, error: str, delay: float) -> None:
        """Back to pending after `delay` seconds; merged into a pending job for the same patient if one came meanwhile.
        A job no longer running (handed out again after its lease) is left to whoever holds it now."""
        now, error = self.clock(), redacted(error)
        with self._immediate() as db:
            state = db.execute("SELECT state FROM jobs WHERE id = ?", (job.id,)).fetchone()
            if state is None or state[0] != "running":
                return
            pending = db.execute(
                "SELECT id FROM jobs WHERE patient = ? AND state = 'pending' AND id != ?", (job.patient, job.id)
            ).fetchone()
            if pending:
                db.execute(
                    "UPDATE jobs SET state = 'done', updated = ?, error = ? WHERE id = ?", (now, f"superseded: {error}", job.id)
                )
            else:
                db.execute(
                    "UPDATE jobs SET state = 'pending', not_before = ?, updated = ?, error = ? WHERE id = ?",
                    (now + delay, now, error, job.id),
                )

    def fail(self, job: Job, error: str, *, retryable: bool = False) -> None:
        """Failed. `retryable`: on a temporary error (the caller's attempts ran out), so `requeue_retryable()` hands
        it out again once the FHIR server answers; any other failure stays failed (retrying cannot mend it)."""
        with self._db() as db:
            db.execute(
                "UPDATE jobs SET state = 'failed', updated = ?, error = ?, retryable = ? WHERE id = ?",
                (self.clock(), redacted(error), int(retryable), job.id),
            )
        self._prune_now_and_then()

    def has_retryable(self) -> bool:
        """Jobs that wait for the FHIR server: failed on a temporary error, or pending in backoff after one."""
        now = self.clock()
        with self._db() as db:
            row = db.execute(
                "SELECT 1 FROM jobs WHERE (state = 'failed' AND retryable = 1) "
                "OR (state = 'pending' AND error != '' AND not_before > ?) LIMIT 1",
                (now,),
            ).fetchone()
        return row is not None

    def requeue_retryable(self) -> int:
        """Jobs that failed on a temporary error back to pending, due now (merged into a pending job for the same
        patient if there is one); how many patients were requeued."""
        now = self.clock()
        with self._immediate() as db:
            rows = db.execute(
                "SELECT id, patient FROM jobs WHERE state = 'failed' AND retryable = 1 ORDER BY updated DESC"
            ).fetchall()
            requeued: set[str] = set()
            for job_id, patient in rows:
                pending = db.execute("SELECT 1 FROM jobs WHERE patient = ? AND state = 'pending'", (patient,)).fetchone()
                if pending or patient in requeued:
                    db.execute(
                        "UPDATE jobs SET state = 'done', retryable = 0, updated = ?, error = 'superseded: ' || error "
                        "WHERE id = ?",
                        (now, job_id),
                    )
                else:
                    db.execute(
                        "UPDATE jobs SET state = 'pending', retryable = 0, attempts = 0, not_before = ?, updated = ? "
                        "WHERE id = ?",
                        (now, now, job_id),
                    )
                    requeued.add(patient)
        return len(requeued)

    def wake_retrying(self) -> int:
        """Jobs waiting in backoff after an error made due now (the FHIR server is back: no need to wait out the
        backoff); how many."""
        now = self.clock()
        with self._db() as db:
            return db.execute(
                "UPDATE jobs SET not_before = ? WHERE state = 'pending' AND error != '' AND not_before > ?", (now, now)
            ).rowcount

    def prune(self) -> int:
        """Finished jobs removed: done jobs older than the retention, and all but the newest `max_finished` done
        jobs and `max_finished` failed jobs. Pending and running jobs are never touched. How many were removed."""
        now = self.clock()
        with self._db() as db:
            removed = db.execute("DELETE FROM jobs WHERE state = 'done' AND updated < ?", (now - self.retention,)).rowcount
            for state in ("done", "failed"):
                removed += db.execute(
                    "DELETE FROM jobs WHERE state = ? AND id NOT IN "
                    "(SELECT id FROM jobs WHERE state = ? ORDER BY updated DESC, id DESC LIMIT ?)",
                    (state, state, self.max_finished),
                ).rowcount
        self._pruned_at = time.monotonic()
        return removed

    def _prune_now_and_then(self) -> None:
        if time.monotonic() - self._pruned_at >= PRUNE_EVERY:
            self.prune()

    def counts(self) -> dict[str, int]:
        with self._db() as db:
            rows = db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        out = {"pending": 0, "running": 0, "done": 0, "failed": 0}
        out.update({state: n for state, n in rows})
        return out

    def oldest_pending_age(self) -> float | None:
        """Seconds since the oldest pending job was first enqueued (retries keep their first time); None when
        nothing is pending."""
        with self._db() as db:
            row = db.execute("SELECT MIN(created) FROM jobs WHERE state = 'pending'").fetchone()
        return None if row is None or row[0] is None else max(0.0, self.clock() - row[0])

    def failures(self, limit: int = 20) -> list[dict[str, object]]:
        with self._db() as db:
            rows = db.execute(
                "SELECT id, patient, attempts, error, updated, retryable FROM jobs WHERE state = 'failed' "
                "ORDER BY updated DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            {"id": r[0], "patient": r[1], "attempts": r[2], "error": redacted(r[3]), "updated": r[4], "retryable": bool(r[5])}
            for r in rows
        ]

    def retrying(self, limit: int = 20) -> list[dict[str, object]]:
        """Pending jobs that failed before and wait for their next try (during a FHIR server outage), newest first."""
        with self._db() as db:
            rows = db.execute(
                "SELECT id, patient, attempts, error, not_before FROM jobs WHERE state = 'pending' AND error != '' "
                "ORDER BY updated DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [{"id": r[0], "patient": r[1], "attempts": r[2], "error": redacted(r[3]), "next_try": r[4]} for r in rows]

    def warned(self, limit: int = 20) -> list[dict[str, object]]:
        """Recent jobs that succeeded with resources left out, newest first, each with its warning lines."""
        with self._db() as db:
            rows = db.execute(
                "SELECT id, patient, warnings, updated FROM jobs WHERE state = 'done' AND warnings != '' "
                "ORDER BY updated DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [{"id": r[0], "patient": r[1], "warnings": [redacted(w) for w in r[2].split("\n")], "updated": r[3]} for r in rows]

    def worker_stopped(self) -> None:
        """A worker of this process stopped (nothing to do here: its jobs' leases are in the jobs themselves)."""

    def get_meta(self, key: str) -> str | None:
        with self._db() as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._db() as db:
            db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value)
            )
