"""The Flask service: `create_app(test_config=None)`.

Configuration: the one settings object of labinterp.config (the environment, LABINTERP_*, then `test_config`
with the same names without the prefix): FHIR_BASE_URL, FHIR_TOKEN, FHIR_BASIC ("user:password"), API_TOKEN
(bearer token required on the service's own endpoints), MAPPINGS_DIR, WORKDIR, QUEUE_PATH, QUEUE_URL (PostgreSQL queue), WORKER (start the
queue worker and poller), WORKER_THREADS, POLL_SECONDS (0: no poll), CALLBACK_URL (this service's URL as HAPI
reaches it: registers the Subscription), EGFR_EQUATION, STRICT, LENIENT (deprecated), FHIR_RETRIES,
FHIR_RETRY_DELAY, QUEUE_LEASE, COHORT_STATS, RENDER, VALIDATE_OUTPUT, HOOK_TOKEN (the Subscription's own token;
never the API token), HOOK_MAX_BYTES, HOOK_PER_MINUTE, MAX_REQUEST_BYTES, MAX_PATIENTS, SMART_* (SMART Backend Services to the FHIR server), CDS_AUTH,
CDS_ISSUERS, CDS_FHIR_SERVERS, PUBLIC_URL (CDS Hooks). An unknown key or a bad value is an error naming it."""

from __future__ import annotations

import atexit
import logging
import threading
from typing import Any

from flask import Flask

from labinterp.config import Settings
from labinterp.errors import LabinterpError
from labinterp.fhir.retry import RetryPolicy
from labinterp.knowledge import load_knowledge
from labinterp.server import cds, observability, security
from labinterp.server.api.routes import bp, register_errors
from labinterp.server.backend import open_queue
from labinterp.server.dashboard import dashboard
from labinterp.server.services import Services
from labinterp.server.worker import SHUTDOWN_GRACE, Poller, Worker, chain_sigterm, register_subscription

log = logging.getLogger("labinterp.app")

LOCAL_SANDBOX = "http://127.0.0.1:8090/fhir"  # the FHIR server when none is configured: `labinterp sandbox up`


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """The service, configured by the one settings object (labinterp.config.Settings): the environment
    (LABINTERP_*), then `test_config` (the same names without the prefix). Bad values stop it with an
    InputError naming the variable, as the CLI does."""
    settings = Settings.load(test_config)
    app = Flask("labinterp")
    app.config.from_mapping({k.upper(): v for k, v in settings.model_dump().items()})
    # no request body is read past this (413); the hook's own limit is checked on its route
    app.config["MAX_CONTENT_LENGTH"] = max(settings.max_request_bytes, settings.hook_max_bytes)
    app.extensions["labinterp.settings"] = settings
    services = build_services(settings)
    app.extensions["labinterp"] = services
    app.register_blueprint(bp)
    app.register_blueprint(dashboard)
    cds.register(app, settings, services)
    security.register(app, settings)
    register_errors(app)
    observability.register(app, settings, services)  # GET /metrics, correlation ids, request log lines
    if settings.worker:
        start_background(app, services)
    return app


def build_services(settings: Settings) -> Services:
    """Knowledge, the FHIR connection and the queue (SQLite, or PostgreSQL with LABINTERP_QUEUE_URL), as the service
    and `labinterp worker` use them."""
    knowledge = load_knowledge(settings.mappings_dir)
    queue = open_queue(settings)
    base = (settings.fhir_base_url or LOCAL_SANDBOX).rstrip("/")
    return Services(
        knowledge,
        base,
        queue,
        api_token=settings.api_token,
        fhir_auth=settings.fhir_auth(base),  # built once: a SMART token is cached in it and shared by every client
        strict=settings.strict_mode,
        equation=settings.equation,
        retry=RetryPolicy(attempts=settings.fhir_retries, base_delay=settings.fhir_retry_delay),
        render=settings.render,
        chunk_size=settings.population_chunk,
        transaction_size=settings.population_transaction,
        write_mode=settings.write_mode,
        validate=settings.validate_output,
    )


def start_background(app: Flask, services: Services, *, grace: float = SHUTDOWN_GRACE) -> None:
    """The queue worker, the reconciliation poll and the Subscription, for a service that writes reports
    on its own. A failure to register the Subscription is logged, not fatal: the poll still runs.

    Stopping (app.extensions["labinterp.stop"], run at exit): the worker stops claiming, running jobs get until
    `grace` seconds after the stop began to finish, those still running are handed back to the queue (claimed at
    once by the next worker, not after their lease), and the poll stops. Under gunicorn the stop begins on the
    worker's SIGTERM (chained to gunicorn's handler), while gunicorn drains its requests; `grace` stays below
    gunicorn's graceful_timeout (20 s), after which it kills the worker."""
    settings: Settings = app.extensions["labinterp.settings"]
    metrics = app.extensions.get("labinterp.metrics")
    # ready: after an outage, jobs waiting in backoff are made due and retryable failures re-queued at once
    worker = Worker(
        services.queue,
        services.process,
        jobs=services.run_job,  # population runs' listing and chunk jobs
        threads=settings.worker_threads,
        ready=lambda: not services.readiness_problems(),
        observe=metrics.job if metrics is not None else None,
    )
    worker.start()
    app.extensions["labinterp.worker"] = worker
    if settings.poll_seconds > 0:
        poller = Poller(services.client, services.queue, services.knowledge, interval=settings.poll_seconds)
        poller.start()
        app.extensions["labinterp.poller"] = poller
    if settings.callback_url:
        try:
            register_subscription(
                services.client(),
                services.knowledge,
                settings.callback_url.rstrip("/") + "/hook",
                services.api_token,
                hook_token=settings.hook_token,
            )
        except LabinterpError as exc:
            log.warning("Subscription not registered (%s); relying on the poll", type(exc).__name__)

    stopping = threading.Lock()
    stopped: list[int] = []  # how many jobs the stop handed back; set once it ran

    def begin_stop() -> None:  # in the SIGTERM handler: only sets events
        worker.request_stop()
        if "labinterp.poller" in app.extensions:
            app.extensions["labinterp.poller"].request_stop()

    def stop() -> int:
        with stopping:
            if not stopped:
                begin_stop()
                released = worker.stop(grace)
                if "labinterp.poller" in app.extensions:
                    app.extensions["labinterp.poller"].stop()
                log.info("background work stopped: %d running jobs handed back to the queue", released)
                stopped.append(released)
            return stopped[0]

    app.extensions["labinterp.stop"] = stop
    chain_sigterm(begin_stop)
    atexit.register(stop)
