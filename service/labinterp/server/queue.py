"""A durable work queue in SQLite: one job per patient to (re)interpret.

- Enqueueing coalesces: a patient has at most one pending job; a notification for a patient whose job
  is running adds one pending job, done after the running one.
- Claiming is atomic and never hands out a patient that is already running, so two notifications for
  one patient are never processed at once (in any number of threads or processes sharing the file).
- A job left `running` by a process that died is handed out again after its lease expires, so stopping
  the service with queued or running work loses nothing.
Every call opens its own connection (WAL mode), so threads and processes can share the file."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

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
    warnings TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_one_pending ON jobs (patient) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, not_before);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Job:
    id: int
    patient: str
    reason: str
    attempts: int


class JobQueue:
    def __init__(self, path: str | Path, lease_seconds: float = 300.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lease_seconds = lease_seconds
        with self._db() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
            if "warnings" not in columns:  # a queue file from before warnings were recorded
                db.execute("ALTER TABLE jobs ADD COLUMN warnings TEXT NOT NULL DEFAULT ''")

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            yield db
        finally:
            db.close()

    def enqueue(self, patient: str, reason: str = "", delay: float = 0.0) -> None:
        now = time.time()
        with self._db() as db:
            db.execute(
                "INSERT INTO jobs (patient, reason, state, not_before, created, updated) VALUES (?, ?, 'pending', ?, ?, ?) "
                "ON CONFLICT (patient) WHERE state = 'pending' DO UPDATE SET reason = excluded.reason, updated = excluded.updated",
                (patient, reason, now + delay, now, now),
            )

    def claim(self) -> Job | None:
        """The oldest due job whose patient is not being worked on, marked running; None when there is none."""
        now = time.time()
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                # a running job whose lease expired belongs to a process that died: hand it out again
                db.execute(
                    "UPDATE jobs SET state = 'pending', updated = ? WHERE state = 'running' AND updated < ? "
                    "AND patient NOT IN (SELECT patient FROM jobs WHERE state = 'pending')",
                    (now, now - self.lease_seconds),
                )
                row = db.execute(
                    "SELECT id, patient, reason, attempts FROM jobs WHERE state = 'pending' AND not_before <= ? "
                    "AND patient NOT IN (SELECT patient FROM jobs WHERE state = 'running') ORDER BY not_before, id LIMIT 1",
                    (now,),
                ).fetchone()
                if row is None:
                    db.execute("COMMIT")
                    return None
                db.execute("UPDATE jobs SET state = 'running', attempts = attempts + 1, updated = ? WHERE id = ?", (now, row[0]))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return Job(row[0], row[1], row[2], row[3] + 1)

    def done(self, job: Job, warnings: list[str] | None = None) -> None:
        """Finished. `warnings`: one line per resource the job left out (the reports were written without it)."""
        with self._db() as db:
            db.execute(
                "UPDATE jobs SET state = 'done', updated = ?, error = '', warnings = ? WHERE id = ?",
                (time.time(), "\n".join(warnings or []), job.id),
            )

    def retry(self, job: Job, error: str, delay: float) -> None:
        """Back to pending after `delay` seconds; merged into a pending job for the same patient if one came meanwhile."""
        now = time.time()
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            pending = db.execute("SELECT id FROM jobs WHERE patient = ? AND state = 'pending'", (job.patient,)).fetchone()
            if pending:
                db.execute(
                    "UPDATE jobs SET state = 'done', updated = ?, error = ? WHERE id = ?", (now, f"superseded: {error}", job.id)
                )
            else:
                db.execute(
                    "UPDATE jobs SET state = 'pending', not_before = ?, updated = ?, error = ? WHERE id = ?",
                    (now + delay, now, error, job.id),
                )
            db.execute("COMMIT")

    def fail(self, job: Job, error: str) -> None:
        with self._db() as db:
            db.execute("UPDATE jobs SET state = 'failed', updated = ?, error = ? WHERE id = ?", (time.time(), error, job.id))

    def counts(self) -> dict[str, int]:
        with self._db() as db:
            rows = db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        out = {"pending": 0, "running": 0, "done": 0, "failed": 0}
        out.update({state: n for state, n in rows})
        return out

    def failures(self, limit: int = 20) -> list[dict[str, object]]:
        with self._db() as db:
            rows = db.execute(
                "SELECT id, patient, attempts, error, updated FROM jobs WHERE state = 'failed' ORDER BY updated DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [{"id": r[0], "patient": r[1], "attempts": r[2], "error": r[3], "updated": r[4]} for r in rows]

    def warned(self, limit: int = 20) -> list[dict[str, object]]:
        """Recent jobs that succeeded with resources left out, newest first, each with its warning lines."""
        with self._db() as db:
            rows = db.execute(
                "SELECT id, patient, warnings, updated FROM jobs WHERE state = 'done' AND warnings != '' "
                "ORDER BY updated DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [{"id": r[0], "patient": r[1], "warnings": r[2].split("\n"), "updated": r[3]} for r in rows]

    def get_meta(self, key: str) -> str | None:
        with self._db() as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._db() as db:
            db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value)
            )
