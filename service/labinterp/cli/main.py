"""The `labinterp` command line. Exit 0 on success, also when some resources were left out: then one
warning line per resource on standard error ("labinterp: warning: Observation/x valueQuantity.unit: ...").
Exit 2 with one line on standard error, and no output file, for input that cannot be used: not JSON, not
FHIR, not a Bundle, or (with --strict / LABINTERP_STRICT=true) any resource that would be left out."""

from __future__ import annotations

import ipaddress
import json
import os
import sys
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import click

from labinterp import __version__
from labinterp.cli.cohort import cohort_group
from labinterp.cli.common import UsageFailure, _fail, _knowledge, check_writable, one_line_errors, read_json, write_json_atomic
from labinterp.cli.population import PopulationArgs
from labinterp.cli.population import run as population_run
from labinterp.cli.sandbox import sandbox_group
from labinterp.cli.worker import worker_cmd
from labinterp.config import EQUATIONS, Settings
from labinterp.errors import LabinterpError
from labinterp.extract.facts import Problem
from labinterp.extract.fhirtime import parse_now
from labinterp.knowledge import load_knowledge
from labinterp.pipeline import (
    BatchLiveResult,
    LiveResult,
    PatientResult,
    RunResult,
    interpret_batch_live,
    interpret_bundle,
    interpret_patient,
)
from labinterp.summary import summarize, summarize_batch


def _now(text: str | None) -> datetime:
    return parse_now(text) if text else datetime.now(UTC).replace(microsecond=0)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="labinterp")
def cli() -> None:
    """labinterp: interprets linezolid troughs, magnesium, renal function and PGx genotypes from FHIR R4
    and composes DiagnosticReport, RiskAssessment and Provenance resources."""


