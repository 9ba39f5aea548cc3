"""The sandbox's PostgreSQL (labinterp.sandbox.postgres): a real server from Debian's packages, run by a
non-root user, on loopback only, with passwords; idempotent start and database creation."""

from __future__ import annotations

import os
import pwd
import subprocess
from pathlib import Path

import pytest
import requests

from labinterp.sandbox.postgres import DB_USER, OS_USER, Postgres, PostgresError

pytestmark = pytest.mark.integration


def psql_url(url: str, sql: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["psql", "-X", "-tAq", url, "-c", sql], capture_output=True, text=True, check=False, timeout=30)


def test_runs_as_its_own_user_on_loopback(postgres: Postgres) -> None:
    assert postgres.running() and postgres.accepts()
    pid = int((postgres.datadir / "postmaster.pid").read_text().splitlines()[0])
    owner = os.stat(f"/proc/{pid}").st_uid
    assert owner != 0
    if os.geteuid() == 0:
        assert pwd.getpwuid(owner).pw_name == OS_USER
        assert pwd.getpwuid(os.stat(postgres.datadir).st_uid).pw_name == OS_USER
    assert os.stat(postgres.passfile).st_mode & 0o777 == 0o600
    assert postgres.psql("SHOW listen_addresses") == "127.0.0.1"
    assert postgres.psql("SHOW port") == str(postgres.port)
    assert postgres.psql("SHOW password_encryption") == "scram-sha-256"


def test_database_url_and_password_are_required(postgres: Postgres) -> None:
    url = postgres.create_database("labinterp_test")
    assert postgres.create_database("labinterp_test") == url  # idempotent
    assert url == f"postgresql://{DB_USER}:{postgres.password()}@127.0.0.1:{postgres.port}/labinterp_test"
    done = psql_url(url, "CREATE TABLE IF NOT EXISTS t (x int); INSERT INTO t VALUES (1); SELECT count(*) > 0 FROM t")
    assert done.returncode == 0 and done.stdout.strip() == "t", done.stderr
    wrong = url.replace(postgres.password(), "not-the-password")
    refused = psql_url(wrong, "SELECT 1")
    assert refused.returncode != 0 and "password authentication failed" in refused.stderr
    jdbc, user, password = postgres.jdbc("labinterp_test")
    assert jdbc == f"jdbc:postgresql://127.0.0.1:{postgres.port}/labinterp_test"
    assert (user, password) == (DB_USER, postgres.password())
    with pytest.raises(PostgresError):
        postgres.create_database('x"; DROP DATABASE postgres; --')


def test_start_is_idempotent_and_stop_restart_keeps_data(postgres: Postgres, tmp_path: Path) -> None:
    postgres.start()  # already running: nothing happens
    url = postgres.create_database("labinterp_keep")
    assert psql_url(url, "CREATE TABLE IF NOT EXISTS kept (x int); INSERT INTO kept VALUES (7)").returncode == 0
    assert postgres.stop() and not postgres.running()
    assert postgres.stop() is False
    postgres.start()
    assert postgres.url("labinterp_keep") == url  # the same password after a restart
    assert psql_url(url, "SELECT max(x) FROM kept").stdout.strip() == "7"


def test_hapi_on_postgres_takes_the_examples_and_answers_searches(hapi_pg: str, postgres: Postgres) -> None:
    from labinterp.fhir.client import FhirClient
    from labinterp.sandbox.hapi import load_file
    from tests.integration.conftest import EXAMPLES

    n = load_file(EXAMPLES, hapi_pg)
    assert n > 50
    fhir = FhirClient(hapi_pg)
    patients = fhir.search("Patient?_count=1000")
    assert {p["id"] for p in patients} >= {"p01", "p14"}
    observations = fhir.search("Observation?subject=Patient/p01&_count=1000")
    assert observations and all(o["subject"]["reference"].endswith("Patient/p01") for o in observations)
    # a page of patients with their observations, past HAPI's default cap of 50 per page
    page = requests.get(
        f"{hapi_pg}/Patient?_count=1000&_revinclude=Observation:subject", headers={"Accept": "application/fhir+json"}, timeout=60
    ).json()
    kinds = [e["resource"]["resourceType"] for e in page["entry"]]
    assert kinds.count("Patient") == len(patients) and "Observation" in kinds
    everything = requests.get(
        f"{hapi_pg}/Observation?_count=1000", headers={"Accept": "application/fhir+json"}, timeout=60
    ).json()
    assert len(everything["entry"]) > 50  # one page: the launcher's maximum page size is 2000 (HAPI's own: 50)
    assert not [link for link in everything.get("link", []) if link["relation"] == "next"]
    # the data are in PostgreSQL, not in an H2 somewhere
    stored = postgres.psql("SELECT count(*) FROM hfj_resource WHERE res_type = 'Patient' AND res_deleted_at IS NULL", db="hapi")
    assert int(stored) == len(patients)
    load_file(EXAMPLES, hapi_pg)  # a reload replaces (PUT), never duplicates
    assert len(fhir.search("Patient?_count=1000")) == len(patients)
