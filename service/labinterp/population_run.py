"""A population run from the command line: the selection listed, cut into chunks, the chunks run by a few threads
(each reading, planning and writing its own chunk, so one chunk's reading and interpreting overlaps another's
writing), with a checkpoint so an interrupted run resumes where it stopped and a progress bar on a terminal.

The checkpoint is a small SQLite file under the work directory, keyed by the FHIR server, the selection, the write
mode and the rule set: it holds the evaluation time of the run (a resumed run interprets as of the same time) and
the patients done. It is removed when the run completes; `restart=True` ignores and replaces it. It holds patient
ids (as the job queue does), never anything else about a patient, and is readable by its owner only."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from labinterp.errors import FhirWritesRefused, InputError, LabinterpError
from labinterp.extract.fhirtime import parse_now
from labinterp.fhir.client import FhirClient
from labinterp.knowledge import Knowledge
from labinterp.population import (
    ChunkOptions,
    ChunkOutcome,
    Selection,
    chunked,
    ensure_device,
    run_chunk_isolated,
    select_patients,
)

log = logging.getLogger("labinterp.population")


class CheckpointError(InputError):
    """A checkpoint file that cannot be read (not SQLite, or not what a run wrote): one line naming it, never a
    traceback; `--restart` replaces it."""

    def __init__(self, path: Path) -> None:
        super().__init__(str(path), "the run's checkpoint cannot be read: run again with --restart to start afresh")


class Checkpoint:
    """Patients done in a run, and the run's evaluation time, in `path` (SQLite)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))  # owner-only from the start, whatever the umask
            os.chmod(path, 0o600)
        with self._db() as db:
            db.executescript(
                "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                "CREATE TABLE IF NOT EXISTS done (patient TEXT PRIMARY KEY);"
                "CREATE TABLE IF NOT EXISTS chunks (id INTEGER PRIMARY KEY AUTOINCREMENT, outcome TEXT NOT NULL);"
            )

    @staticmethod
    def path_for(workdir: Path, base_url: str, selection: Selection, options: ChunkOptions, ruleset: str) -> Path:
        base = base_url.rstrip("/")  # https://h/fhir and https://h/fhir/ are one server: the run resumes
        key = json.dumps([base, selection.to_json(), options.write, ruleset, options.equation, options.strict])
        return workdir / "runs" / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.sqlite3"

    @classmethod
    def for_run(cls, workdir: Path, base_url: str, selection: Selection, options: ChunkOptions, ruleset: str) -> Checkpoint:
        return cls(cls.path_for(workdir, base_url, selection, options, ruleset))

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        try:
            db = sqlite3.connect(self.path, timeout=30)
        except sqlite3.DatabaseError:
            raise CheckpointError(self.path) from None
        try:
            with db:
                yield db
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc):
                raise  # another run of the same selection holds it: not a corrupt file
            raise CheckpointError(self.path) from None
        except sqlite3.DatabaseError:
            raise CheckpointError(self.path) from None
        finally:
            db.close()

    def started_at(self, now: datetime) -> tuple[datetime, bool]:
        """The run's evaluation time: the stored one when resuming (True), else `now`, stored."""
        with self._db() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'now'").fetchone()
            if row:
                try:
                    return parse_now(str(row[0])), True
                except (LabinterpError, ValueError):
                    raise CheckpointError(self.path) from None
            db.execute("INSERT INTO meta VALUES ('now', ?)", (now.isoformat(),))
            return now, False

    def done(self) -> set[str]:
        with self._db() as db:
            return {r[0] for r in db.execute("SELECT patient FROM done")}

    def previous(self) -> ChunkOutcome:
        total = ChunkOutcome()
        with self._db() as db:
            for (text,) in db.execute("SELECT outcome FROM chunks"):
                try:
                    total.add(ChunkOutcome.from_json(json.loads(text)))
                except (TypeError, ValueError, AttributeError):
                    raise CheckpointError(self.path) from None
        return total

    def record(self, ids: list[str], outcome: ChunkOutcome) -> None:
        failed = {pid for pid, _ in outcome.failed}
        with self._db() as db:
            db.executemany("INSERT OR IGNORE INTO done VALUES (?)", [(p,) for p in ids if p not in failed])
            db.execute("INSERT INTO chunks (outcome) VALUES (?)", (json.dumps(outcome.to_json()),))

    def refused(self) -> frozenset[str]:
        """The patients whose whole transaction, refused patient by patient, stopped this run before."""
        with self._db() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'refused'").fetchone()
        try:
            ids = json.loads(row[0]) if row else []
        except ValueError:
            raise CheckpointError(self.path) from None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise CheckpointError(self.path)
        return frozenset(ids)

    def add_refused(self, patients: Iterable[str]) -> None:
        ids = sorted(self.refused() | set(patients))
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('refused', ?)", (json.dumps(ids),))

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


