"""Reports generated automatically: the worker that drains the queue, the R4 rest-hook Subscription that
feeds it, and the reconciliation poll that catches what notifications missed (HAPI's rest-hook gives
up after about a minute).

**Outages.** A temporary error (the error tree's `is_temporary`: a FHIR server's 408/429/5xx, no answer, a
version conflict, an OS-level failure) is retried with a capped exponential backoff (2 s doubling to 5 min) for
as long as it takes: an outage of any length loses no queued work. Any other error fails the job at once. A
caller that caps the attempts (`Worker(attempts=N)`) gets jobs that fail on a temporary error marked
`retryable`; they are requeued, and jobs waiting in backoff made due, as soon as the FHIR server answers again:
the poll does it after each successful search, the worker (given a `ready` check) when idle.

**The Subscription's token.** The Subscription's `channel.header` carries the hook's own token
(LABINTERP_HOOK_TOKEN), never the API token: anyone who can read Subscriptions on the FHIR server reads that
header. With an API token but no hook token the hook is closed, and no Subscription is registered.

**What the poll sees.** The poll searches Observations changed since its watermark *with the Subscription's
codes* (`subscription_codes`: the site's linezolid codes, magnesium, creatinine, urine magnesium and creatinine,
linezolid MIC, the genotype and variant codes), so it watches what the Subscription watches and no more. It
does not see: an Observation known only by its name (a linezolid result without a code the mappings know, which
extraction still matches by name and unit), nor a change of a result that only accompanies an interpretation
(weight, potassium, calcium, eGFR) or of a medication. Those are caught at the patient's next interpretation,
which reads *all* of the patient's Observations and medications whatever their codes: the next coded result's
notification or poll, a `POST /Patient/{id}/$interpret`, or a Group run. A site whose laboratory sends linezolid
without a known code adds its code to a mappings overlay (mappings/README.md); the Subscription and the poll then
both see it.

**Stopping.** `Worker.request_stop()` stops claiming (safe in a signal handler: it only sets an event);
`Worker.stop(grace)` then waits for the running jobs to finish until `grace` seconds after the stop was requested,
and hands back (`JobQueue.release`: pending again, due now, the attempt not counted) any job still running, so no
job waits for its lease to expire; whatever such a job's thread does afterwards is not recorded. `chain_sigterm`
makes a SIGTERM (gunicorn's to its worker) request the stop at once, before the process drains its requests.

Logs carry job ids, counts and error classes, never patient ids; a job's logs carry its correlation id (that of
the request or poll that enqueued it)."""

from __future__ import annotations

import logging
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from labinterp.errors import InputError, LabinterpError, is_temporary
from labinterp.fhir.client import FhirClient
from labinterp.fhir.retry import RetryPolicy
from labinterp.fhir.search import is_fhir_id
from labinterp.knowledge import Knowledge
from labinterp.server.backend import Queue
from labinterp.server.observability import correlation, new_request_id
from labinterp.server.queue import Job
from labinterp.server.runs import parse_key

log = logging.getLogger("labinterp.worker")
SUBSCRIPTION_ID = "labinterp-observations"
POLL_KEY = "poll.last_updated"
MAX_BACKOFF = 300.0  # seconds: the longest wait between two tries of a job during an outage
BACKOFF_STEPS = 30  # attempt numbers beyond this wait as long as this one (2 ** attempt would overflow)
SHUTDOWN_GRACE = 15.0  # seconds running jobs get to finish once a stop is requested (below gunicorn's graceful_timeout 20)