@cli.command("interpret")
@click.option(
    "--bundle",
    "bundle_path",
    type=click.Path(dir_okay=False),
    help="Input FHIR R4 Bundle (collection, searchset, transaction or batch).",
)
@click.option(
    "--fhir-url", "fhir_url", help="A FHIR server to read the patient from and write the results to (or LABINTERP_FHIR_BASE_URL)."
)
@click.option("--patient", "patient_id", help="With --fhir-url: the Patient's id.")
@click.option("--batch", "batch_id", help="With --fhir-url: a formulation batch's Substance id (its QC report).")
@click.option("--dry-run", is_flag=True, help="With --fhir-url: print the transaction instead of sending it.")
@click.option(
    "--out", "out_path", type=click.Path(dir_okay=False), help="Write the transaction Bundle here (default: standard output)."
)
@click.option("--now", "now_text", help="Evaluation time, ISO-8601 with time zone (default: the current time).")
@click.option(
    "--mappings",
    "mappings",
    type=click.Path(file_okay=False),
    help="A site's overlay directory for mappings/ (or LABINTERP_MAPPINGS_DIR).",
)
@click.option(
    "--equation", type=click.Choice(sorted(EQUATIONS)), help="eGFR equation (default from mappings/renal.toml: ckd-epi-2021)."
)
@click.option(
    "--strict",
    is_flag=True,
    help="Fail (exit 2, nothing written) on any resource that cannot be used, for validating a data feed "
    "(or LABINTERP_STRICT=true). Default: leave it out, list it in the report and warn on standard error.",
)
@click.option(
    "--lenient", is_flag=True, help="Deprecated: leaving unusable resources out is the default. Overrides LABINTERP_STRICT."
)
@click.option("--summary", is_flag=True, help="Print a readable summary per patient on standard error.")
@click.option("--no-validate", is_flag=True, help="Skip validating the output with fhir.resources (faster).")
@click.option(
    "--no-render", is_flag=True, help="No HTML/PDF presentedForm (faster, smaller); the narrative is written as with rendering."
)
@click.option("--all", "all_patients", is_flag=True, help="With --fhir-url: every Patient of the server (a population run).")
@click.option("--group", "group_id", help="With --fhir-url: the active Patient members of this Group (a population run).")
@click.option("--since", help="With --all or --group: only patients with something changed at or after this instant.")
@click.option(
    "--chunk", type=click.IntRange(1, 1000), help="Patients read per batch request (or LABINTERP_POPULATION_CHUNK; 100)."
)
@click.option(
    "--transaction-size",
    type=click.IntRange(1, 1000),
    help="Patients written per transaction (or LABINTERP_POPULATION_TRANSACTION; 50).",
)
@click.option(
    "--write",
    type=click.Choice(["conditional", "put"]),
    help="New reports as conditional creates (portable, default) or PUTs to deterministic ids (or LABINTERP_WRITE_MODE).",
)
@click.option(
    "--workers", type=click.IntRange(1, 16), default=2, show_default=True, help="Chunks run at once in a population run."
)
@click.option("--restart", is_flag=True, help="A population run from the start, not resuming an interrupted one.")
def interpret_cmd(
    bundle_path: str | None,
    fhir_url: str | None,
    patient_id: str | None,
    batch_id: str | None,
    dry_run: bool,
    out_path: str | None,
    now_text: str | None,
    mappings: str | None,
    equation: str | None,
    strict: bool,
    lenient: bool,
    summary: bool,
    no_validate: bool,
    no_render: bool,
    all_patients: bool,
    group_id: str | None,
    since: str | None,
    chunk: int | None,
    transaction_size: int | None,
    write: str | None,
    workers: int,
    restart: bool,
) -> None:
    """Interpret patients from a Bundle file (--bundle), from a FHIR server (--fhir-url --patient), or a server's whole
    population (--fhir-url --all, or --group ID; with --since INSTANT only what changed)."""
    code = 0
    population = PopulationArgs(all_patients, group_id, since, chunk, transaction_size, write, workers, restart)
    with one_line_errors(str(bundle_path or "the server data")):
        settings = Settings.from_env()
        fhir_url = fhir_url or (settings.fhir_base_url if not bundle_path else None)
        many = all_patients or group_id is not None
        if batch_id and (patient_id or many):
            raise UsageFailure("--batch takes --fhir-url, and neither --patient, --all nor --group")
        subject = patient_id or (f"Substance/{batch_id}" if batch_id else None)
        strict = _checked_options(bundle_path, fhir_url, subject, strict, lenient, settings, many, dry_run)
        if out_path:
            check_writable(out_path)  # before any work (and before --fhir-url writes to the server)
        k = _knowledge(mappings)
        now = _now(now_text)
        eq = EQUATIONS[equation] if equation else settings.equation
        render = settings.render and not no_render
        validate = settings.validate_output and not no_validate
        problems: list[Problem] = []
        if many:
            output, code = population_run(
                settings, str(fhir_url), population, k, now, strict=strict, equation=eq, render=render, validate=validate
            )
        elif fhir_url and batch_id:
            batch = interpret_batch_live(
                settings.client(fhir_url), batch_id, k, now, dry_run=dry_run, strict=strict, render=render
            )
            output, problems = _live_output(batch, dry_run, summary)
        elif fhir_url:
            live = interpret_patient(
                settings.client(fhir_url), str(patient_id), k, now, dry_run=dry_run, strict=strict, equation=eq, render=render
            )
            output, problems = _live_output(live, dry_run, summary)
        else:
            result = interpret_bundle(
                read_json(str(bundle_path)), k, now, strict=strict, equation=eq, validate=validate, render=render
            )
            if summary:
                _print_summary(result, err=True)
            output, problems = result.bundle, result.problems
            if (
                not result.patients and not result.batches
            ):  # a readable Bundle with no Patient: an empty transaction, and one line saying so
                click.echo(
                    "labinterp: note: no Patient and no formulation batch in the input: nothing to interpret, nothing to write",
                    err=True,
                )
    _warn(problems)
    if out_path:
        try:
            write_json_atomic(out_path, output)
        except LabinterpError as exc:  # the directory went away, the disk is full: one line naming the path
            _fail(str(exc))
    else:
        click.echo(json.dumps(output, indent=2, ensure_ascii=False))
    if code:
        sys.exit(code)


