"""Operations: Prometheus metrics at `GET /metrics`, and structured logs carrying a correlation id.

`register(app, settings, services)` (called by create_app) adds both to an app.

**Metrics** (Prometheus text exposition format, each app with its own CollectorRegistry; `GET /metrics` takes the
API token like the rest of the API when one is set). No label ever holds a patient id, a concrete request path or
anything read from the FHIR server that is not on a fixed list:

- `labinterp_http_requests_total{route, method, status}` (counter): HTTP requests answered, by route *template*
  (`/Patient/<pid>/$interpret`, never the path with its id; `(unmatched)` for a path no route matches), method
  (GET, POST, ... or `other`) and status code.
- `labinterp_http_request_duration_seconds{route, method}` (histogram): time to answer, by route template.
- `labinterp_interpretations_total{outcome}` (counter): patients interpreted (API calls and queued jobs alike):
  `written` (a transaction was sent), `unchanged` (nothing to write), `dry_run`, or `failed`.
- `labinterp_interpretation_errors_total{error}` (counter): failed interpretations by error class (`FhirTemporaryError`, ...).
- `labinterp_interpretation_duration_seconds` (histogram): time to read, interpret and write one patient.
- `labinterp_fhir_requests_per_interpretation` (histogram): HTTP round trips to the FHIR server per interpretation,
  retries included (normally 2: one batch read, one transaction; more with paging, retries or a re-plan).
- `labinterp_fhir_requests_total`, `labinterp_fhir_retries_total` (counters): the same round trips and the
  retries among them, summed over interpretations (from the FHIR client's ClientStats).
- `labinterp_fhir_wait_seconds` (histogram): time per interpretation spent waiting on the FHIR server.
- `labinterp_reports_written_total{kind, interpretation}` (counter): resources written to the record (created or
  amended; not in a dry run, not the unchanged ones), by kind (`linezolid`, `magnesium`, `renal`, `genotype`,
  `exposure-risk`, `arrhythmia-risk`, `egfr`, ...) and interpretation code (`<`, `L`, `N`, `H`, `>`, `LL`, `HH`:
  the codes of mappings/output.toml's [interpretations]; `none` for a resource without one).
- `labinterp_problems_left_out_total{resource_type}` (counter): resources left out of an interpretation (dry runs
  included) by the type of the resource (Observation, Patient, MedicationRequest, ...; `other`).
- `labinterp_jobs_total{outcome}` (counter): queued jobs finished by the worker: `done`, `retry` (backoff after a
  temporary error), `failed`, `released` (handed back at shutdown).
- `labinterp_queue_jobs{state}` (gauge, read from the queue at scrape time): jobs by state (pending, running, done,
  failed).
- `labinterp_queue_oldest_pending_age_seconds` (gauge, at scrape time): age of the oldest pending job (0 when none).

**Logs.** `configure_logging(json=True)` sends every log record to standard error as one JSON object per line
(python-json-logger: time, level, logger, message, request_id, and any `extra` fields); `json=False` as text. Every
request gets a correlation id: the caller's `X-Request-ID` when it is 8 to 64 letters, digits and dashes, otherwise
a new one; it is echoed as the response's `X-Request-ID`, put into every log record emitted while handling the
request (CorrelationFilter, from a context variable), stored with the jobs the request enqueues, and used by the
worker for its logs of that job. Each request is logged once (`request done`, with route template, method, status
and duration): never the concrete path, its query, a patient id or a token."""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import IO, TYPE_CHECKING, Any

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from labinterp.server.backend import Queue
    from labinterp.server.services import Interpretation, Services

log = logging.getLogger("labinterp.http")

HEADER = "X-Request-ID"
SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9-]{8,64}")
REQUEST_ID: ContextVar[str | None] = ContextVar("labinterp_request_id", default=None)

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
READ_TYPES = frozenset(
    {
        "Bundle",
        "Group",
        "Patient",
        "Observation",
        "Medication",
        "MedicationRequest",
        "MedicationStatement",
        "MedicationAdministration",
    }
)
_KIND = re.compile(r"[a-z][a-z0-9-]{0,31}")
_RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]+")
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
ROUND_TRIP_BUCKETS = (1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50)


# --- correlation id ---------------------------------------------------------------------------------


def new_request_id() -> str:
    return uuid.uuid4().hex


def current_request_id() -> str | None:
    """The correlation id of the request (or job) being handled in this context; None outside one."""
    return REQUEST_ID.get()


