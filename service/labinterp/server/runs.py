"""Population runs on the job queue: one *listing* job selects the patients and splits them into *chunk* jobs that
any number of workers (threads, processes, machines) claim from the same queue.

Job keys. A queued job is keyed by a patient id, or by a key no FHIR id can be (FHIR ids have no `:`):
`run:<run id>` for a run's listing job and `chunk:<run id>:<n>` for its n-th chunk. Both backends (SQLite and
PostgreSQL) use the same keys, so coalescing and per-key exclusivity hold for chunk jobs as for patients.

The run's record (`RunStore`, tables `runs` and `run_chunks` beside the jobs) holds the selection, each chunk's
patient ids and state, and the run's totals. A chunk's outcome is added to the run once: `chunk_done` marks the
chunk done and adds its counts in one transaction, only if it was not done already, so a chunk job that ran twice
(a worker killed after its write, its job handed out again) is counted once, and its second run writes nothing new
on the FHIR side (conditional creates and replays are idempotent). A listing job that ran twice lists once.

States: `listing` (the listing job has not finished), `running` (chunks listed, some not finished), `done` (every
chunk finished; patients that failed are listed in the run), `failed` (the listing failed for good, or a chunk job
failed for good: its patients are counted as failed)."""

from __future__ import annotations

import json
import re
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from labinterp.population import ChunkOutcome

FAILED_SHOWN = 100  # failed patients kept in a run's record (the count goes on)
_RUN_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def listing_key(run_id: str) -> str:
    return f"run:{run_id}"


def chunk_key(run_id: str, n: int) -> str:
    return f"chunk:{run_id}:{n}"


@dataclass(frozen=True)
class JobKind:
    kind: str  # "patient", "listing" or "chunk"
    key: str  # the patient id, or the run id
    chunk: int = -1


def parse_key(key: str) -> JobKind:
    """What a job key names: a patient (any key without `:`), a run's listing, or one of its chunks."""
    if key.startswith("run:"):
        return JobKind("listing", key[4:])
    if key.startswith("chunk:"):
        run_id, _, n = key[6:].rpartition(":")
        if run_id and n.isdigit():
            return JobKind("chunk", run_id, int(n))
    return JobKind("patient", key)


def new_run_id() -> str:
    return uuid.uuid4().hex


def is_run_id(text: str) -> bool:
    return bool(_RUN_ID.fullmatch(text))


class Cursor(Protocol):
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...

    @property
    def rowcount(self) -> int: ...