class Worker:
    """Threads that claim jobs and run `process(patient_id)` (a population run's listing and chunk jobs: `jobs(job)`).
    An error the error tree calls temporary is retried with a capped exponential backoff, without limit unless `attempts` caps the tries (then the job fails as
    `retryable`); any other error fails the job at once (retrying cannot mend it). A job whose patient had
    resources left out succeeds: `process` returns their warning lines, recorded with the finished job.

    `ready`: whether the FHIR server answers (e.g. Services.readiness_problems() is empty); when given, an idle
    worker checks it every `recheck_seconds` while jobs wait on a temporary error, and requeues them once it holds.
    `observe`: told each job's outcome (done, retry, failed, released), for the metrics."""

    def __init__(
        self,
        queue: Queue,
        process: Callable[[str], Any],
        *,
        jobs: Callable[[Job], Any] | None = None,
        threads: int = 2,
        attempts: int | None = None,
        backoff: RetryPolicy | None = None,
        idle_seconds: float = 0.5,
        ready: Callable[[], bool] | None = None,
        recheck_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        observe: Callable[[str], None] | None = None,
    ) -> None:
        self.queue, self.process, self.threads, self.attempts = queue, process, threads, attempts
        self.jobs = jobs  # a population run's listing and chunk jobs (keys that are no patient id)
        self.observe = observe
        self.backoff = backoff or RetryPolicy(base_delay=2.0, max_delay=MAX_BACKOFF)
        self.idle_seconds = idle_seconds
        self.ready, self.recheck_seconds, self.clock = ready, recheck_seconds, clock
        self._checked_at = float("-inf")
        self._stop = threading.Event()
        self._stop_requested: float | None = None  # time.monotonic() of the first stop request
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()  # orders a job's recorded outcome against its release at shutdown
        self._running: dict[int, Job] = {}  # job id -> job, while a thread works on it
        self._released: set[int] = set()  # jobs handed back at shutdown: their outcome is not recorded

    def run_one(self) -> bool:
        """Process one due job; False when there was none. The job's logs carry its correlation id."""
        job = self.queue.claim()
        if job is None:
            return False
        with correlation(job.correlation or new_request_id()):
            if self._stop.is_set() and self._threads:  # claimed while stopping: handed back untouched
                self.queue.release(job)
                self._note("released")
                return True
            with self._lock:
                self._running[job.id] = job
            try:
                self._run(job)
            finally:
                with self._lock:
                    self._running.pop(job.id, None)
                    self._released.discard(job.id)
        return True

    def _call(self, job: Job) -> Any:
        if parse_key(job.patient).kind == "patient":
            return self.process(job.patient)
        if self.jobs is None:
            raise RuntimeError("this worker runs no population jobs")
        return self.jobs(job)

    def _run(self, job: Job) -> None:
        try:
            result = self._call(job)
        except InputError as exc:
            with self._recording(job) as record:
                if record:
                    log.warning("job %d failed for good: %s", job.id, type(exc).__name__)
                    self.queue.fail(job, str(exc))
                    self._note("failed")
        except (LabinterpError, OSError) as exc:
            with self._recording(job) as record:
                if record:
                    self._retry_or_fail(job, exc)
        except Exception as exc:  # a bug must not kill the worker thread; the job records it
            # the exception's text can quote any value (a name, an identifier): logged and recorded by class only
            log.error(
                "job %d: unexpected error %s\n%s", job.id, type(exc).__name__, "".join(traceback.format_tb(exc.__traceback__))
            )
            with self._recording(job) as record:
                if record:
                    self._retry_or_fail(job, exc)
        else:
            warnings = [str(w) for w in result] if isinstance(result, list) else []
            with self._recording(job) as record:
                if record:
                    if warnings:
                        log.info("job %d done, %d resources left out (see GET /queue)", job.id, len(warnings))
                    self.queue.done(job, warnings)
                    self._note("done")

    @contextmanager
    def _recording(self, job: Job) -> Iterator[bool]:
        """Whether the job's outcome is to be recorded (not when it was handed back at shutdown meanwhile); the
        outcome is recorded inside the block, which a release waits for."""
        with self._lock:
            if job.id in self._released:
                log.info("job %d finished after it was handed back at shutdown: its outcome is left to its next run", job.id)
                yield False
            else:
                yield True

    def _note(self, outcome: str) -> None:
        if self.observe is not None:
            try:
                self.observe(outcome)
            except Exception as exc:  # counting must never fail a job
                log.warning("job observer failed: %s", type(exc).__name__)

    def _retry_or_fail(self, job: Job, exc: BaseException) -> None:
        why = (
            f"{type(exc).__name__}: {exc}" if isinstance(exc, LabinterpError | OSError) else f"{type(exc).__name__} (unexpected)"
        )
        if not is_temporary(exc):  # the error tree says, nothing else
            log.warning("job %d failed: %s", job.id, type(exc).__name__)
            self.queue.fail(job, why)
            self._note("failed")
        elif self.attempts is not None and job.attempts >= self.attempts:
            log.warning(
                "job %d failed after %d attempts: %s (requeued when the server answers)", job.id, job.attempts, type(exc).__name__
            )
            self.queue.fail(job, why, retryable=True)
            self._note("failed")
        else:
            delay = self.backoff.delay(min(job.attempts, BACKOFF_STEPS))
            log.info("job %d: %s, retry in %.0f s", job.id, type(exc).__name__, delay)
            self.queue.retry(job, why, delay)
            self._note("retry")

    def recover(self) -> int:
        """When jobs wait on a temporary error and `ready` says the FHIR server answers (checked at most every
        `recheck_seconds`): those that failed are requeued and those in backoff made due. How many were requeued."""
        if self.ready is None or self.clock() - self._checked_at < self.recheck_seconds:
            return 0
        self._checked_at = self.clock()
        if not self.queue.has_retryable():
            return 0  # nothing waits: no request to the FHIR server
        try:
            ready = self.ready()
        except Exception:  # a readiness check that fails is "not ready"
            ready = False
        if not ready:
            return 0
        requeued = self.queue.requeue_retryable()
        woken = self.queue.wake_retrying()
        if requeued or woken:
            log.info("FHIR server answers again: %d failed jobs requeued, %d jobs in backoff due now", requeued, woken)
        return requeued

    def drain(self, timeout: float = 60.0) -> None:
        """Process until no job is due (tests and one-shot runs)."""
        deadline = datetime.now(UTC) + timedelta(seconds=timeout)
        while datetime.now(UTC) < deadline and self.run_one():
            pass

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                worked = self.run_one()
                if not worked:
                    self.recover()
            except Exception:  # the queue itself failed (disk, lock): wait and try again
                log.exception("worker loop")
                worked = False
            if not worked:
                self._stop.wait(self.idle_seconds)

    def renew_leases(self) -> None:
        """Renew the queue lease of every job a thread of this worker is on."""
        with self._lock:
            ids = list(self._running)
        self.queue.renew(ids)

    def _heartbeat(self) -> None:
        every = max(0.5, self.queue.lease_seconds / 3)
        while not self._stop.wait(every):
            try:
                self.renew_leases()
            except Exception as exc:  # the queue cannot be written now: the next beat tries again
                log.warning("leases not renewed (%s)", type(exc).__name__)

    def start(self) -> None:
        for i in range(self.threads):
            t = threading.Thread(target=self._loop, name=f"labinterp-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        threading.Thread(target=self._heartbeat, name="labinterp-worker-lease", daemon=True).start()

    def request_stop(self) -> None:
        """No job is claimed from now on; running jobs go on (`stop` waits for them). Safe in a signal handler."""
        if self._stop_requested is None:
            self._stop_requested = time.monotonic()
        self._stop.set()

    def stop(self, grace: float = SHUTDOWN_GRACE) -> int:
        """Stop claiming, let running jobs finish until `grace` seconds after the stop was first requested, then
        hand back (release) the jobs still running, so another worker claims them at once. How many were handed back."""
        self.request_stop()
        deadline = (self._stop_requested or time.monotonic()) + grace
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        released = 0
        with self._lock:
            for job in list(self._running.values()):
                if job.id in self._released:
                    continue
                try:
                    handed_back = self.queue.release(job)
                except Exception as exc:  # the queue cannot be written: the job's lease expires as before
                    log.warning("job %d could not be handed back at shutdown (%s)", job.id, type(exc).__name__)
                    continue
                self._released.add(job.id)
                if handed_back:
                    released += 1
                    self._note("released")
                    log.info("job %d still running after %.0f s: handed back to the queue", job.id, grace)
        try:
            self.queue.worker_stopped()
        except Exception as exc:  # its registration then expires with its heartbeat
            log.warning("worker not unregistered from the queue (%s)", type(exc).__name__)
        return released


def chain_sigterm(action: Callable[[], None]) -> bool:
    """Run `action` when SIGTERM arrives, before the handler already installed (gunicorn's worker's: it then drains
    its requests and exits, running atexit's stop). Only in the main thread and only over a Python handler: with the
    default action (tests, a plain process) nothing is installed. Whether it was installed."""
    if threading.current_thread() is not threading.main_thread():
        return False
    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous):
        return False

    def handler(signum: int, frame: Any) -> None:
        try:
            action()
        except Exception as exc:
            log.warning("stop on SIGTERM failed: %s", type(exc).__name__)
        previous(signum, frame)

    signal.signal(signal.SIGTERM, handler)
    return True


