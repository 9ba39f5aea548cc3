"""Formulation QC against a real HAPI FHIR JPA server (request validation on): the example microsphere batches are
loaded, `labinterp interpret --fhir-url --batch ID` writes each batch's QC report once (HAPI accepts it), a replay
writes nothing, a changed result amends the report, and the report is found from the batch's samples."""

from __future__ import annotations

import json
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from labinterp.cli.main import cli
from labinterp.fhir.client import FhirClient
from labinterp.pipeline import batch_series
from labinterp.sandbox.hapi import load_file
from tests.conftest import SITE

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "service" / "labinterp" / "examples" / "batches.json"
SERIES = "urn:labinterp:series"
FHIR = {"Content-Type": "application/fhir+json"}


def renamed(node: Any, prefix: str) -> Any:
    """The example Bundle with every resource id (and every reference to one) prefixed: a HAPI kept between runs gets
    new batches each time."""
    if isinstance(node, list):
        return [renamed(x, prefix) for x in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "id" and "resourceType" in node:
            out[key] = f"{prefix}{value}"
        elif key == "reference" and isinstance(value, str) and value.count("/") == 1:
            rtype, rid = value.split("/")
            out[key] = f"{rtype}/{prefix}{rid}"
        elif key == "fullUrl":
            continue  # the ids carry the references
        else:
            out[key] = renamed(value, prefix)
    return out


@pytest.fixture(scope="module")
def batches(fhir_url: str) -> dict[str, Any]:
    prefix = f"q{uuid.uuid4().hex[:6]}-"
    data = renamed(json.loads(EXAMPLES.read_text()), prefix)
    with tempfile.NamedTemporaryFile("w", suffix=".json") as fh:
        json.dump(data, fh)
        fh.flush()
        load_file(Path(fh.name), fhir_url)
    return data


def run(base: str, tmp: Path, batch: str, *more: str) -> tuple[int, str, dict[str, Any]]:
    env = {"LABINTERP_WORKDIR": str(tmp), "LABINTERP_MAPPINGS_DIR": str(SITE)}
    out = tmp / f"{batch}.json"
    result = CliRunner().invoke(cli, ["interpret", "--fhir-url", base, "--batch", batch, "--out", str(out), *more], env=env)
    return result.exit_code, result.output, json.loads(out.read_text()) if out.exists() else {}


def reports(base: str, batch: str) -> list[dict[str, Any]]:
    return FhirClient(base).search("DiagnosticReport", [("identifier", f"{SERIES}|{batch_series(batch)}")])


def test_each_batch_gets_one_qc_report_hapi_accepts_and_a_replay_writes_nothing(
    fhir_url: str, batches: dict[str, Any], tmp_path: Path
) -> None:
    substances = [e["resource"]["id"] for e in batches["entry"] if e["resource"]["resourceType"] == "Substance"]
    assert len(substances) >= 3
    conclusions = set()
    for sid in substances:
        code, output, _ = run(fhir_url, tmp_path, sid)
        assert code == 0, output
        found = reports(fhir_url, sid)
        assert len(found) == 1, sid
        dr = found[0]
        assert dr["status"] in ("final", "preliminary")
        assert "subject" not in dr
        assert dr["specimen"] and all(s["reference"].startswith("Specimen/") for s in dr["specimen"])
        assert {f["contentType"] for f in dr["presentedForm"]} == {"text/html", "application/pdf"}
        conclusions.add(dr["conclusionCode"][0]["coding"][0]["code"])
        prov = requests.get(f"{fhir_url}/Provenance", params={"target": f"DiagnosticReport/{dr['id']}"}, timeout=60).json()
        assert prov.get("total", len(prov.get("entry", []))) >= 1
        # the replay: nothing new
        code, output, _ = run(fhir_url, tmp_path, sid)
        assert code == 0 and "created -" in output and "amended -" in output, output
        assert len(reports(fhir_url, sid)) == 1
    assert len(conclusions) >= 3  # the examples hold a released, a not released and an incomplete batch


def test_a_changed_result_amends_the_batch_report(fhir_url: str, batches: dict[str, Any], tmp_path: Path) -> None:
    sid = next(e["resource"]["id"] for e in batches["entry"] if e["resource"]["resourceType"] == "Substance")
    run(fhir_url, tmp_path, sid)
    before = reports(fhir_url, sid)[0]
    obs = next(
        e["resource"]
        for e in batches["entry"]
        if e["resource"]["resourceType"] == "Observation"
        and "valueQuantity" in e["resource"]
        and (e["resource"].get("focus") or [{}])[0].get("reference") == f"Substance/{sid}"
    )
    changed = dict(obs, valueQuantity=dict(obs["valueQuantity"], value=obs["valueQuantity"]["value"] * 0.5))
    requests.put(f"{fhir_url}/Observation/{obs['id']}", json=changed, headers=FHIR, timeout=60).raise_for_status()
    code, output, _ = run(fhir_url, tmp_path, sid)
    assert code == 0 and "amended ['formulation-qc']" in output, output
    after = reports(fhir_url, sid)
    assert len(after) == 1 and after[0]["id"] == before["id"] and after[0]["status"] == "amended"


def test_an_unknown_batch_is_a_clear_error(fhir_url: str, tmp_path: Path) -> None:
    code, output, _ = run(fhir_url, tmp_path, f"nope-{uuid.uuid4().hex[:8]}")
    assert code == 2 and "no such batch" in output
