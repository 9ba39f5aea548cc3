"""What the HTTP layer and the worker share: knowledge, the FHIR connection, the queue. Joins them to
the pipeline; holds no clinical logic. Each interpretation is reported to the `observers` (the metrics of
labinterp.server.observability) with its FHIR round trips, its result or its error."""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests
from requests.auth import AuthBase

from labinterp import population
from labinterp.errors import BundleError, FhirAuthError, FhirError, LabinterpError, is_temporary
from labinterp.fhir.client import FhirClient
from labinterp.fhir.notifications import carried_resource, check_path, patient_of
from labinterp.fhir.retry import RetryPolicy
from labinterp.knowledge import Knowledge
from labinterp.pipeline import BatchLiveResult, LiveResult, interpret_batch_live, interpret_patient
from labinterp.population import Selection
from labinterp.server.backend import Queue
from labinterp.server.queue import Job, redacted
from labinterp.server.runs import chunk_key, listing_key, parse_key

LOCK_STRIPES = 256  # serializes one patient's read-plan-write within a process; two patients rarely share one

log = logging.getLogger("labinterp.service")
READ_BACK = RetryPolicy(attempts=1)  # a notification's read-back is tried once: the FHIR server retries the notification


class NotificationMismatch(BundleError):
    """A notification whose path (/hook/{type}/{id}) names another resource than the one it carries (HTTP 400)."""


@dataclass(frozen=True)
class Interpretation:
    """What an observer learns of one interpretation: its result (None when it failed) or its error, the HTTP round
    trips to the FHIR server (retries included) and the retries among them, the time spent waiting on the server,
    the whole time taken, and whether it was a dry run."""

    result: LiveResult | None
    error: BaseException | None
    requests: int
    retries: int
    seconds_waiting: float
    seconds: float
    dry_run: bool


