"""Formulation batches on a FHIR server (an in-memory fake): one read and one write per batch, a replay writes
nothing, a changed result amends the batch's report, an unknown batch is a clear error, the dashboard's list of
recent batches, and the API's `POST /Substance/<id>/$interpret`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import responses
from click.testing import CliRunner

from labinterp.cli.main import cli
from labinterp.errors import FhirError
from labinterp.fhir.client import FhirClient
from labinterp.knowledge import Knowledge, load_knowledge
from labinterp.pipeline import batch_series, interpret_batch_live, recent_batches
from labinterp.server.app import create_app
from tests.conftest import SITE
from tests.fakefhir import BASE, FakeFhir

EXAMPLES = Path(__file__).resolve().parents[2] / "service" / "labinterp" / "examples" / "batches.json"
NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
RELEASED = "kms-01-2608a"


@pytest.fixture(scope="module")
def k() -> Knowledge:
    return load_knowledge(SITE)


def resources() -> list[dict[str, Any]]:
    return [e["resource"] for e in json.loads(EXAMPLES.read_text())["entry"]]


@pytest.fixture
def fake() -> Any:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        server = FakeFhir(rsps)
        server.load(resources())
        yield server


def qc_reports(fake: FakeFhir) -> list[dict[str, Any]]:
    return [r for r in fake.of_type("DiagnosticReport") if "specimen" in r]


def test_a_batch_is_one_read_and_one_write_and_a_replay_writes_nothing(fake: FakeFhir, k: Knowledge) -> None:
    client = FhirClient(BASE)
    first = interpret_batch_live(client, RELEASED, k, NOW)
    assert first.plan.created == ["formulation-qc"] and first.requests == 2
    assert first.finding is not None and first.finding.conclusion == "released"
    stored = qc_reports(fake)
    assert len(stored) == 1 and len(fake.of_type("Provenance")) == 1
    assert any(i["value"] == batch_series(RELEASED) for i in stored[0]["identifier"])
    again = interpret_batch_live(client, RELEASED, k, NOW)
    assert again.plan.created == [] and again.plan.unchanged == ["formulation-qc"] and again.requests == 1
    assert len(qc_reports(fake)) == 1


def test_a_changed_result_amends_the_report(fake: FakeFhir, k: Knowledge) -> None:
    client = FhirClient(BASE)
    interpret_batch_live(client, RELEASED, k, NOW)
    ee = next(
        r
        for r in fake.of_type("Observation")
        if (r.get("focus") or [{}])[0].get("reference") == f"Substance/{RELEASED}" and "valueQuantity" in r
    )
    ee["valueQuantity"]["value"] *= 0.5
    ee["meta"]["versionId"] = "2"
    result = interpret_batch_live(client, RELEASED, k, NOW)
    assert result.plan.amended == ["formulation-qc"]
    stored = qc_reports(fake)
    assert len(stored) == 1 and stored[0]["status"] == "amended"


def test_a_dry_run_writes_nothing(fake: FakeFhir, k: Knowledge) -> None:
    result = interpret_batch_live(FhirClient(BASE), RELEASED, k, NOW, dry_run=True)
    assert result.plan.writes and result.response is None and not qc_reports(fake)


def test_an_unknown_batch_is_an_error_naming_it(fake: FakeFhir, k: Knowledge) -> None:
    with pytest.raises(FhirError, match="no such batch"):
        interpret_batch_live(FhirClient(BASE), "nope", k, NOW)


def test_recent_batches_for_the_dashboard(fake: FakeFhir, k: Knowledge) -> None:
    found = recent_batches(FhirClient(BASE), k, NOW, 10)
    assert {f.record.batch.id for f in found} == {r["id"] for r in resources() if r["resourceType"] == "Substance"}
    assert {f.conclusion for f in found} == {"released", "not released", "incomplete"}
    assert not qc_reports(fake)  # the dashboard reads, never writes


def test_the_cli_interprets_a_batch_on_a_server(fake: FakeFhir, tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    env = {"LABINTERP_MAPPINGS_DIR": str(SITE), "LABINTERP_WORKDIR": str(tmp_path)}
    result = CliRunner().invoke(cli, ["interpret", "--fhir-url", BASE, "--batch", RELEASED, "--out", str(out)], env=env)
    assert result.exit_code == 0, result.output
    assert "-> released" in result.output and "created ['formulation-qc']" in result.output
    assert json.loads(out.read_text())["type"] == "transaction-response"
    both = CliRunner().invoke(cli, ["interpret", "--fhir-url", BASE, "--batch", RELEASED, "--patient", "p1"], env=env)
    assert both.exit_code == 2 and "--batch" in both.output


def test_the_api_interprets_a_batch(fake: FakeFhir, tmp_path: Path) -> None:
    app = create_app({"FHIR_BASE_URL": BASE, "MAPPINGS_DIR": str(SITE), "QUEUE_PATH": str(tmp_path / "q.db"), "WORKER": False})
    client = app.test_client()
    r = client.post(f"/Substance/{RELEASED}/$interpret?dry-run")
    assert r.status_code == 200 and r.headers["X-Labinterp-Conclusion"] == "released"
    assert r.headers["X-Labinterp-Created"] == "formulation-qc" and not qc_reports(fake)
    r = client.post("/Substance/kms-01-2609b/$interpret")
    assert r.status_code == 200 and r.headers["X-Labinterp-Conclusion"] == "not released"
    assert len(qc_reports(fake)) == 1
    assert client.post("/Substance/bad%20id/$interpret").status_code == 400
    assert client.post("/Substance/nope/$interpret").status_code == 404