def subscription_codes(k: Knowledge) -> list[str]:
    """system|code of every Observation that should trigger a report: linezolid (site codes), magnesium,
    creatinine and genotypes (IG codes and site genotype codes). The Subscription's criteria and the poll's filter."""
    analytes = {"linezolid", "magnesium", "creatinine", "linezolid_mic", "urine_magnesium", "urine_creatinine"}
    codes = [f"{c.system}|{c.code}" for c in k.analyte_codes if c.analyte in analytes]
    loinc = k.output.systems["loinc"]
    codes += [f"{loinc}|{k.genomics.codes['genotype']}", f"{loinc}|{k.genomics.codes['variant']}"]
    codes += [f"{g.system}|{g.code}" for g in k.genotype_codes]
    return list(dict.fromkeys(codes))


def subscription(k: Knowledge, endpoint: str, hook_token: str | None) -> dict[str, Any]:
    """labinterp's Subscription. `hook_token`: the hook's own token (LABINTERP_HOOK_TOKEN), sent by the FHIR server
    in `channel.header`; never the API token, which anyone who can read Subscriptions would then hold."""
    channel: dict[str, Any] = {"type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json"}
    if hook_token:
        channel["header"] = [f"Authorization: Bearer {hook_token}"]
    return {
        "resourceType": "Subscription",
        "id": SUBSCRIPTION_ID,
        "status": "requested",
        "reason": "labinterp: interpret new or changed linezolid, magnesium, creatinine and genotype results",
        "criteria": "Observation?code=" + ",".join(subscription_codes(k)),
        "channel": channel,
    }


