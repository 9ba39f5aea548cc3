"""`labinterp sandbox`: the local HAPI FHIR server."""

from __future__ import annotations

from pathlib import Path

import click

from labinterp.cli.common import _fail
from labinterp.config import Settings
from labinterp.errors import LabinterpError
from labinterp.sandbox.hapi import Sandbox, load_file
from labinterp.sandbox.postgres import Postgres


@click.group("sandbox")
def sandbox_group() -> None:
    """A local HAPI FHIR server (R4, JPA, H2 or PostgreSQL) on 127.0.0.1, built from Maven Central by docker/hapi."""


def _sandbox(port: int, database: str = "mem", pg_port: int = 5433) -> Sandbox:
    return Sandbox(Path(Settings.from_env().workdir), port=port, database=database, pg_port=pg_port)


@sandbox_group.command("up")
@click.option("--port", default=8090, show_default=True)
@click.option(
    "--database",
    type=click.Choice(["mem", "file", "postgres"]),
    default="file",
    show_default=True,
    help="H2 in memory, H2 on file under the work directory, or a local PostgreSQL (Debian's packages, "
    "installed if missing; its cluster under the work directory, run by the user labinterp-pg, 127.0.0.1 only).",
)
@click.option("--pg-port", default=5433, show_default=True, help="--database postgres: the PostgreSQL's port.")
@click.option("--timeout", default=600.0, show_default=True, help="Seconds to wait for HAPI to answer.")
def sandbox_up(port: int, database: str, pg_port: int, timeout: float) -> None:
    """Build (first time) and start HAPI, wait until /fhir/metadata answers, print the base URL."""
    try:
        box = _sandbox(port, database, pg_port)
        click.echo(box.up(timeout=timeout))
        if database == "postgres":
            pg = Postgres(box.workdir, port=pg_port)
            masked = pg.url(box.pg_database).replace(pg.password(), "***")
            click.echo(f"HAPI's database: {masked} (password in {pg.passfile})", err=True)
    except LabinterpError as exc:
        _fail(str(exc))


@sandbox_group.command("down")
@click.option("--port", default=8090, show_default=True)
def sandbox_down(port: int) -> None:
    """Stop the HAPI started by `sandbox up` (and its PostgreSQL, with --database postgres)."""
    click.echo("stopped" if _sandbox(port).down() else "not running")


@sandbox_group.command("load")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--fhir-url", default=None, help="Default: the sandbox on --port.")
@click.option("--port", default=8090, show_default=True)
def sandbox_load(files: tuple[str, ...], fhir_url: str | None, port: int) -> None:
    """Load Bundle files (each as one transaction; collections are PUT at their ids)."""
    base = fhir_url or _sandbox(port).base_url
    try:
        for f in files:
            n = load_file(Path(f), base)
            click.echo(f"{f}: {n} resources")
    except LabinterpError as exc:
        _fail(str(exc))
