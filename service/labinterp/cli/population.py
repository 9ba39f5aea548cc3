"""`labinterp interpret --fhir-url URL --all | --group ID [--since INSTANT]`: a population run (labinterp.population).

Prints a one-line summary on standard error and the run's summary JSON (counts, requests per patient, the patients
that failed with why) as the output. Exit 0 when every patient was interpreted, 1 when some failed (named in the
summary), 2 for options or settings that cannot be used, 130 when interrupted (the same command resumes)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from labinterp.cli.common import UsageFailure
from labinterp.config import Settings
from labinterp.extract.fhirtime import parse_now
from labinterp.fhir.search import is_fhir_id
from labinterp.knowledge import Knowledge
from labinterp.pipeline import batch_gc
from labinterp.population import ChunkOptions, Selection
from labinterp.population_run import Checkpoint, RunSummary, run_population


@dataclass
class PopulationArgs:
    all: bool
    group: str | None
    since: str | None
    chunk: int | None
    transaction_size: int | None
    write: str | None
    workers: int
    restart: bool


def selection_of(args: PopulationArgs) -> Selection:
    if args.all and args.group:
        raise UsageFailure("give --all or --group ID, not both")
    if args.group is not None and not is_fhir_id(args.group):
        raise UsageFailure("--group: not a FHIR resource id (1-64 of A-Z a-z 0-9 - and .)")
    since = None
    if args.since is not None:
        try:
            since = parse_now(args.since).isoformat()
        except Exception:
            raise UsageFailure("--since: not an instant with a time zone, e.g. 2026-01-01T00:00:00Z") from None
    return Selection(all=args.all, group=args.group, since=since)


def run(
    settings: Settings,
    fhir_url: str,
    args: PopulationArgs,
    k: Knowledge,
    now: datetime,
    *,
    strict: bool,
    equation: str | None,
    render: bool,
    validate: bool,
) -> tuple[dict[str, Any], int]:
    """The population run and its summary JSON, with the exit code it calls for."""
    selection = selection_of(args)
    options = ChunkOptions(
        write=args.write or settings.write_mode,  # type: ignore[arg-type]  # click's Choice keeps it to the two modes
        render=render,
        validate=validate,
        strict=strict,
        equation=equation,
        transaction_size=args.transaction_size or settings.population_transaction,
    )
    auth = settings.fhir_auth(fhir_url)  # one auth for every thread's client: a SMART token is fetched once
    path = Checkpoint.path_for(Path(settings.workdir), fhir_url, selection, options, k.ruleset_version)
    if args.restart:
        path.unlink(missing_ok=True)  # before it is opened: a checkpoint that cannot be read is replaced too
    checkpoint = Checkpoint(path)
    with batch_gc():  # this process runs nothing but the run's threads: see labinterp.pipeline.batch_gc
        summary = run_population(
            lambda: settings.client(fhir_url, auth=auth),
            selection,
            k,
            now,
            options,
            chunk_size=args.chunk or settings.population_chunk,
            workers=args.workers,
            checkpoint=checkpoint,
            progress=sys.stderr.isatty(),
        )
    click.echo(_line(summary), err=True)
    code = 130 if summary.interrupted else 1 if summary.outcome.failed else 0
    return summary.to_json(), code


def _line(s: RunSummary) -> str:
    o = s.outcome
    head = "interrupted (run the same command again to resume): " if s.interrupted else ""
    resumed = " (resumed)" if s.resumed else ""
    return (
        f"{head}{o.patients} patients{resumed}: {o.created} reports created, {o.amended} amended, {o.unchanged} unchanged; "
        f"{len(o.failed)} failed; {s.requests} HTTP requests ({s.requests / max(o.patients, 1):.3f} per patient) "
        f"in {s.seconds:.1f} s"
    )