def _checked_options(
    bundle_path: str | None,
    fhir_url: str | None,
    patient_id: str | None,
    strict: bool,
    lenient: bool,
    settings: Settings,
    many: bool = False,
    dry_run: bool = False,
) -> bool:
    """The one source of input (a file, a server and a patient, or a server's population) and whether the run is
    strict; a UsageFailure (exit 2) for options that contradict each other."""
    if bool(bundle_path) == bool(fhir_url):
        raise UsageFailure("give either --bundle FILE or --fhir-url URL --patient ID (or --all, or --group ID)")
    if many and (patient_id or dry_run or not fhir_url):
        raise UsageFailure("--all and --group take --fhir-url, and neither --patient nor --dry-run")
    if fhir_url and not patient_id and not many:
        raise UsageFailure("--fhir-url needs --patient ID (or --all, or --group ID)")
    if strict and lenient:
        raise UsageFailure("give --strict or --lenient, not both")
    return strict or (settings.strict_mode and not lenient)


def _live_output(live: LiveResult | BatchLiveResult, dry_run: bool, summary: bool) -> tuple[dict[str, Any], list[Problem]]:
    """What a run against a server prints: its summary and plan on standard error; the server's
    transaction-response (or, in a dry run, the transaction that would be sent) as the output."""
    if summary and isinstance(live, LiveResult) and live.findings is not None:
        for line in summarize(PatientResult(live.findings, [])):
            click.echo(line, err=True)
    if isinstance(live, BatchLiveResult):
        click.echo(summarize_batch(live.finding) if live.finding else "the batch has no usable QC result", err=True)
    plan = live.plan
    click.echo(
        f"created {plan.created or '-'}; amended {plan.amended or '-'}; unchanged {plan.unchanged or '-'}; "
        f"{live.requests} HTTP requests" + (" (dry run: nothing sent)" if dry_run else ""),
        err=True,
    )
    return (plan.bundle if dry_run or live.response is None else live.response), live.problems


def _warn(problems: list[Problem]) -> None:
    """One line per resource left out: its reference, element and reason (never a patient's name or identifier)."""
    for p in problems:
        click.echo(f"labinterp: warning: {p.line} (left out)", err=True)


def _print_summary(result: RunResult, err: bool = False) -> None:
    for p in result.patients:
        for line in summarize(p):
            click.echo(line, err=err)
    for b in result.batches:
        click.echo(summarize_batch(b.finding), err=err)
    n = sum(len(p.written) for p in result.patients) + sum(len(b.written) for b in result.batches)
    subjects = f"{len(result.patients)} patients" + (f", {len(result.batches)} batches" if result.batches else "")
    click.echo(f"{subjects}, {n} resources to write (plus 1 Device)" if n else f"{subjects}, nothing to write", err=err)


@cli.command("check-mappings")
@click.option(
    "--mappings",
    "mappings",
    type=click.Path(file_okay=False),
    help="A site's overlay directory to check with the package's mappings.",
)
def check_mappings_cmd(mappings: str | None) -> None:
    """Validate every mappings file (and an overlay); name file and key on any error."""
    try:
        k = _knowledge(mappings)
    except LabinterpError as exc:
        _fail(str(exc))
        return
    click.echo(
        f"mappings OK: rule set {k.ruleset_version}; {len(k.analytes)} analytes, {len(k.analyte_codes)} analyte codes, "
        f"{len(k.genes)} genes ({', '.join(sorted(k.genes))}), {len(k.drugs)} drugs, {len(k.mg_causes)} magnesium-cause classes; "
        f"{len(k.qc.measures)} formulation-QC measures, {len(k.qc_limits.products)} products configured "
        f"({sum(1 for p in k.qc_limits.products if p.limits)} with acceptance limits)"
    )
    for name, version in sorted(k.file_versions.items()):
        click.echo(f"  {name}: {version}")