def register_subscription(
    client: FhirClient, k: Knowledge, endpoint: str, api_token: str | None = None, *, hook_token: str | None = None
) -> dict[str, Any] | None:
    """Create or update labinterp's Subscription (PUT at a fixed id: registering twice changes nothing), its
    notifications authenticated with `hook_token`. `api_token` is only looked at, never sent: with an API token
    but no hook token the hook refuses every notification, so nothing is registered (a warning names the
    setting) and the poll alone finds new results; with neither (a local sandbox) it registers without a header."""
    if not hook_token and api_token:
        log.warning(
            "Subscription not registered: LABINTERP_API_TOKEN is set and no hook token (LABINTERP_HOOK_TOKEN) was given, "
            "so /hook refuses notifications and the poll alone finds new results; set LABINTERP_HOOK_TOKEN (a token of "
            "its own, never the API token)"
        )
        return None
    return client.update(subscription(k, endpoint, hook_token))


def _last_updated(obs: dict[str, Any]) -> str | None:
    meta = obs.get("meta")
    stamp = meta.get("lastUpdated") if isinstance(meta, dict) else None
    return stamp if isinstance(stamp, str) else None


def _patient_of(obs: dict[str, Any], series: str) -> str | None:
    """The patient a changed Observation belongs to; None for labinterp's own derived eGFR or an odd reference."""
    identifiers = obs.get("identifier")
    if isinstance(identifiers, list) and any(isinstance(i, dict) and i.get("system") == series for i in identifiers):
        return None
    subject = obs.get("subject")
    ref = subject.get("reference") if isinstance(subject, dict) else None
    if isinstance(ref, str) and ref.startswith("Patient/") and is_fhir_id(ref.split("/", 1)[1]):
        return ref.split("/", 1)[1]
    return None


