"""A real HAPI FHIR server for the integration tier: started by labinterp's own sandbox (docker/hapi,
in-memory H2, request validation on, the Genomics Reporting IG installed), once per test session.

LABINTERP_TEST_FHIR_URL points the tier at a server that is already running instead.
LABINTERP_SKIP_INTEGRATION=1 skips the tier (quick local runs; CI never sets it)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from labinterp.fhir.client import FhirClient
from labinterp.sandbox.hapi import Sandbox, as_transaction, load_file
from labinterp.sandbox.postgres import Postgres
from tests.conftest import ROOT, SITE

EXAMPLES = ROOT / "service" / "labinterp" / "examples" / "patients.json"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.environ.get("LABINTERP_SKIP_INTEGRATION") == "1":
        skip = pytest.mark.skip(reason="LABINTERP_SKIP_INTEGRATION=1")
        for item in items:
            if "integration" in str(item.fspath):
                item.add_marker(skip)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def fhir_url() -> Iterator[str]:
    given = os.environ.get("LABINTERP_TEST_FHIR_URL")
    if given:
        yield given.rstrip("/")
        return
    box = Sandbox(ROOT / ".labinterp", port=free_port(), database="mem")
    url = box.up(timeout=420)
    try:
        yield url
    finally:
        box.down()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A real PostgreSQL (Debian's packages, installed if missing and we are root) on a free loopback port, its
    cluster under .labinterp/pg-<port>, started once per session and stopped at the end. `postgres.create_database
    ("name")` returns a postgresql:// URL; `postgres.jdbc("name")` gives (url, user, password) for Java."""
    pg = Postgres(ROOT / ".labinterp", port=free_port())
    pg.start()
    try:
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(pg.home, ignore_errors=True)


@pytest.fixture(scope="session")
def hapi_pg(postgres: Postgres) -> Iterator[str]:
    """A HAPI of its own (free port, request validation on, the IG installed) on the `postgres` fixture's database
    `hapi`, started once per session; yields its FHIR base URL. Empty: load what a test needs (load_file)."""
    box = Sandbox(ROOT / ".labinterp", port=free_port(), database="postgres", postgres=postgres)
    url = box.up(timeout=600)
    try:
        yield url
    finally:
        box.down()


@pytest.fixture(scope="session")
def loaded(fhir_url: str) -> str:
    """The example patients, loaded once (a PUT transaction: loading again replaces, never duplicates)."""
    load_file(EXAMPLES, fhir_url)
    return fhir_url


def own_copy(fhir_url: str, pid: str, prefix: str) -> str:
    """A private copy of example patient `pid` (tests/data/patients), every id prefixed: a test that changes data
    changes its own copy, never the examples other tests read. Returns the copy's patient id."""
    text = (ROOT / "tests" / "data" / "patients" / f"{pid}.json").read_text()
    bundle = json.loads(text.replace(f'"{pid}', f'"{prefix}{pid}').replace(f"/{pid}", f"/{prefix}{pid}"))
    FhirClient(fhir_url).transaction(as_transaction(bundle, fhir_url))
    return f"{prefix}{pid}"


class Service:
    """`labinterp serve` in a subprocess, as an operator runs it."""

    def __init__(
        self,
        fhir_url: str,
        workdir: Path,
        *,
        worker: bool,
        poll_seconds: float = 0.0,
        callback: bool = False,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        env.update(
            {
                "LABINTERP_FHIR_BASE_URL": fhir_url,
                "LABINTERP_WORKDIR": str(workdir),
                "LABINTERP_MAPPINGS_DIR": str(SITE),
                "LABINTERP_POLL_SECONDS": str(poll_seconds),
                "LABINTERP_QUEUE_LEASE": "2",
                "LABINTERP_FHIR_RETRY_DELAY": "0.2",
            }
        )
        env.update(extra_env or {})
        args = [
            sys.executable,
            "-m",
            "labinterp.cli.main",
            "serve",
            "--port",
            str(self.port),
            "--worker" if worker else "--no-worker",
        ]
        if callback:
            args += ["--callback-url", self.url]
        self.log = (workdir / f"service-{self.port}.log").open("w")
        self.proc = subprocess.Popen(args, env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"labinterp serve exited with {self.proc.returncode}; see {self.log.name}")
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"labinterp serve did not become ready; see {self.log.name}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.log.close()