class Tx(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...


SCHEMA = [
    """CREATE TABLE IF NOT EXISTS {p}runs (
        id TEXT PRIMARY KEY,
        selection TEXT NOT NULL,
        state TEXT NOT NULL,
        chunks_total INTEGER NOT NULL DEFAULT 0,
        chunks_done INTEGER NOT NULL DEFAULT 0,
        chunks_failed INTEGER NOT NULL DEFAULT 0,
        patients INTEGER NOT NULL DEFAULT 0,
        created INTEGER NOT NULL DEFAULT 0,
        amended INTEGER NOT NULL DEFAULT 0,
        unchanged INTEGER NOT NULL DEFAULT 0,
        requests INTEGER NOT NULL DEFAULT 0,
        left_out INTEGER NOT NULL DEFAULT 0,
        failed_count INTEGER NOT NULL DEFAULT 0,
        failed TEXT NOT NULL DEFAULT '[]',
        error TEXT NOT NULL DEFAULT '',
        started DOUBLE PRECISION NOT NULL,
        finished DOUBLE PRECISION
    )""",
    """CREATE TABLE IF NOT EXISTS {p}run_chunks (
        run_id TEXT NOT NULL,
        n INTEGER NOT NULL,
        ids TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',
        PRIMARY KEY (run_id, n)
    )""",
]


class RunStore:
    """Run records in a SQL database: SQLite (the queue's file) or PostgreSQL (the queue's database). SQL is written
    with `?` placeholders; `tx` yields a transaction whose `execute` takes them."""

    def __init__(
        self,
        tx: Callable[[], AbstractContextManager[Tx]],
        *,
        prefix: str = "",
        lock: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.tx, self.p, self.lock, self.clock = tx, prefix, lock, clock

    def create_schema(self, db: Tx) -> None:
        for statement in SCHEMA:
            db.execute(statement.format(p=self.p))

    def create(self, selection: str) -> str:
        run_id = new_run_id()
        with self.tx() as db:
            db.execute(
                f"INSERT INTO {self.p}runs (id, selection, state, started) VALUES (?, ?, 'listing', ?)",
                (run_id, selection, self.clock()),
            )
        return run_id

    def get(self, run_id: str) -> dict[str, Any] | None:
        with self.tx() as db:
            row = db.execute(
                "SELECT id, selection, state, chunks_total, chunks_done, chunks_failed, patients, created, amended, unchanged, "
                f"requests, left_out, failed_count, failed, error, started, finished FROM {self.p}runs WHERE id = ?",
                (run_id,),
            ).fetchone()
        if row is None:
            return None
        names = [
            "id",
            "selection",
            "state",
            "chunks_total",
            "chunks_done",
            "chunks_failed",
            "patients",
            "created",
            "amended",
            "unchanged",
            "requests",
            "left_out",
            "failed_count",
            "failed",
            "error",
            "started",
            "finished",
        ]
        run = dict(zip(names, row, strict=True))
        run["selection"] = json.loads(run["selection"])
        run["failed"] = [{"patient": p, "error": e} for p, e in json.loads(run["failed"])]
        return run

    def state(self, run_id: str) -> str | None:
        with self.tx() as db:
            row = db.execute(f"SELECT state FROM {self.p}runs WHERE id = ?", (run_id,)).fetchone()
        return None if row is None else str(row[0])

    def selection(self, run_id: str) -> str | None:
        with self.tx() as db:
            row = db.execute(f"SELECT selection FROM {self.p}runs WHERE id = ?", (run_id,)).fetchone()
        return None if row is None else str(row[0])

    def listed(self, run_id: str, chunks: list[list[str]], skipped: list[tuple[str, str]]) -> list[int]:
        """The run's chunks recorded (once: a listing job that runs again finds them) and the run `running` (`done`
        when there is nothing to do). Returns the numbers of the chunks not finished yet, to enqueue."""
        with self.tx() as db:
            row = db.execute(f"SELECT state FROM {self.p}runs WHERE id = ?{self.lock}", (run_id,)).fetchone()
            if row is None:
                return []
            if row[0] == "listing":
                for n, ids in enumerate(chunks):
                    db.execute(f"INSERT INTO {self.p}run_chunks (run_id, n, ids) VALUES (?, ?, ?)", (run_id, n, json.dumps(ids)))
                failed = [(where, what) for where, what in skipped]
                empty = not chunks
                db.execute(
                    f"UPDATE {self.p}runs SET state = ?, chunks_total = ?, failed_count = ?, failed = ?, finished = ? WHERE id = ?",
                    (
                        "done" if empty else "running",
                        len(chunks),
                        len(failed),
                        json.dumps(failed[:FAILED_SHOWN]),
                        self.clock() if empty else None,
                        run_id,
                    ),
                )
            rows = db.execute(
                f"SELECT n FROM {self.p}run_chunks WHERE run_id = ? AND state = 'pending' ORDER BY n", (run_id,)
            ).fetchall()
        return [int(r[0]) for r in rows]

    def listing_failed(self, run_id: str, error: str) -> None:
        with self.tx() as db:
            db.execute(
                f"UPDATE {self.p}runs SET state = 'failed', error = ?, finished = ? WHERE id = ? AND state = 'listing'",
                (error, self.clock(), run_id),
            )

    def chunk_ids(self, run_id: str, n: int) -> list[str] | None:
        """The chunk's patient ids; None when it is finished already (or unknown): nothing to do."""
        with self.tx() as db:
            row = db.execute(f"SELECT ids, state FROM {self.p}run_chunks WHERE run_id = ? AND n = ?", (run_id, n)).fetchone()
        if row is None or row[1] != "pending":
            return None
        return [str(i) for i in json.loads(row[0])]

    def chunk_done(self, run_id: str, n: int, outcome: ChunkOutcome) -> bool:
        """The chunk finished: its outcome added to the run's totals, once. False when it was finished already."""
        return self._finish_chunk(run_id, n, "done", outcome)

    def chunk_failed(self, run_id: str, n: int, error: str) -> bool:
        """The chunk's job failed for good: each of its patients counted as failed with `error`, the run `failed`
        once every chunk finished."""
        ids = self.chunk_ids(run_id, n) or []
        outcome = ChunkOutcome(patients=len(ids), failed=[(pid, error) for pid in ids])
        return self._finish_chunk(run_id, n, "failed", outcome)

    def _finish_chunk(self, run_id: str, n: int, state: str, outcome: ChunkOutcome) -> bool:
        now = self.clock()
        with self.tx() as db:
            run = db.execute(f"SELECT failed, failed_count FROM {self.p}runs WHERE id = ?{self.lock}", (run_id,)).fetchone()
            changed = db.execute(
                f"UPDATE {self.p}run_chunks SET state = ? WHERE run_id = ? AND n = ? AND state = 'pending'", (state, run_id, n)
            ).rowcount
            if run is None or changed != 1:
                return False
            shown = [tuple(f) for f in json.loads(run[0])]
            shown += [(pid, why) for pid, why in outcome.failed][: max(0, FAILED_SHOWN - len(shown))]
            db.execute(
                f"UPDATE {self.p}runs SET chunks_done = chunks_done + ?, chunks_failed = chunks_failed + ?, "
                "patients = patients + ?, created = created + ?, amended = amended + ?, unchanged = unchanged + ?, "
                "requests = requests + ?, left_out = left_out + ?, failed_count = failed_count + ?, failed = ? WHERE id = ?",
                (
                    int(state == "done"),
                    int(state == "failed"),
                    outcome.patients,
                    outcome.created,
                    outcome.amended,
                    outcome.unchanged,
                    outcome.requests,
                    outcome.left_out,
                    len(outcome.failed),
                    json.dumps(shown),
                    run_id,
                ),
            )
            db.execute(
                f"UPDATE {self.p}runs SET state = CASE WHEN chunks_failed > 0 THEN 'failed' ELSE 'done' END, finished = ? "
                "WHERE id = ? AND state = 'running' AND chunks_done + chunks_failed >= chunks_total",
                (now, run_id),
            )
        return True


# --- SQLite ---------------------------------------------------------------------------------------


class _SqliteTx:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        return self.db.execute(sql, tuple(params))


def sqlite_tx(path: str | Path) -> Callable[[], AbstractContextManager[Tx]]:
    """Transactions on a SQLite file (BEGIN IMMEDIATE: one writer at a time, across processes)."""

    @contextmanager
    def tx() -> Iterator[Tx]:
        db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield _SqliteTx(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()

    return tx