@dataclass
class RunSummary:
    outcome: ChunkOutcome
    now: datetime
    resumed: bool
    seconds: float
    listing_requests: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    interrupted: bool = False

    @property
    def requests(self) -> int:
        return self.outcome.requests + self.listing_requests

    def to_json(self) -> dict[str, Any]:
        o = self.outcome
        per = self.requests / o.patients if o.patients else 0.0
        return {
            "patients": o.patients,
            "created": o.created,
            "amended": o.amended,
            "unchanged": o.unchanged,
            "failed": [{"patient": p, "error": e} for p, e in o.failed],
            "left_out": o.left_out,
            "skipped": [{"where": w, "why": y} for w, y in self.skipped],
            "requests": self.requests,
            "requests_per_patient": round(per, 4),
            "transactions": o.transactions,
            "seconds": round(self.seconds, 2),
            "patients_per_second": round(o.patients / self.seconds, 2) if self.seconds > 0 else None,
            "evaluated_at": self.now.isoformat(),
            "resumed": self.resumed,
            "interrupted": self.interrupted,
        }


def run_population(
    client_factory: Callable[[], FhirClient],
    selection: Selection,
    k: Knowledge,
    now: datetime,
    options: ChunkOptions,
    *,
    chunk_size: int = 100,
    workers: int = 2,
    checkpoint: Checkpoint | None = None,
    progress: bool = False,
) -> RunSummary:
    """Run a selection chunk by chunk on `workers` threads (each with its own client). Ctrl-C stops taking new
    chunks, lets the running ones finish and keeps the checkpoint: the same command resumes."""
    started = time.perf_counter()
    resumed, done = False, set[str]()
    previous = ChunkOutcome()
    if checkpoint is not None:
        now, resumed = checkpoint.started_at(now)
        done, previous = checkpoint.done(), checkpoint.previous()
        options = replace(options, tolerated=options.tolerated | checkpoint.refused())
    lister = client_factory()
    selected = select_patients(lister, selection, now)  # a Group's members as of the run's time, as its patients
    ensure_device(lister, k, options.write)  # once, before chunks run at once and race to create it
    total = ChunkOutcome()
    failed_before = {pid for pid, _ in previous.failed}  # not done: redone by this run, and counted once, as it goes now
    redone: set[str] = set()
    bar = tqdm(total=selected.total, initial=len(done), unit="patient", disable=not progress, file=sys.stderr, smoothing=0.1)
    clients: dict[int, FhirClient] = {}
    interrupted = False

    def one(ids: list[str]) -> tuple[list[str], ChunkOutcome]:
        import threading

        client = clients.setdefault(threading.get_ident(), client_factory())
        return ids, run_chunk_isolated(client, ids, k, now, options)

    pending: set[Future[tuple[list[str], ChunkOutcome]]] = set()

    def finish(futures: set[Future[tuple[list[str], ChunkOutcome]]]) -> None:
        """Record every chunk that finished, then raise the first one's error, if any: nothing done is redone."""
        errors = [fut.exception() for fut in futures if fut.exception() is not None]
        refused = [p for e in errors if isinstance(e, FhirWritesRefused) for p in e.patients]
        if refused and checkpoint is not None:  # a resumed run names them as failed if refused again, and goes on
            checkpoint.add_refused(refused)
        for fut in futures:
            if fut.exception() is None:
                ids, outcome = fut.result()
                total.add(outcome)
                if checkpoint is not None:
                    checkpoint.record(ids, outcome)
                bar.update(len(ids))
        if errors:
            raise errors[0]  # type: ignore[misc]

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="labinterp-chunk") as pool:
        try:
            for ids in chunked((p for p in selected.ids if p not in done), chunk_size):
                redone.update(p for p in ids if p in failed_before)
                while len(pending) >= workers * 2:  # a bounded window: memory stays flat on any population
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    finish(finished)
                pending.add(pool.submit(one, ids))
            finished, pending = wait(pending)
            finish(finished)
        except KeyboardInterrupt:
            interrupted = True
            for fut in pending:
                fut.cancel()
            finished, _ = wait([f for f in pending if not f.cancelled()])
            finish({f for f in finished if f.exception() is None})
        finally:
            bar.close()
    if checkpoint is not None and not interrupted:
        checkpoint.remove()
    return RunSummary(
        _with_previous(previous, redone, total),
        now,
        resumed,
        time.perf_counter() - started,
        lister.stats.snapshot()[0],
        selected.skipped,
        interrupted,
    )


def _with_previous(previous: ChunkOutcome, redone: set[str], now: ChunkOutcome) -> ChunkOutcome:
    """A resumed run's totals: the earlier chunks' and this run's, where a patient that failed before and was redone
    now counts once, with this run's outcome (not still named as failed when it has now been written)."""
    out = ChunkOutcome()
    out.add(previous)
    again = [f for f in previous.failed if f[0] in redone]
    out.patients -= len(again)
    out.failed = [f for f in previous.failed if f[0] not in redone]
    out.add(now)
    return out
