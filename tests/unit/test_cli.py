"""The command line (SPEC section 8): output to a file or standard output, --now, exit 2 with one line
on standard error and no output file for input that cannot be used."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from service.cli import cli
from tests.builders import MG, P
from tests.conftest import SITE

EXAMPLE = Path(__file__).resolve().parents[1] / "data" / "patients" / "p01.json"


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), env=env)


def test_interpret_to_file(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    r = invoke("interpret", "--bundle", str(EXAMPLE), "--out", str(out), "--now", "2026-01-20T12:00:00Z", "--mappings", str(SITE))
    assert r.exit_code == 0, r.output
    bundle = json.loads(out.read_text())
    assert bundle["type"] == "transaction" and len(bundle["entry"]) == 7
    assert all(e["resource"].get("issued", "2026-01-20T12:00:00Z") == "2026-01-20T12:00:00Z" for e in bundle["entry"])


def test_interpret_to_stdout_with_summary_on_stderr(tmp_path: Path) -> None:
    r = invoke(
        "interpret", "--bundle", str(EXAMPLE), "--now", "2026-01-20", "--summary", env={"LABINTERP_MAPPINGS_DIR": str(SITE)}
    )
    assert r.exit_code == 0
    assert json.loads(r.stdout)["resourceType"] == "Bundle"
    assert "linezolid trough 1.5 mg/L -> below [L]" in r.stderr


def test_without_the_site_code_linezolid_is_matched_by_name() -> None:
    r = invoke("interpret", "--bundle", str(EXAMPLE), "--now", "2026-01-20T12:00:00Z")
    assert r.exit_code == 0 and "recognized by its name, not by a configured code" in r.stdout


def write(tmp_path: Path, data: object | str) -> Path:
    path = tmp_path / "in.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def bad_unit() -> dict:
    p = P("c1", "male", "1960-01-01", "")
    p.lab(MG, 1.0, "mg/furlong", "2026-01-15T08:00:00+01:00")
    return p.bundle()


def bad_genotype() -> dict:
    p = P("c2", "male", "1960-01-01", "")
    p.plain_genotype("CYP3A5 rs776746", "A/Q")
    return p.bundle()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ('{"resourceType": "Bundle", ', "not JSON: Expecting property name enclosed in double quotes at line 1 column 28"),
        ({"resourceType": "Patient"}, "expected resourceType 'Bundle', found 'Patient'"),
        ({"resourceType": "Bundle", "type": "message"}, "Bundle.type: 'message' is not one of"),
        (bad_unit(), "Observation/c1-lab1 valueQuantity.unit: unknown unit 'mg/furlong' for magnesium"),
        (bad_genotype(), "Observation/c2-pg1 value: cannot read genotype 'A/Q'"),
    ],
)
def test_bad_input_exit_2_one_line_no_output(tmp_path: Path, data: object, message: str) -> None:
    out = tmp_path / "out.json"
    r = invoke("interpret", "--bundle", str(write(tmp_path, data)), "--out", str(out))
    assert r.exit_code == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("labinterp: error: ") and message in r.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == [tmp_path / "in.json"]


def test_bad_now_and_missing_file(tmp_path: Path) -> None:
    r = invoke("interpret", "--bundle", str(EXAMPLE), "--now", "tomorrow")
    assert r.exit_code == 2 and "--now: 'tomorrow' is not a FHIR date" in r.stderr
    r = invoke("interpret", "--bundle", str(tmp_path / "nope.json"))
    assert r.exit_code == 2 and "nope.json: no such file" in r.stderr


def test_lenient_writes_and_lists_what_was_left_out(tmp_path: Path) -> None:
    data = bad_unit()
    p = P("c1", "male", "1960-01-01", "")
    data["entry"].append({"resource": p.lab(MG, 1.3, "mg/dL", "2026-01-15T09:00:00+01:00") | {"id": "c1-good"}})
    out = tmp_path / "out.json"
    r = invoke("interpret", "--bundle", str(write(tmp_path, data)), "--out", str(out), "--lenient")
    assert r.exit_code == 0, r.stderr
    assert "mg/furlong" in out.read_text()


def test_check_mappings_and_help(tmp_path: Path) -> None:
    r = invoke("check-mappings")
    assert r.exit_code == 0 and "mappings OK" in r.stdout
    (tmp_path / "linezolid.toml").write_text("[assay]\nloq_mg_per_l = 'x'\n")
    r = invoke("check-mappings", "--mappings", str(tmp_path))
    assert r.exit_code == 2 and "linezolid.toml: assay.loq_mg_per_l" in r.stderr
    r = invoke("--help")
    assert all(cmd in r.stdout for cmd in ("interpret", "check-mappings", "demo"))


def test_demo_writes_bundle(tmp_path: Path) -> None:
    out = tmp_path / "demo.json"
    r = invoke("demo", "--offline", "--out", str(out))
    assert r.exit_code == 0 and "14 patients" in r.stdout and out.exists()


def test_equation_option(tmp_path: Path) -> None:
    out = tmp_path / "o.json"
    r = invoke("interpret", "--bundle", str(EXAMPLE), "--out", str(out), "--equation", "mdrd", "--now", "2026-01-20T12:00:00Z")
    assert r.exit_code == 0
    codes = [
        e["resource"]["code"]["coding"][0]["code"]
        for e in json.loads(out.read_text())["entry"]
        if e["resource"]["resourceType"] == "Observation"
    ]
    assert codes == ["77147-7"]
