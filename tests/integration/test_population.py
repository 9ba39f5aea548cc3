"""Population runs against a real HAPI FHIR JPA server (request validation on): `labinterp interpret --group` writes
every patient's reports once in a fraction of a request per patient, a replay writes nothing, PUT upserts land at
deterministic ids, an interrupted run resumes, and the examples' patients (odd data included) go through too."""

from __future__ import annotations

import json
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from labinterp.cli.main import cli
from labinterp.fhir.client import FhirClient
from labinterp.sandbox.hapi import load_file
from scripts.bench import synthetic
from tests.conftest import SITE

pytestmark = pytest.mark.integration

SERIES = "urn:labinterp:series"
N = 80


def load_group(base: str, prefix: str, n: int) -> str:
    """n synthetic patients whose ids start with the prefix, and a Group of them; a HAPI kept between runs (the
    developer's LABINTERP_TEST_FHIR_URL) gets new patients each time."""
    with tempfile.NamedTemporaryFile("w", suffix=".json") as fh:
        json.dump(synthetic(n, 23, prefix), fh)
        fh.flush()
        load_file(Path(fh.name), base)
    gid = f"group-{prefix}"
    members = [{"entity": {"reference": f"Patient/{prefix}{i}"}} for i in range(n)]
    body = {"resourceType": "Group", "id": gid, "type": "person", "actual": True, "member": members}
    requests.put(
        f"{base}/Group/{gid}", json=body, headers={"Content-Type": "application/fhir+json"}, timeout=120
    ).raise_for_status()
    return gid


def interpret(base: str, tmp: Path, *args: str) -> tuple[int, dict[str, Any]]:
    env = {"LABINTERP_WORKDIR": str(tmp), "LABINTERP_MAPPINGS_DIR": str(SITE)}
    out = tmp / "summary.json"
    result = CliRunner().invoke(
        cli, ["interpret", "--fhir-url", base, "--now", "2026-01-20T12:00:00Z", "--out", str(out), *args], env=env
    )
    return result.exit_code, json.loads(out.read_text()) if out.exists() else {"output": result.output}


def series(base: str, prefix: str) -> Counter[str]:
    client = FhirClient(base, max_pages=10_000)
    counts: Counter[str] = Counter()
    for rtype in ("DiagnosticReport", "RiskAssessment", "Observation"):
        for r in client.search(rtype, [("identifier", f"{SERIES}|"), ("_count", 1000), ("_elements", "identifier,subject")]):
            if r.get("subject", {}).get("reference", "").startswith(f"Patient/{prefix}"):
                counts.update(i["value"] for i in r["identifier"] if i["system"] == SERIES)
    return counts


def test_a_group_run_writes_every_report_once_and_a_replay_writes_nothing(fhir_url: str, tmp_path: Path) -> None:
    prefix = f"pop{uuid.uuid4().hex[:6]}x"
    gid = load_group(fhir_url, prefix, N)
    code, first = interpret(fhir_url, tmp_path, "--group", gid, "--transaction-size", "40")
    assert code == 0, first
    assert first["patients"] == N and not first["failed"] and first["created"] > 4 * N
    counts = series(fhir_url, prefix)
    assert sum(counts.values()) == first["created"] and set(counts.values()) == {1}
    assert first["requests_per_patient"] <= 0.1, (
        first
    )  # the Group, the Device (found or written), one batch read, two transactions

    code, replay = interpret(fhir_url, tmp_path, "--group", gid)
    assert code == 0 and replay["created"] == replay["amended"] == 0 and replay["unchanged"] == first["created"]
    assert replay["requests_per_patient"] <= 0.05, replay
    assert series(fhir_url, prefix) == counts