def examples_dir() -> Path:
    return Path(str(resources.files("labinterp") / "examples"))


@cli.command("demo")
@click.option("--offline", is_flag=True, help="No server: interpret the example Bundle file and write the transaction Bundle.")
@click.option(
    "--out",
    "out_path",
    default="labinterp-demo-output.json",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="With --offline: where to write the transaction Bundle.",
)
@click.option("--now", "now_text", default="2026-01-20T12:00:00Z", show_default=True, help="With --offline: evaluation time.")
@click.option("--stop", is_flag=True, help="Stop HAPI afterwards (default: leave it running to explore).")
@click.option("--fhir-port", default=8090, show_default=True)
@click.option("--service-port", default=8080, show_default=True)
def demo_cmd(offline: bool, out_path: str, now_text: str, stop: bool, fhir_port: int, service_port: int) -> None:
    """The whole loop on the bundled example patients: local HAPI up, patients loaded, the service started,
    reports written back and summarized. --offline does the same from a file, with no server. Exit 0 done;
    2 the example, the evaluation time or the output path cannot be used, or the sandbox cannot be started."""
    with one_line_errors("demo"):
        if not offline:
            from labinterp.sandbox.demo import run_demo

            run_demo(
                Path(Settings.from_env().workdir),
                fhir_port=fhir_port,
                service_port=service_port,
                keep_running=not stop,
                echo=click.echo,
            )
            return
        check_writable(out_path)
        now = parse_now(now_text)
        k = load_knowledge(examples_dir() / "site-mappings")
        data = read_json(str(examples_dir() / "patients.json"))
        result = interpret_bundle(data, k, now)
        _print_summary(result)
        _warn(result.problems)
        write_json_atomic(out_path, result.bundle)
        click.echo(f"wrote {out_path}")


@cli.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True)
@click.option("--threads", default=8, show_default=True, help="Request threads (one gunicorn worker process).")
@click.option(
    "--worker/--no-worker", default=True, show_default=True, help="Run the queue worker, the poll and the Subscription."
)
@click.option(
    "--callback-url", default=None, help="This service's URL as the FHIR server reaches it (registers the Subscription)."
)
def serve_cmd(host: str, port: int, threads: int, worker: bool, callback_url: str | None) -> None:
    """The Flask service under gunicorn. Settings from LABINTERP_* (see labinterp/server/app.py). Served on an address
    other than loopback only with LABINTERP_API_TOKEN set (exit 2 otherwise): anyone reaching the port could write."""
    from gunicorn.app.base import BaseApplication

    from labinterp.server.app import create_app

    with one_line_errors("serve"):
        settings = Settings.from_env()
        if not is_loopback(host) and not settings.api_token:
            raise UsageFailure(
                f"serving on {host} without LABINTERP_API_TOKEN: anyone who reaches the port could write reports; "
                "set a token (openssl rand -hex 32), or serve on 127.0.0.1"
            )
    if settings.log_format != "json":  # INFO lines with the request's correlation id (json is set up by create_app)
        from labinterp.server.observability import configure_logging

        configure_logging(json=False)

    os.environ["LABINTERP_WORKER"] = "true" if worker else "false"
    if callback_url:
        os.environ["LABINTERP_CALLBACK_URL"] = callback_url

    class Server(BaseApplication):
        def load_config(self) -> None:
            for key, value in {
                "bind": f"{host}:{port}",
                "workers": 1,
                "worker_class": "labinterp.server.gunicorn_worker.Worker",  # gthread; refusals as OperationOutcomes
                "threads": threads,
                "timeout": 120,
                "graceful_timeout": 20,
                "accesslog": None,
            }.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return create_app()

    try:
        Server().run()
    except LabinterpError as exc:
        _fail(str(exc))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


cli.add_command(cohort_group)
cli.add_command(sandbox_group)
cli.add_command(worker_cmd)


def main() -> None:
    cli(prog_name="labinterp")


if __name__ == "__main__":
    main()
