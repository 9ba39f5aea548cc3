"""The local HAPI FHIR sandbox: build labinterp's launcher (docker/hapi, Maven Central), fetch the
Genomics Reporting IG packages (npm registry), start HAPI on 127.0.0.1, wait until it answers, stop it,
and load Bundles into it.

State lives in a work directory (default `.labinterp/` in the repository): packages/, hapi.log,
hapi.pid, h2/ for the file database of the demo, and pg-<port>/ for HAPI on PostgreSQL (sandbox/postgres.py)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from labinterp.errors import LabinterpError
from labinterp.sandbox.postgres import Postgres

ROOT = Path(__file__).resolve().parents[3]  # the checkout (docker/hapi lives there): service/labinterp/sandbox/hapi.py
LAUNCHER = ROOT / "docker" / "hapi"
# Loaded in this order (dependencies first); the IG's pinned dependency versions are not on the npm
# registry, so the nearest published ones are used (see docker/README.md).
PACKAGES = (
    ("hl7.terminology.r4", "7.0.1"),
    ("hl7.fhir.uv.extensions.r4", "5.3.0-ballot-tc1"),
    ("hl7.fhir.uv.genomics-reporting", "3.0.0"),
)
READY_LINE = "labinterp HAPI ready"
DATABASES = ("mem", "file", "postgres")
PG_DIALECT = "ca.uhn.fhir.jpa.model.dialect.HapiFhirPostgresDialect"
_STARTED: dict[int, subprocess.Popen[bytes]] = {}  # processes this process started, reaped by down()


class SandboxError(LabinterpError):
    pass


@dataclass(frozen=True)
class Sandbox:
    workdir: Path
    port: int = 8090
    database: str = "mem"  # "mem" (tests), "file" (demo: survives restarts) or "postgres" (a real PostgreSQL)
    heap: str = "2g"
    pg_port: int = 5433  # database="postgres": the PostgreSQL this sandbox starts (and stops in down())
    pg_database: str = "hapi"
    # database="postgres" on a PostgreSQL someone else runs (a test fixture): used, never started nor stopped here
    postgres: Postgres | None = field(default=None, compare=False)
    env: dict[str, str] = field(default_factory=dict, compare=False)  # extra LABINTERP_HAPI_* settings for the launcher

    def __post_init__(self) -> None:
        if self.database not in DATABASES:
            raise SandboxError(f"unknown sandbox database {self.database!r} (one of {', '.join(DATABASES)})")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"

    @property
    def pidfile(self) -> Path:
        return self.workdir / f"hapi-{self.port}.pid"

    @property
    def logfile(self) -> Path:
        return self.workdir / f"hapi-{self.port}.log"

    @property
    def pg_marker(self) -> Path:
        """Names the port of the PostgreSQL that up() started for this HAPI, so that down() stops it too."""
        return self.workdir / f"hapi-{self.port}.postgres"

    def _postgres_env(self) -> dict[str, str]:
        pg = self.postgres
        if pg is None:
            pg = Postgres(self.workdir, port=self.pg_port)
            pg.start()
            self.pg_marker.write_text(str(pg.port))
        pg.create_database(self.pg_database)
        url, user, password = pg.jdbc(self.pg_database)
        return {
            "LABINTERP_HAPI_DB": url,
            "LABINTERP_HAPI_DB_USER": user,
            "LABINTERP_HAPI_DB_PASSWORD": password,
            "LABINTERP_HAPI_DB_DRIVER": "org.postgresql.Driver",
            "LABINTERP_HAPI_DB_DIALECT": PG_DIALECT,
        }

    # --- build -------------------------------------------------------------------------------

    def jar(self) -> Path:
        return LAUNCHER / "target" / "labinterp-hapi.jar"

    def build(self, force: bool = False) -> None:
        """mvn package, unless the jar is newer than every source of the launcher."""
        sources = [LAUNCHER / "pom.xml", *(LAUNCHER / "src").rglob("*")]
        jar = self.jar()
        if not force and jar.exists() and all(s.stat().st_mtime <= jar.stat().st_mtime for s in sources if s.is_file()):
            return
        if not shutil.which("mvn") or not shutil.which("java"):
            raise SandboxError("the sandbox needs java (17+) and mvn on PATH")
        done = subprocess.run(
            ["mvn", "-B", "-q", "package", "-DskipTests"], cwd=LAUNCHER, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
            raise SandboxError("building docker/hapi failed: " + " | ".join(tail))

    def packages(self) -> list[tuple[str, str, Path]]:
        """The IG packages as local .tgz files, fetched with `npm pack` once."""
        target = self.workdir / "packages"
        target.mkdir(parents=True, exist_ok=True)
        out = []
        for name, version in PACKAGES:
            path = target / f"{name}-{version}.tgz"
            if not path.exists():
                if not shutil.which("npm"):
                    raise SandboxError("the sandbox needs npm to fetch the Genomics Reporting IG packages")
                done = subprocess.run(
                    ["npm", "pack", f"{name}@{version}", "--silent"], cwd=target, capture_output=True, text=True, check=False
                )
                if done.returncode != 0 or not path.exists():
                    raise SandboxError(f"npm pack {name}@{version} failed: {done.stderr.strip()[-300:]}")
            out.append((name, version, path))
        return out

    # --- run ---------------------------------------------------------------------------------

    def running_pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def answers(self, timeout: float = 5.0) -> bool:
        try:
            return (
                requests.get(
                    f"{self.base_url}/metadata", timeout=timeout, headers={"Accept": "application/fhir+json"}
                ).status_code
                == 200
            )
        except requests.RequestException:
            return False

    def up(self, timeout: float = 300.0, with_packages: bool = True) -> str:
        """Build if needed, start HAPI in the background, and wait until it answers with packages installed."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.running_pid() and self.answers():
            return self.base_url
        self.build()
        env = dict(os.environ)
        env["LABINTERP_HAPI_PORT"] = str(self.port)
        if self.database == "postgres":
            env.update(self._postgres_env())
        elif self.database == "file":
            env["LABINTERP_HAPI_DB"] = f"jdbc:h2:file:{(self.workdir / 'h2' / 'labinterp').resolve()}"
        else:
            env["LABINTERP_HAPI_DB"] = f"jdbc:h2:mem:labinterp{self.port};DB_CLOSE_DELAY=-1"
        env.update(self.env)
        if with_packages:
            env["LABINTERP_HAPI_PACKAGES"] = ",".join(f"{n}@{v}={p.resolve()}" for n, v, p in self.packages())
        classpath = f"{self.jar()}{os.pathsep}{LAUNCHER / 'target' / 'lib' / '*'}"
        with self.logfile.open("w") as log:  # the child keeps its own copy of the descriptor
            proc = subprocess.Popen(
                ["java", f"-Xmx{self.heap}", "-cp", classpath, "org.labinterp.hapi.Launcher"],
                cwd=self.workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _STARTED[proc.pid] = proc
        self.pidfile.write_text(str(proc.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                _STARTED.pop(proc.pid, None)
                self.pidfile.unlink(missing_ok=True)
                self._down_postgres()
                raise SandboxError(f"HAPI exited with {proc.returncode} while starting; see {self.logfile}")
            # the first capability statement takes a while (18 s on PostgreSQL, on 2 busy cores): an impatient client
            # would abort it, and HAPI would start it again on the next try
            if READY_LINE in self.logfile.read_text(errors="replace") and self.answers(timeout=60.0):
                return self.base_url
            time.sleep(1.0)
        self.down()
        raise SandboxError(f"HAPI did not answer within {timeout:.0f} s; see {self.logfile}")

    def down(self, timeout: float = 30.0) -> bool:
        """Stop HAPI, then the PostgreSQL that up() started for it (if any). True if HAPI was running."""
        try:
            return self._down_hapi(timeout)
        finally:
            self._down_postgres()

    def _down_postgres(self) -> None:
        try:
            pg_port = int(self.pg_marker.read_text().strip())
        except (OSError, ValueError):
            return
        Postgres(self.workdir, port=pg_port).stop()
        self.pg_marker.unlink(missing_ok=True)

    def _down_hapi(self, timeout: float) -> bool:
        pid = self.running_pid()
        if pid is None:
            self.pidfile.unlink(missing_ok=True)
            return False
        proc = _STARTED.pop(pid, None)
        os.killpg(pid, signal.SIGTERM)
        if proc is not None:  # our own child: wait on it (a terminated child stays a zombie until reaped)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(pid, signal.SIGKILL)
                proc.wait(timeout)
        else:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except OSError:
                    break
                time.sleep(0.3)
            else:
                os.killpg(pid, signal.SIGKILL)
        self.pidfile.unlink(missing_ok=True)
        return True


def as_transaction(bundle: dict[str, Any], base_url: str) -> dict[str, Any]:
    """A collection (or searchset) Bundle as a transaction that PUTs each resource at its own id, so a
    reload replaces rather than duplicates. Entries without an id are POSTed."""
    entries = []
    for e in bundle.get("entry", []) or []:
        r = dict(e["resource"])
        meta = r.pop("meta", None)
        if meta and meta.get("profile"):
            r["meta"] = {"profile": meta["profile"]}
        if r.get("id"):
            url = f"{r['resourceType']}/{r['id']}"
            entries.append({"fullUrl": f"{base_url}/{url}", "resource": r, "request": {"method": "PUT", "url": url}})
        else:
            entries.append(
                {
                    "fullUrl": e.get("fullUrl") or f"urn:uuid:{len(entries)}",
                    "resource": r,
                    "request": {"method": "POST", "url": r["resourceType"]},
                }
            )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def load_file(
    path: Path, base_url: str, session: requests.Session | None = None, chunk: int = 1000, timeout: float = 300.0
) -> int:
    """Load a Bundle or NDJSON file into the server, in transactions of about `chunk` resources that never
    split a patient's resources (each Patient starts a new group). Returns the number of resources.

    A transaction or batch Bundle (an EHR export: urn:uuid fullUrls, POST entries) is sent as it is. Request
    validation checks every resource of it; the first Bundle after start-up also warms the validator up (about
    2 minutes for a 300-resource US Core record on 2 busy cores, 15 s after that): `timeout` is per request."""
    from labinterp.cohort.io import read_cohort_file
    from labinterp.fhir.client import FhirClient

    data = read_cohort_file(path)
    client = FhirClient(base_url, session=session, timeout=(5.0, timeout))
    if data.get("type") in ("transaction", "batch"):
        client.transaction(data) if data["type"] == "transaction" else client.batch(data)
        return len(data.get("entry", []))
    entries = data.get("entry", []) or []
    group: list[dict[str, Any]] = []
    for e in entries:
        if len(group) >= chunk and (e.get("resource") or {}).get("resourceType") == "Patient":
            client.transaction(as_transaction({"entry": group}, base_url))
            group = []
        group.append(e)
    if group:
        client.transaction(as_transaction({"entry": group}, base_url))
    return len(entries)
