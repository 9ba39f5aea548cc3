"""The command line (SPEC section 8): output to a file or standard output, --now, exit 2 with one line
on standard error and no output file for input that cannot be used."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import responses
from click.testing import CliRunner

from labinterp.cli.main import cli
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


UNREADABLE = [
    ('{"resourceType": "Bundle", ', "not JSON: Expecting property name enclosed in double quotes at line 1 column 28"),
    ({"resourceType": "Patient"}, "expected resourceType 'Bundle', found 'Patient'"),
    ({"resourceType": "Bundle", "type": "message"}, "Bundle.type: 'message' is not one of"),
    ({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"id": "a"}}]}, "has no resourceType"),
]
ONE_BAD_RESOURCE = [
    (bad_unit(), "Observation/c1-lab1 valueQuantity.unit: unknown unit 'mg/furlong' for magnesium"),
    (bad_genotype(), "Observation/c2-pg1 "),
]


@pytest.mark.parametrize(("data", "message"), UNREADABLE)
@pytest.mark.parametrize("mode", [[], ["--strict"], ["--lenient"]], ids=["default", "strict", "lenient"])
def test_unreadable_input_exit_2_one_line_no_output(tmp_path: Path, data: object, message: str, mode: list[str]) -> None:
    out = tmp_path / "out.json"
    r = invoke("interpret", "--bundle", str(write(tmp_path, data)), "--out", str(out), *mode)
    assert r.exit_code == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("labinterp: error: ") and message in r.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == [tmp_path / "in.json"]


@pytest.mark.parametrize(("data", "message"), ONE_BAD_RESOURCE)
@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["--strict"], {}),
        ([], {"LABINTERP_STRICT": "true"}),
        ([], {"LABINTERP_LENIENT": "false"}),  # an explicit old setting keeps its meaning
    ],
    ids=["--strict", "LABINTERP_STRICT", "LABINTERP_LENIENT=false"],
)
def test_strict_one_bad_resource_exit_2_no_output(
    tmp_path: Path, data: object, message: str, args: list[str], env: dict[str, str]
) -> None:
    out = tmp_path / "out.json"
    r = invoke("interpret", "--bundle", str(write(tmp_path, data)), "--out", str(out), *args, env=env)
    assert r.exit_code == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("labinterp: error: ") and message in r.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == [tmp_path / "in.json"]


@pytest.mark.parametrize(("data", "message"), ONE_BAD_RESOURCE)
@pytest.mark.parametrize(
    ("args", "env"),
    [([], {}), (["--lenient"], {}), (["--lenient"], {"LABINTERP_STRICT": "true"}), ([], {"LABINTERP_STRICT": "false"})],
    ids=["default", "--lenient", "--lenient-over-env", "LABINTERP_STRICT=false"],
)
def test_one_bad_resource_is_a_warning_exit_0(
    tmp_path: Path, data: object, message: str, args: list[str], env: dict[str, str]
) -> None:
    """Before: exit 2 and nothing written (strict was the default). Now: exit 0, one warning line per resource."""
    out = tmp_path / "out.json"
    r = invoke("interpret", "--bundle", str(write(tmp_path, data)), "--out", str(out), *args, env=env)
    assert r.exit_code == 0, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("labinterp: warning: ") and message in lines[0]
    assert lines[0].endswith("(left out)") and json.loads(out.read_text())["type"] == "transaction"


def test_one_warning_line_per_problem_and_no_patient_identity(tmp_path: Path) -> None:
    p = P("c3", "male", "1957-02-30", "")
    p.resources[0]["name"] = [{"family": "Rossi", "given": ["Maria"]}]
    p.resources[0]["identifier"] = [{"system": "urn:mrn", "value": "MRN-445566"}]
    p.lab(MG, 1.0, "mg/furlong", "2026-01-15T08:00:00+01:00")
    p.lab(MG, 1.3, "mg/dL", "2026-01-15T09:00:00+01:00")
    bundle = p.bundle()
    bundle["entry"].append({"resource": {"resourceType": "Observation", "id": "orphan", "status": "final", "code": MG}})
    out = tmp_path / "out.json"
    r = invoke("interpret", "--bundle", str(write(tmp_path, bundle)), "--out", str(out), "--now", "2026-01-20T12:00:00Z")
    assert r.exit_code == 0, r.stderr
    lines = r.stderr.splitlines()
    assert [line.split(": ")[2].split(" ")[0] for line in lines] == ["Observation/orphan", "Patient/c3", "Observation/c3-lab1"]
    assert all(line.startswith("labinterp: warning: ") for line in lines)
    for secret in ("Rossi", "Maria", "MRN-445566", "1957-02-30"):
        assert secret not in r.stderr
    kinds = [e["resource"]["resourceType"] for e in json.loads(out.read_text())["entry"]]
    assert "DiagnosticReport" in kinds  # the good magnesium was interpreted


def test_strict_and_lenient_together_is_a_usage_error(tmp_path: Path) -> None:
    r = invoke("interpret", "--bundle", str(EXAMPLE), "--strict", "--lenient")
    assert r.exit_code == 2 and "give --strict or --lenient, not both" in r.stderr
    r = invoke("interpret", "--bundle", str(EXAMPLE), env={"LABINTERP_STRICT": "maybe"})
    assert r.exit_code == 2 and "LABINTERP_STRICT: Input should be a valid boolean" in r.stderr


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
    assert r.exit_code == 0 and "19 patients" in r.stdout and out.exists()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--out", "{tmp}/no/such/dir/demo.json"), "no such directory"),
        (("--out", "{tmp}"), "is a directory"),
        (("--now", "yesterday"), "yesterday"),
    ],
)
def test_demo_offline_fails_in_one_line_before_any_work(tmp_path: Path, args: tuple[str, str], says: str) -> None:
    """The offline demo's output and evaluation time are checked first, with the one-line errors of every command."""
    r = invoke("demo", "--offline", *(a.replace("{tmp}", str(tmp_path)) for a in args))
    assert r.exit_code == 2, r.output
    assert says in r.output and "Traceback" not in r.output and "patients" not in r.stdout


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


