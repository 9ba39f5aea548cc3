"""`labinterp worker`: queue workers without the HTTP service. Settings from LABINTERP_* as for `labinterp serve`: the
queue (LABINTERP_QUEUE_URL=postgresql://... for a queue shared by several machines, else the SQLite file), the FHIR
server, the threads (LABINTERP_WORKER_THREADS or --threads). Any number of these processes, on any number of
machines, share one queue: patient jobs, and population runs' listing and chunk jobs.

SIGTERM or SIGINT stops it: no job is claimed from then on, running jobs get `--grace` seconds to finish, and those
still running are handed back to the queue (another worker claims them at once). A worker killed outright (SIGKILL)
loses nothing either: its jobs are handed out again once its lease (LABINTERP_QUEUE_LEASE) runs out."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

import click

from labinterp.cli.common import one_line_errors
from labinterp.config import Settings

log = logging.getLogger("labinterp.worker")


@click.command("worker")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Worker threads (default LABINTERP_WORKER_THREADS).")
@click.option(
    "--grace", type=click.FloatRange(min=0), default=15.0, show_default=True, help="Seconds running jobs get at a stop."
)
@click.option("--poll/--no-poll", default=False, show_default=True, help="Also run the reconciliation poll (one per deployment).")
def worker_cmd(threads: int | None, grace: float, poll: bool) -> None:
    """Run queue workers (patients and population runs) on the configured queue, without the HTTP service."""
    from labinterp.server.app import build_services
    from labinterp.server.observability import configure_logging
    from labinterp.server.worker import Poller, Worker

    with one_line_errors("worker"):
        settings = Settings.from_env()
        configure_logging(json=settings.log_format == "json")
        services = build_services(settings)
    worker = Worker(
        services.queue,
        services.process,
        jobs=services.run_job,
        threads=threads or settings.worker_threads,
        ready=lambda: not services.readiness_problems(),
    )
    poller = Poller(services.client, services.queue, services.knowledge, interval=settings.poll_seconds) if poll else None
    stopped = threading.Event()

    def stop(signum: int, frame: Any) -> None:
        worker.request_stop()
        if poller is not None:
            poller.request_stop()
        stopped.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    worker.start()
    if poller is not None and settings.poll_seconds > 0:
        poller.start()
    backend = "PostgreSQL" if settings.queue_url else "SQLite"
    log.info("worker started: %d threads on the %s queue", worker.threads, backend)
    while not stopped.wait(1.0):
        pass
    released = worker.stop(grace)
    if poller is not None:
        poller.stop()
    close = getattr(services.queue, "close", None)
    if callable(close):
        close()
    log.info("worker stopped: %d running jobs handed back to the queue", released)
