"""The Flask service: `create_app(test_config=None)`.

Configuration: defaults, then the environment (LABINTERP_*), then `test_config`. Keys: FHIR_BASE_URL,
FHIR_TOKEN, FHIR_BASIC ("user:password"), API_TOKEN (bearer token required on the service's own
endpoints), MAPPINGS_DIR, WORKDIR, QUEUE_PATH, WORKER (start the queue worker and poller), WORKER_THREADS,
POLL_SECONDS (0: no poll), CALLBACK_URL (this service's URL as HAPI reaches it: registers the
Subscription), EGFR_EQUATION, STRICT (any resource that cannot be used fails the patient with a 422, for
validating a feed; default false: it is left out and answered as a warning), LENIENT (deprecated: the default;
an explicit false still means STRICT when STRICT is unset), FHIR_RETRIES (tries per request), FHIR_RETRY_DELAY (first backoff, s), QUEUE_LEASE (s before a running job of a dead process is retried), COHORT_STATS (a stats.json for the dashboard), RENDER (HTML/PDF per report; default true)."""

from __future__ import annotations

import atexit
import logging
from pathlib import Path
from typing import Any

from flask import Flask

from labinterp.config import EQUATIONS, ROOT, strict_setting
from labinterp.errors import LabinterpError
from labinterp.fhir.retry import RetryPolicy
from labinterp.knowledge import load_knowledge
from labinterp.server.api.routes import bp, register_errors
from labinterp.server.dashboard import dashboard
from labinterp.server.queue import JobQueue
from labinterp.server.services import Services
from labinterp.server.worker import Poller, Worker, register_subscription

log = logging.getLogger("labinterp.app")

DEFAULTS: dict[str, Any] = {
    "FHIR_BASE_URL": "http://127.0.0.1:8090/fhir",
    "FHIR_TOKEN": None,
    "FHIR_BASIC": None,
    "API_TOKEN": None,
    "MAPPINGS_DIR": None,
    "WORKDIR": str(ROOT / ".labinterp"),
    "QUEUE_PATH": None,
    "WORKER": False,
    "WORKER_THREADS": 2,
    "POLL_SECONDS": 30.0,
    "CALLBACK_URL": None,
    "EGFR_EQUATION": None,
    "STRICT": None,
    "LENIENT": None,
    "FHIR_RETRIES": 5,
    "FHIR_RETRY_DELAY": 0.5,
    "QUEUE_LEASE": 300.0,
    "COHORT_STATS": None,
    "RENDER": True,
}


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    app = Flask("labinterp")
    app.config.from_mapping(DEFAULTS)
    app.config.from_prefixed_env("LABINTERP")
    if test_config:
        app.config.update(test_config)
    cfg = app.config
    knowledge = load_knowledge(cfg["MAPPINGS_DIR"])
    queue = JobQueue(cfg["QUEUE_PATH"] or Path(cfg["WORKDIR"]) / "queue.sqlite3", lease_seconds=float(cfg["QUEUE_LEASE"]))
    basic = tuple(str(cfg["FHIR_BASIC"]).split(":", 1)) if cfg["FHIR_BASIC"] else None
    equation = EQUATIONS.get(str(cfg["EGFR_EQUATION"])) if cfg["EGFR_EQUATION"] else None
    services = Services(
        knowledge,
        str(cfg["FHIR_BASE_URL"]).rstrip("/"),
        queue,
        api_token=cfg["API_TOKEN"] or None,
        fhir_token=cfg["FHIR_TOKEN"] or None,
        fhir_basic=basic if basic and len(basic) == 2 else None,
        strict=strict_setting(cfg["STRICT"], cfg["LENIENT"]),
        equation=equation,
        retry=RetryPolicy(attempts=int(cfg["FHIR_RETRIES"]), base_delay=float(cfg["FHIR_RETRY_DELAY"])),
        render=str(cfg["RENDER"]).lower() not in ("false", "0", "no"),
    )
    app.extensions["labinterp"] = services
    app.register_blueprint(bp)
    app.register_blueprint(dashboard)
    register_errors(app)
    if cfg["WORKER"]:
        start_background(app, services)
    return app


def start_background(app: Flask, services: Services) -> None:
    """The queue worker, the reconciliation poll and the Subscription, for a service that writes reports
    on its own. A failure to register the Subscription is logged, not fatal: the poll still runs."""
    cfg = app.config
    worker = Worker(services.queue, services.process, threads=int(cfg["WORKER_THREADS"]))
    worker.start()
    app.extensions["labinterp.worker"] = worker
    if float(cfg["POLL_SECONDS"]) > 0:
        poller = Poller(services.client, services.queue, services.knowledge, interval=float(cfg["POLL_SECONDS"]))
        poller.start()
        app.extensions["labinterp.poller"] = poller
    if cfg["CALLBACK_URL"]:
        try:
            register_subscription(
                services.client(), services.knowledge, str(cfg["CALLBACK_URL"]).rstrip("/") + "/hook", services.api_token
            )
        except LabinterpError as exc:
            log.warning("Subscription not registered (%s); relying on the poll", type(exc).__name__)

    def stop() -> None:
        worker.stop()
        if "labinterp.poller" in app.extensions:
            app.extensions["labinterp.poller"].stop()

    atexit.register(stop)
