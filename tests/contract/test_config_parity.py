"""One configuration (issue 8 point 2): the command line and the service read the same settings object, so
they read the same values and refuse the same bad ones, each naming the variable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from labinterp.cli.main import cli
from labinterp.config import Settings
from labinterp.errors import InputError
from labinterp.fhir.client import BasicAuth
from labinterp.server.app import create_app
from tests.conftest import ROOT

EXAMPLE = ROOT / "tests" / "data" / "patients" / "p01.json"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LABINTERP_EGFR_EQUATION", "cockcroft"),  # the CLI refused it, the service ignored it
        ("LABINTERP_FHIR_BASIC", "alice"),  # the CLI authenticated with it, the service did not
        ("LABINTERP_STRICT", "maybe"),
        ("LABINTERP_RENDER", "perhaps"),
        ("LABINTERP_WORKER_THREADS", "0"),
        ("LABINTERP_POLL_SECONDS", "soon"),
    ],
)
def test_both_refuse_the_same_bad_value(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    r = CliRunner().invoke(cli, ["interpret", "--bundle", str(EXAMPLE), "--out", str(tmp_path / "o.json")])
    assert r.exit_code == 2 and variable in r.stderr and not (tmp_path / "o.json").exists()
    with pytest.raises(InputError) as caught:
        create_app({"QUEUE_PATH": str(tmp_path / "q.db")})
    assert caught.value.where == variable
    if variable == "LABINTERP_FHIR_BASIC":
        assert value not in str(caught.value)  # a credential is never quoted back


def test_both_read_the_same_values(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env = {
        "LABINTERP_FHIR_BASE_URL": "http://fhir.test/fhir",
        "LABINTERP_FHIR_BASIC": "user:secret",
        "LABINTERP_EGFR_EQUATION": "mdrd",
        "LABINTERP_STRICT": "yes",
        "LABINTERP_RENDER": "off",
        "LABINTERP_API_TOKEN": "0000000000000000",  # a string, never read as JSON (a number)
        "LABINTERP_QUEUE_PATH": str(tmp_path / "q.db"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    cli_settings = Settings.from_env()
    app = create_app()
    assert app.extensions["labinterp.settings"] == cli_settings
    services = app.extensions["labinterp"]
    assert isinstance(services.fhir_auth, BasicAuth) and services.fhir_auth.username == "user"
    assert services.equation == "mdrd_idms" and services.strict is True
    assert services.render is False and services.api_token == "0000000000000000"
    assert app.test_client().get("/queue").status_code == 401  # the token is required, not ignored
    assert cli_settings.basic == ("user", "secret") and cli_settings.equation == "mdrd_idms" and cli_settings.strict_mode


def test_test_config_overrides_and_unknown_keys_are_refused(tmp_path: Path) -> None:
    app = create_app({"QUEUE_PATH": str(tmp_path / "q.db"), "STRICT": True, "FHIR_RETRIES": 2})
    assert app.extensions["labinterp"].strict is True and app.config["FHIR_RETRIES"] == 2
    with pytest.raises(InputError, match="LABINTERP_FHIR_RETRYS"):
        create_app({"QUEUE_PATH": str(tmp_path / "q.db"), "FHIR_RETRYS": 2})


def test_cli_writes_with_the_settings_it_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LABINTERP_RENDER", "false")
    out = tmp_path / "o.json"
    assert CliRunner().invoke(cli, ["interpret", "--bundle", str(EXAMPLE), "--out", str(out)]).exit_code == 0
    reports = [e["resource"] for e in json.loads(out.read_text())["entry"] if e["resource"]["resourceType"] == "DiagnosticReport"]
    assert reports and all("presentedForm" not in r for r in reports)


def test_no_render_flag_keeps_a_plain_narrative(tmp_path: Path) -> None:
    out = tmp_path / "o.json"
    assert CliRunner().invoke(cli, ["interpret", "--bundle", str(EXAMPLE), "--no-render", "--out", str(out)]).exit_code == 0
    reports = [e["resource"] for e in json.loads(out.read_text())["entry"] if e["resource"]["resourceType"] == "DiagnosticReport"]
    assert reports and all("presentedForm" not in r and r["text"]["div"].startswith("<div") for r in reports)
    assert all(
        "Linezolid" in r["text"]["div"] or "genotype" in r["text"]["div"].lower() or "eGFR" in r["text"]["div"] for r in reports
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LABINTERP_FHIR_BASE_URL", "fhir.test/fhir"),
        ("LABINTERP_FHIR_BASE_URL", "ftp://fhir.test/fhir"),
        ("LABINTERP_FHIR_BASE_URL", "http://admin:s3cr3tPW@fhir.test/fhir"),
        ("LABINTERP_QUEUE_LEASE", "inf"),
        ("LABINTERP_FHIR_RETRY_DELAY", "nan"),
    ],
)
def test_urls_and_numbers_are_checked_too(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(InputError) as caught:
        create_app({"QUEUE_PATH": str(tmp_path / "q.db")})
    assert caught.value.where == variable and "s3cr3tPW" not in str(caught.value)


def test_a_queue_path_that_cannot_be_opened_names_the_setting(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(InputError) as caught:
        create_app({"QUEUE_PATH": str(blocker / "q.db")})
    assert caught.value.where == "LABINTERP_QUEUE_PATH"


@pytest.mark.parametrize(
    "value", ["0", "false", "null", "true", "short-token", "has a space in it ok", "tok\u00e9n-0123456789abcdef"]
)
def test_unusable_tokens_are_refused_by_both(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str) -> None:
    """0 / false / null once turned auth off (read as JSON); now any unusable token stops both from starting."""
    monkeypatch.setenv("LABINTERP_API_TOKEN", value)
    with pytest.raises(InputError, match="LABINTERP_API_TOKEN") as cli:
        Settings.from_env()
    with pytest.raises(InputError, match="LABINTERP_API_TOKEN") as service:
        create_app({"QUEUE_PATH": str(tmp_path / "q.db")})
    assert value not in str(cli.value) and value not in str(service.value)


@pytest.mark.parametrize("name", ["LABINTERP_STRCT", "LABINTERP_FHIR_URL", "labinterp_worker_thread"])
def test_misspelt_variables_are_refused_by_both(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str) -> None:
    monkeypatch.setenv(name, "1")
    with pytest.raises(InputError, match=name.upper()):
        Settings.from_env()
    with pytest.raises(InputError, match=name.upper()):
        create_app({"QUEUE_PATH": str(tmp_path / "q.db")})


def test_tests_and_launcher_variables_are_not_settings_but_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LABINTERP_SKIP_INTEGRATION", "LABINTERP_TEST_FHIR_URL", "LABINTERP_HAPI_PORT", "LABINTERP_UPDATE_SCREENSHOTS"):
        monkeypatch.setenv(name, "1")
    Settings.from_env()