@dataclass
class Services:
    knowledge: Knowledge
    fhir_base_url: str
    queue: Queue
    api_token: str | None = None
    fhir_auth: AuthBase | None = None  # Settings.fhir_auth(): bearer, basic or SMART, shared by every client
    strict: bool = False  # any resource that cannot be used fails the patient (LABINTERP_STRICT)
    equation: str | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    render: bool = True
    session: requests.Session = field(default_factory=requests.Session)
    observers: list[Callable[[Interpretation], None]] = field(default_factory=list)  # told of each interpretation
    # population runs (POST /$interpret with all or group): patients per chunk job, per transaction, how reports are written
    chunk_size: int = 100
    transaction_size: int = 50
    write_mode: str = "conditional"
    validate: bool = True
    _ready_cache: tuple[float, list[str]] = (0.0, [])
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # a fixed set of lock stripes (a patient's id picks one): bounded memory however many patients pass by
    _locks: tuple[threading.Lock, ...] = field(default_factory=lambda: tuple(threading.Lock() for _ in range(LOCK_STRIPES)))

    def client(self, retry: RetryPolicy | None = None) -> FhirClient:
        """A client of the FHIR server; `retry` replaces the service's retry policy for this client."""
        return FhirClient(self.fhir_base_url, auth=self.fhir_auth, session=self.session, retry=retry or self.retry)

    def interpret(
        self, patient_id: str, *, dry_run: bool = False, now: datetime | None = None, strict: bool | None = None
    ) -> LiveResult:
        """One patient at a time per process (API calls and queue workers alike): the read-plan-write of
        two concurrent calls would otherwise both plan a create. Across processes, conditional creates
        and If-Match on amendments keep the server consistent. `strict` overrides the service's setting for
        this call; the resources left out are in `LiveResult.problems`."""
        with self._patient_lock(patient_id):
            client = self.client()
            started = time.perf_counter()
            try:
                result = interpret_patient(
                    client,
                    patient_id,
                    self.knowledge,
                    now or datetime.now(UTC).replace(microsecond=0),
                    dry_run=dry_run,
                    strict=self.strict if strict is None else strict,
                    equation=self.equation,
                    render=self.render,
                )
            except Exception as exc:
                self._observe(None, exc, client, started, dry_run)
                raise
            self._observe(result, None, client, started, dry_run)
            return result

    def _observe(
        self, result: LiveResult | None, error: BaseException | None, client: FhirClient, started: float, dry_run: bool
    ) -> None:
        if not self.observers:
            return
        requests_sent, retries, waiting = client.stats.snapshot()
        event = Interpretation(result, error, requests_sent, retries, waiting, time.perf_counter() - started, dry_run)
        for observer in self.observers:
            try:
                observer(event)
            except Exception as exc:  # counting must never fail an interpretation
                log.warning("interpretation observer failed: %s", type(exc).__name__)

    def interpret_batch(
        self, substance_id: str, *, dry_run: bool = False, now: datetime | None = None, strict: bool | None = None
    ) -> BatchLiveResult:
        """One formulation batch (SPEC section 5): its QC report read, planned and written like a patient's, under
        the same per-subject lock."""
        with self._patient_lock(f"Substance/{substance_id}"):
            return interpret_batch_live(
                self.client(),
                substance_id,
                self.knowledge,
                now or datetime.now(UTC).replace(microsecond=0),
                dry_run=dry_run,
                strict=self.strict if strict is None else strict,
                render=self.render,
            )

    def _patient_lock(self, patient_id: str) -> threading.Lock:
        return self._locks[zlib.crc32(patient_id.encode()) % len(self._locks)]

    def process(self, patient_id: str) -> list[str]:
        """What the worker does for one queued patient; returns the warnings (one line per resource left out)
        for the queue to record with the finished job."""
        return [p.line for p in self.interpret(patient_id).problems]

    # --- population runs: a listing job, then chunk jobs on the same queue (labinterp.server.runs) ---------------

    def start_run(self, selection: Selection) -> str:
        """A population run recorded and its listing job queued; the run's id (its status: `queue.runs.get(id)`)."""
        run_id = self.queue.runs.create(selection.to_json())
        self.queue.enqueue(listing_key(run_id), "population")
        log.info("population run %s started", run_id)
        return run_id

    def run_job(self, job: Job) -> list[str]:
        """What the worker does for a run's listing or chunk job. An error the error tree calls temporary propagates
        (the worker retries the job); any other error is recorded in the run (the listing, or the chunk's patients,
        failed) and propagates (the job fails)."""
        kind = parse_key(job.patient)
        if kind.kind == "listing":
            self._list_run(kind.key)
        elif kind.kind == "chunk":
            self._run_chunk(kind.key, kind.chunk)
        return []

    def _list_run(self, run_id: str) -> None:
        runs = self.queue.runs
        text = runs.selection(run_id)
        if text is None:
            return
        chunks: list[list[str]] = []
        skipped: list[tuple[str, str]] = []
        try:
            if runs.state(run_id) == "listing":
                client = self.client()
                # a Group's members as of the run's start: the time its chunks interpret at (_run_now)
                selected = population.select_patients(client, Selection.from_json(text), self._run_now(run_id))
                # written once before the chunks run: chunks running at once would race to create it
                population.ensure_device(client, self.knowledge, self.write_mode)  # type: ignore[arg-type]
                chunks = list(population.chunked(selected.ids, self.chunk_size))
                skipped = [(where, self.redact(why)) for where, why in selected.skipped]
            pending = runs.listed(run_id, chunks, skipped)  # a second listing job finds the chunks listed
        except Exception as exc:
            if not is_temporary(exc):
                runs.listing_failed(run_id, self._why(exc))
            raise
        self.queue.enqueue_many([chunk_key(run_id, n) for n in pending], "population")
        log.info("population run %s: %d chunks queued", run_id, len(pending))

    def _run_chunk(self, run_id: str, n: int) -> None:
        runs = self.queue.runs
        ids = runs.chunk_ids(run_id, n)
        if not ids:
            return  # finished already (a job that ran twice), or unknown
        options = population.ChunkOptions(
            write=self.write_mode,  # type: ignore[arg-type]  # Settings.write_mode: "conditional" or "put"
            render=self.render,
            validate=self.validate,
            strict=self.strict,
            equation=self.equation,
            transaction_size=self.transaction_size,
        )
        try:
            outcome = population.run_chunk_isolated(self.client(), ids, self.knowledge, self._run_now(run_id), options)
        except Exception as exc:
            if not is_temporary(exc):
                runs.chunk_failed(run_id, n, self._why(exc))
            raise
        outcome.failed = [(pid, self.redact(why)) for pid, why in outcome.failed]
        runs.chunk_done(run_id, n, outcome)

    def _run_now(self, run_id: str) -> datetime:
        """A run's evaluation time: its start, for every chunk (as the command line's resumed runs do) and for the
        Group membership its listing reads."""
        started = (self.queue.runs.get(run_id) or {}).get("started")
        now = datetime.fromtimestamp(started, UTC) if isinstance(started, int | float) else datetime.now(UTC)
        return now.replace(microsecond=0)

    def _why(self, exc: BaseException) -> str:
        if isinstance(exc, LabinterpError | OSError):
            return self.redact(f"{type(exc).__name__}: {exc}")
        return f"{type(exc).__name__} (unexpected: see the worker's log)"

    def group_members(self, group_id: str) -> tuple[list[str], list[tuple[str, str]]]:
        """The active Patient members of a Group, and the members that cannot be read, each (where, why): one odd
        member is named and the others are interpreted (labinterp.population.group_members). A Group the server
        answers with something that is not a Group is the server's fault (FhirError: 502)."""
        return population.group_members(self.client().read("Group", group_id), group_id)

    def patient_of_notification(self, body: Any, rtype: str | None, rid: str | None) -> str | None:
        """The patient a rest-hook notification is about: from the resource it carries (parsed by
        labinterp.fhir.notifications), or by reading the resource the path names. None when it is about no
        patient (or the resource is gone); BundleError (422) naming the element when the notification is of the
        wrong shape; NotificationMismatch (400) when the path names another resource than the one carried (the
        path's id is used only when it agrees with the payload: a /hook/Patient/a carrying Patient b's result
        enqueues nobody). A read-back that fails on a temporary error raises it (the hook answers 503, so the FHIR
        server sends the notification again)."""
        if rtype is not None and rid is not None:
            check_path(rtype, rid)
        resource = carried_resource(body)
        if resource is not None and rtype and rid:
            carried_type, carried_id = resource.get("resourceType"), resource.get("id")
            if carried_type != rtype or (carried_id is not None and carried_id != rid):
                raise NotificationMismatch("request path", "names another resource than the notification carries")
        if resource is None and rtype and rid:
            try:
                resource = self.client(READ_BACK).read(rtype, rid)
            except FhirError as exc:
                if is_temporary(exc) or isinstance(exc, FhirAuthError):
                    raise  # the FHIR server should send it again: 503 (temporary) or 502 (labinterp's credentials)
                return None  # gone (404/410) or not readable (another 4xx): retrying cannot mend it
            if not isinstance(resource, dict) or resource.get("resourceType") != rtype:
                return None
        pid = patient_of(resource) if isinstance(resource, dict) else None
        if pid is not None and rtype == "Patient" and rid is not None and pid != rid:
            raise NotificationMismatch("request path", "names another patient than the notification carries")
        return pid

    def readiness_problems(self) -> list[str]:
        """Empty when ready; cached for 5 s so probes do not hammer the FHIR server."""
        with self._lock:
            stamp, problems = self._ready_cache
            if time.monotonic() - stamp < 5.0:
                return problems
            problems = []
            try:
                self.client().metadata()
            except LabinterpError as exc:  # /readyz answers anyone: the kind of failure, never the internal URL
                status = getattr(exc, "status", None)
                problems.append(f"FHIR server not reachable ({type(exc).__name__}{f', HTTP {status}' if status else ''})")
                log.warning("readiness: %s", self.redact(str(exc)))
            if not self.knowledge.analytes:
                problems.append("mappings not loaded")
            self._ready_cache = (time.monotonic(), problems)
            return problems

    def redact(self, text: str) -> str:
        """`text` without credentials: URLs as errors show them (queue.redacted), and this service's own tokens and
        password removed wherever they appear."""
        text = redacted(text)
        held = getattr(self.fhir_auth, "secrets", None)
        secrets = [self.api_token, *(held() if callable(held) else [])]
        for secret in sorted((s for s in secrets if s and len(s) >= 4), key=len, reverse=True):
            text = text.replace(secret, "…")
        return text