def test_put_upserts_land_at_deterministic_ids(fhir_url: str, tmp_path: Path) -> None:
    prefix = f"put{uuid.uuid4().hex[:6]}x"
    gid = load_group(fhir_url, prefix, 12)
    code, first = interpret(fhir_url, tmp_path, "--group", gid, "--write", "put")
    assert code == 0 and first["created"] > 0, first
    reports = FhirClient(fhir_url).search("DiagnosticReport", [("subject", f"Patient/{prefix}3"), ("_count", 50)])
    assert reports and all(r["id"].startswith("labinterp-") for r in reports)
    code, again = interpret(fhir_url, tmp_path, "--group", gid, "--write", "put")
    assert code == 0 and again["created"] == again["amended"] == 0
    code, conditional = interpret(fhir_url, tmp_path, "--group", gid)  # the other mode finds the same series
    assert code == 0 and conditional["created"] == 0
    assert set(series(fhir_url, prefix).values()) == {1}


def test_the_examples_go_through_a_population_run(loaded: str, tmp_path: Path) -> None:
    """The embedded examples (odd units, unusable results, genotypes only, ...) as one Group: every patient is
    interpreted, what cannot be used is left out and counted, and the reports match the per-patient path's."""
    client = FhirClient(loaded)
    ids = [p["id"] for p in client.search("Patient", [("_id", ",".join(f"p{i:02d}" for i in range(1, 20))), ("_count", 50)])]
    members = [{"entity": {"reference": f"Patient/{pid}"}} for pid in ids]
    body = {"resourceType": "Group", "id": "examples", "type": "person", "actual": True, "member": members}
    requests.put(
        f"{loaded}/Group/examples", json=body, headers={"Content-Type": "application/fhir+json"}, timeout=60
    ).raise_for_status()
    code, out = interpret(loaded, tmp_path, "--group", "examples")
    assert code == 0, out
    assert out["patients"] == len(ids) and not out["failed"]


def test_a_run_racing_the_per_patient_path_writes_every_report_once(fhir_url: str, tmp_path: Path) -> None:
    """A chunk job takes no per-patient lock (docs/scaling.md): while a population run writes a Group, the per-patient
    path interprets the same patients at the same time on two threads. Both plan the same content identifiers; HAPI's
    conditional creates stay unique under concurrency and the loser of a race re-reads and plans again, so every
    report series exists once, nobody fails, and a replay writes nothing."""
    from datetime import UTC, datetime

    from labinterp.knowledge import load_knowledge
    from labinterp.pipeline import interpret_patient

    n = 24
    prefix = f"race{uuid.uuid4().hex[:6]}x"
    gid = load_group(fhir_url, prefix, n)
    k = load_knowledge(SITE)
    now = datetime(2026, 1, 20, 12, tzinfo=UTC)
    errors: list[BaseException] = []
    calls: list[tuple[float, float]] = []  # when each per-patient interpretation ran

    def per_patient(order: list[int]) -> None:
        client = FhirClient(fhir_url)
        for i in order:
            started = time.monotonic()
            try:
                interpret_patient(client, f"{prefix}{i}", k, now)
            except BaseException as exc:  # collected and asserted below
                errors.append(exc)
            calls.append((started, time.monotonic()))

    threads = [
        threading.Thread(target=per_patient, args=(list(range(n)),)),
        threading.Thread(target=per_patient, args=(list(reversed(range(n))),)),
    ]
    for t in threads:
        t.start()
    run_started = time.monotonic()
    code, run = interpret(fhir_url, tmp_path, "--group", gid, "--chunk", "6", "--transaction-size", "3", "--workers", "2")
    run_ended = time.monotonic()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors
    assert sum(1 for a, b in calls if a < run_ended and b > run_started) >= 4  # they did run at the same time
    assert code == 0 and run["patients"] == n and not run["failed"], run
    counts = series(fhir_url, prefix)
    assert counts and set(counts.values()) == {1}, [s for s, c in counts.items() if c > 1]
    assert len({s.split(":")[0] for s in counts}) >= 4  # every kind of report, not one
    code, replay = interpret(fhir_url, tmp_path, "--group", gid)
    assert code == 0 and replay["created"] == replay["amended"] == 0, replay