def accepted_request_id(given: str | None) -> str:
    """The caller's X-Request-ID when it is safe to log and echo (8-64 letters, digits, dashes), else a new id."""
    return given if given and SAFE_REQUEST_ID.fullmatch(given) else new_request_id()


@contextmanager
def correlation(request_id: str | None = None) -> Iterator[str]:
    """Within the block, log records carry `request_id` (a new one when none is given or it is not safe)."""
    rid = accepted_request_id(request_id)
    token = REQUEST_ID.set(rid)
    try:
        yield rid
    finally:
        REQUEST_ID.reset(token)


class CorrelationFilter(logging.Filter):
    """Puts the current correlation id in each record as `request_id` ("-" outside a request or job)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get() or "-"
        return True


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of the record (as logging's last resort does)."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> IO[str]:
        return sys.stderr


def configure_logging(json: bool, *, level: int | str = logging.INFO, stream: IO[str] | None = None) -> logging.Handler:
    """One handler on the root logger (replacing the one an earlier call installed) writing JSON lines (`json`) or
    text, each record with its correlation id; labinterp's loggers at `level`. Returns the handler."""
    from pythonjsonlogger.json import JsonFormatter

    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_labinterp", False)]:
        root.removeHandler(old)
    handler: logging.Handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler._labinterp = True  # type: ignore[attr-defined]
    handler.addFilter(CorrelationFilter())
    if json:
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"))
    root.addHandler(handler)
    logging.getLogger("labinterp").setLevel(level)
    return handler


# --- metrics ----------------------------------------------------------------------------------------


