"""The `labinterp` command line. Exit 0 on success; exit 2 with one line on standard error for input that
cannot be used (and then no output file is written)."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import click

from service import __version__
from service.config import EQUATIONS, Settings
from service.errors import InputError, LabinterpError
from service.extract.fhirtime import parse_now
from service.knowledge import Knowledge, load_knowledge
from service.pipeline import RunResult, interpret_bundle
from service.summary import summarize


class UsageFailure(LabinterpError):
    pass


def _fail(message: str) -> None:
    click.echo(f"labinterp: error: {message}", err=True)
    sys.exit(2)


def read_json(path: str) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InputError(path, "no such file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot be read: {exc}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(path, f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc


def write_json_atomic(path: str, data: Any) -> None:
    """Write to a temporary file beside the target, then rename: never a half-written output."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent if str(target.parent) else ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, ensure_ascii=False)
            fh.write("\n")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _knowledge(mappings: str | None) -> Knowledge:
    return load_knowledge(mappings or Settings.from_env().mappings_dir)


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
    required=True,
    type=click.Path(dir_okay=False),
    help="Input FHIR R4 Bundle (collection, searchset, transaction or batch).",
)
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
@click.option("--lenient", is_flag=True, help="Leave broken resources out (listed in the report) instead of failing.")
@click.option("--summary", is_flag=True, help="Print a readable summary per patient on standard error.")
@click.option("--no-validate", is_flag=True, help="Skip validating the output with fhir.resources (faster).")
def interpret_cmd(
    bundle_path: str,
    out_path: str | None,
    now_text: str | None,
    mappings: str | None,
    equation: str | None,
    lenient: bool,
    summary: bool,
    no_validate: bool,
) -> None:
    """Interpret one or many patients in a FHIR Bundle and write the transaction Bundle to send to a server."""
    try:
        settings = Settings.from_env()
        k = _knowledge(mappings)
        now = _now(now_text)
        data = read_json(bundle_path)
        eq = EQUATIONS[equation] if equation else (EQUATIONS[settings.egfr_equation] if settings.egfr_equation else None)
        result = interpret_bundle(
            data, k, now, strict=not lenient, equation=eq, validate=settings.validate_output and not no_validate
        )
    except LabinterpError as exc:
        _fail(str(exc))
        return
    if summary:
        _print_summary(result, err=True)
    if out_path:
        write_json_atomic(out_path, result.bundle)
    else:
        click.echo(json.dumps(result.bundle, indent=2, ensure_ascii=False))


def _print_summary(result: RunResult, err: bool = False) -> None:
    for p in result.patients:
        for line in summarize(p):
            click.echo(line, err=err)
    n = sum(len(p.written) for p in result.patients)
    click.echo(
        f"{len(result.patients)} patients, {n} resources to write (plus 1 Device)"
        if n
        else f"{len(result.patients)} patients, nothing to write",
        err=err,
    )


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
        f"{len(k.genes)} genes ({', '.join(sorted(k.genes))}), {len(k.drugs)} drugs, {len(k.mg_causes)} magnesium-cause classes"
    )
    for name, version in sorted(k.file_versions.items()):
        click.echo(f"  {name}: {version}")


def examples_dir() -> Path:
    return Path(str(resources.files("service") / "examples"))


@cli.command("demo")
@click.option(
    "--out",
    "out_path",
    default="labinterp-demo-output.json",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Where to write the transaction Bundle.",
)
@click.option("--now", "now_text", default="2026-01-20T12:00:00Z", show_default=True, help="Evaluation time.")
def demo_cmd(out_path: str, now_text: str) -> None:
    """Interpret the bundled example patients, print a summary of each, and write the output Bundle."""
    try:
        k = load_knowledge(examples_dir() / "site-mappings")
        data = read_json(str(examples_dir() / "patients.json"))
        result = interpret_bundle(data, k, parse_now(now_text))
    except LabinterpError as exc:
        _fail(str(exc))
        return
    _print_summary(result)
    write_json_atomic(out_path, result.bundle)
    click.echo(f"wrote {out_path}")


def main() -> None:
    cli(prog_name="labinterp")


if __name__ == "__main__":
    main()