class Poller:
    """Every `interval` seconds: Observations with the Subscription's codes changed since the last poll → their
    patients enqueued. The watermark is the server's own lastUpdated (no clock skew) and is stored in the queue's
    database. A successful search shows the FHIR server answers: jobs that failed on a temporary error are requeued,
    and after a failed poll, jobs waiting in backoff are made due."""

    def __init__(
        self,
        client_factory: Callable[[], FhirClient],
        queue: Queue,
        k: Knowledge,
        *,
        interval: float = 30.0,
        lookback: timedelta = timedelta(days=1),
        max_pages: int = 50,
    ) -> None:
        self.client_factory, self.queue, self.k, self.interval, self.lookback = client_factory, queue, k, interval, lookback
        self.max_pages = max_pages
        self.server_down = False  # the last poll failed on a temporary error
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def search(self, since: str) -> list[tuple[str, str]]:
        """The poll's search of Observations: the Subscription's codes, changed since `since`, oldest first."""
        return [
            ("code", ",".join(subscription_codes(self.k))),
            ("_lastUpdated", f"ge{since}"),
            ("_count", "500"),
            ("_elements", "subject,identifier"),
            ("_sort", "_lastUpdated"),
        ]

    def poll_once(self) -> int:
        """One poll: page by page (sorted by lastUpdated), each page's patients enqueued and the watermark saved
        before the next page is read, so a poll interrupted anywhere resumes where it stopped and a backlog of any
        size is worked through over successive polls (at most `max_pages` per poll); it never fails for size."""
        since = self.queue.get_meta(POLL_KEY) or (datetime.now(UTC) - self.lookback).strftime("%Y-%m-%dT%H:%M:%SZ")
        client = self.client_factory()
        series = self.k.output.systems["series_identifier"]
        enqueued = 0
        newest = since
        try:
            for number, page in enumerate(client.search_pages("Observation", self.search(since)), start=1):
                if number == 1:
                    self._server_answers()
                patients: set[str] = set()
                for obs in page:
                    stamp = _last_updated(obs)
                    if stamp is not None and stamp > newest:
                        newest = stamp
                    pid = _patient_of(obs, series)
                    if pid is not None:
                        patients.add(pid)
                for pid in sorted(patients):
                    self.queue.enqueue(pid, "poll")
                enqueued += len(patients)
                self.queue.set_meta(POLL_KEY, newest)
                if number >= self.max_pages:
                    log.info("poll: %d pages read, the rest at the next poll", number)
                    break
        except LabinterpError as exc:
            self.server_down = self.server_down or is_temporary(exc)
            raise
        if enqueued:
            log.info("poll: %d patients enqueued", enqueued)
        return enqueued

    def _server_answers(self) -> None:
        requeued = self.queue.requeue_retryable()
        woken = self.queue.wake_retrying() if self.server_down else 0
        self.server_down = False
        if requeued or woken:
            log.info("FHIR server answers: %d failed jobs requeued, %d jobs in backoff due now", requeued, woken)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            with correlation():  # one id per poll: its logs and the jobs it enqueues carry it
                try:
                    self.poll_once()
                except LabinterpError as exc:
                    log.warning("poll failed: %s", type(exc).__name__)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="labinterp-poller", daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        """No poll is started from now on (safe in a signal handler)."""
        self._stop.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)