class QueueCollector(Collector):
    """The queue's depth by state and the age of its oldest pending job, read at scrape time."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue

    def collect(self) -> Iterable[Metric]:
        try:
            counts = self.queue.counts()
            age = self.queue.oldest_pending_age()
        except Exception as exc:  # a queue that cannot be read must not fail the scrape
            log.warning("metrics: the queue could not be read (%s)", type(exc).__name__)
            return []
        jobs = GaugeMetricFamily("labinterp_queue_jobs", "Jobs in the work queue by state", labels=["state"])
        for state, n in counts.items():
            jobs.add_metric([state], n)
        oldest = GaugeMetricFamily(
            "labinterp_queue_oldest_pending_age_seconds", "Seconds since the oldest pending job was enqueued (0: none)"
        )
        oldest.add_metric([], age or 0.0)
        return [jobs, oldest]

    def describe(self) -> Iterable[Metric]:
        return []  # collected at scrape time only, never at registration (no query of the queue then)


class Metrics:
    """The app's metrics, in a registry of its own (apps in one process, e.g. tests, do not collide)."""

    def __init__(self, services: Services | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Counter(
            "labinterp_http_requests",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.http_latency = Histogram(
            "labinterp_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.interpretations = Counter("labinterp_interpretations", "Patients interpreted by outcome", ["outcome"], registry=r)
        self.interpretation_errors = Counter(
            "labinterp_interpretation_errors", "Failed interpretations by error class", ["error"], registry=r
        )
        self.interpretation_seconds = Histogram(
            "labinterp_interpretation_duration_seconds", "Time to interpret one patient", buckets=LATENCY_BUCKETS, registry=r
        )
        self.fhir_per_interpretation = Histogram(
            "labinterp_fhir_requests_per_interpretation",
            "HTTP round trips to the FHIR server per interpretation, retries included",
            buckets=ROUND_TRIP_BUCKETS,
            registry=r,
        )
        self.fhir_requests = Counter(
            "labinterp_fhir_requests", "HTTP round trips to the FHIR server (interpretations)", registry=r
        )
        self.fhir_retries = Counter("labinterp_fhir_retries", "Retries among the round trips to the FHIR server", registry=r)
        self.fhir_wait = Histogram(
            "labinterp_fhir_wait_seconds",
            "Time per interpretation spent waiting on the FHIR server",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.reports = Counter(
            "labinterp_reports_written",
            "Resources written to the record by kind and interpretation code",
            ["kind", "interpretation"],
            registry=r,
        )
        self.problems = Counter(
            "labinterp_problems_left_out",
            "Resources left out of an interpretation by resource type",
            ["resource_type"],
            registry=r,
        )
        self.jobs = Counter("labinterp_jobs", "Queued jobs finished by the worker, by outcome", ["outcome"], registry=r)
        self.services = services
        if services is not None:
            r.register(QueueCollector(services.queue))
            systems = services.knowledge.output.systems
            self.interpretation_system = systems.get("interpretation")
            self.series_system = systems.get("series_identifier")
            self.codes = frozenset(services.knowledge.output.interpretations)
        else:
            self.interpretation_system = self.series_system = None
            self.codes = frozenset()

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        method = method if method in METHODS else "other"
        self.http_requests.labels(route, method, str(status)).inc()
        self.http_latency.labels(route, method).observe(seconds)

    def job(self, outcome: str) -> None:
        self.jobs.labels(outcome).inc()

    def interpreted(self, event: Interpretation) -> None:
        """One interpretation's FHIR round trips, outcome, reports written and problems left out."""
        self.fhir_per_interpretation.observe(event.requests)
        self.fhir_requests.inc(event.requests)
        self.fhir_retries.inc(event.retries)
        self.fhir_wait.observe(event.seconds_waiting)
        self.interpretation_seconds.observe(event.seconds)
        result = event.result
        if result is None:
            self.interpretations.labels("failed").inc()
            self.interpretation_errors.labels(type(event.error).__name__ if event.error else "unknown").inc()
            return
        for p in result.problems:
            m = _RESOURCE_TYPE.match(p.where)
            self.problems.labels(m.group(0) if m and m.group(0) in READ_TYPES else "other").inc()
        if event.dry_run:
            self.interpretations.labels("dry_run").inc()
        elif result.response is None:
            self.interpretations.labels("unchanged").inc()
        else:
            self.interpretations.labels("written").inc()
            for kind, code in self.written(result.plan.bundle):
                self.reports.labels(kind, code).inc()

    def written(self, bundle: dict[str, Any]) -> list[tuple[str, str]]:
        """(kind, interpretation code) of each report a transaction writes (not the Device nor the Provenance)."""
        out = []
        for entry in bundle.get("entry") or []:
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(resource, dict) or resource.get("resourceType") in ("Device", "Provenance"):
                continue
            series = next(
                (
                    i.get("value")
                    for i in resource.get("identifier") or []
                    if isinstance(i, dict) and i.get("system") == self.series_system
                ),
                None,
            )
            kind = series.split(":", 1)[0] if isinstance(series, str) else ""
            kind = kind if _KIND.fullmatch(kind) else "other"
            concepts = resource.get("conclusionCode") or resource.get("interpretation") or []
            codes = [
                c.get("code")
                for concept in concepts
                if isinstance(concept, dict)
                for c in concept.get("coding") or []
                if isinstance(c, dict) and c.get("system") == self.interpretation_system
            ]
            code = codes[0] if codes else "none"
            out.append((kind, code if code in self.codes or code == "none" else "other"))
        return out

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


# --- the app ----------------------------------------------------------------------------------------


def register(app: Flask, settings: Any, services: Services) -> Metrics:
    """Metrics (GET /metrics), the correlation id of each request, the request log line, and, when the settings
    have a `log_format` of "json", JSON logs. The metrics are in app.extensions["labinterp.metrics"]."""
    metrics = Metrics(services)
    app.extensions["labinterp.metrics"] = metrics
    services.observers.append(metrics.interpreted)
    if getattr(settings, "log_format", None) == "json":
        configure_logging(json=True)

    def begin() -> None:
        g.labinterp_started = time.perf_counter()
        rid = accepted_request_id(request.headers.get(HEADER))
        g.labinterp_request_id = rid
        g.labinterp_request_token = REQUEST_ID.set(rid)

    def finish(response: Response) -> Response:
        started = g.get("labinterp_started")
        seconds = time.perf_counter() - started if started is not None else 0.0
        route = request.url_rule.rule if request.url_rule is not None else "(unmatched)"
        metrics.request(route, request.method, response.status_code, seconds)
        rid = g.get("labinterp_request_id")
        if rid:
            response.headers[HEADER] = rid
        log.info(
            "request done: %s %s %d",
            request.method if request.method in METHODS else "other",
            route,
            response.status_code,
            extra={"route": route, "status": response.status_code, "duration_ms": round(seconds * 1000, 1)},
        )
        return response

    def end(_exc: BaseException | None) -> None:
        token = g.pop("labinterp_request_token", None)
        if token is not None:
            try:
                REQUEST_ID.reset(token)
            except ValueError:  # set in another context (cannot happen in Flask's request cycle): clear it
                REQUEST_ID.set(None)

    # first of all before-request functions: the API token check's 401 is counted and carries the id too
    app.before_request_funcs.setdefault(None, []).insert(0, begin)
    app.after_request(finish)
    app.teardown_request(end)

    def metrics_view() -> Response:
        return Response(metrics.exposition(), content_type=CONTENT_TYPE_LATEST)

    app.add_url_rule("/metrics", "metrics", metrics_view, methods=["GET"])
    return metrics
