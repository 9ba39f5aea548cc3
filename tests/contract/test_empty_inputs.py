"""Every command meets empty data with one clear line and a documented exit code, never a traceback
(issue 8 point 7): an empty Bundle, a Bundle with no trough, an empty server."""

from __future__ import annotations

import json
from pathlib import Path

import responses
from click.testing import CliRunner

from labinterp.cli.main import cli
from tests.conftest import ROOT

BASE = "http://fhir.test/fhir"
EMPTY = {"resourceType": "Bundle", "type": "collection", "entry": []}


def _empty(tmp_path: Path) -> Path:
    path = tmp_path / "empty.json"
    path.write_text(json.dumps(EMPTY))
    return path


def test_interpret_an_empty_bundle(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    r = CliRunner().invoke(cli, ["interpret", "--bundle", str(_empty(tmp_path)), "--out", str(out)])
    assert (
        r.exit_code == 0
        and "no Patient and no formulation batch in the input: nothing to interpret, nothing to write" in r.stderr
    )
    assert json.loads(out.read_text()) == {"resourceType": "Bundle", "type": "transaction"}  # no empty array (FHIR JSON)


def test_cohort_on_an_empty_bundle_and_on_one_without_troughs(tmp_path: Path) -> None:
    for source in (_empty(tmp_path), ROOT / "tests" / "data" / "patients" / "p08.json"):
        out = tmp_path / "stats.json"
        r = CliRunner().invoke(cli, ["cohort", "--input", str(source), "--out", str(out)])
        assert r.exit_code == 0 and "nothing to analyse: no patient with a linezolid trough" in r.stderr, r.output
        assert "Traceback" not in r.output and not out.exists()


@responses.activate
def test_cohort_on_an_empty_server(tmp_path: Path) -> None:
    responses.get(f"{BASE}/Patient", json={"resourceType": "Bundle", "type": "searchset", "entry": []})
    out = tmp_path / "stats.json"
    r = CliRunner().invoke(cli, ["cohort", "--fhir-url", BASE, "--out", str(out)])
    assert r.exit_code == 0 and "nothing to analyse" in r.stderr and not out.exists()


def test_check_mappings_and_help_never_fail() -> None:
    assert CliRunner().invoke(cli, ["check-mappings"]).exit_code == 0
    assert CliRunner().invoke(cli, ["--help"]).exit_code == 0