@responses.activate
@pytest.mark.parametrize(("args", "code"), [([], 0), (["--strict"], 2)])
def test_live_patient_warnings(args: list[str], code: int) -> None:
    from tests.contract.test_api import BASE, READ, batch_response_for, tx_response

    bundle = json.loads((EXAMPLE.parent / "p08.json").read_text())
    obs = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation")
    obs["valueQuantity"]["code"] = obs["valueQuantity"]["unit"] = "furlongs"
    READ[:] = [batch_response_for(bundle)]
    responses.add_callback(responses.POST, BASE, callback=tx_response)
    r = invoke(
        "interpret",
        "--fhir-url",
        BASE,
        "--patient",
        "p08",
        "--dry-run",
        "--summary",
        *args,
        env={"LABINTERP_MAPPINGS_DIR": str(SITE)},
    )
    assert r.exit_code == code, r.stderr
    if code == 0:
        warnings = [line for line in r.stderr.splitlines() if line.startswith("labinterp: warning: ")]
        assert len(warnings) == 1 and f"Observation/{obs['id']} valueQuantity.unit" in warnings[0]
        assert "left out: 1 resource(s)" in r.stderr and json.loads(r.stdout)["type"] == "transaction"
    else:
        assert r.stderr.count("\n") == 1 and "furlongs" in r.stderr


@responses.activate
@pytest.mark.parametrize(("args", "forms"), [([], True), (["--no-render"], False)])
def test_live_run_honours_no_render(args: list[str], forms: bool) -> None:
    """--no-render (and LABINTERP_RENDER=false) apply to a run against a server as to a file: no presentedForm."""
    from tests.contract.test_api import BASE, READ, batch_response_for, tx_response

    READ[:] = [batch_response_for(json.loads((EXAMPLE.parent / "p01.json").read_text()))]
    responses.add_callback(responses.POST, BASE, callback=tx_response)
    r = invoke("interpret", "--fhir-url", BASE, "--patient", "p01", "--dry-run", *args, env={"LABINTERP_MAPPINGS_DIR": str(SITE)})
    assert r.exit_code == 0, r.stderr
    reports = [e["resource"] for e in json.loads(r.stdout)["entry"] if e["resource"]["resourceType"] == "DiagnosticReport"]
    assert reports and all(("presentedForm" in d) is forms for d in reports)
    assert all(d["text"]["div"].startswith("<div") for d in reports)  # the narrative is there either way
