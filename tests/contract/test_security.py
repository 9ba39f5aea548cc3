"""Security headers on every response (issue 9 point 4), `?now=` only in a dry run, and no credentials in what
/queue and /readyz answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import responses

from labinterp.errors import FhirTemporaryError, InputError
from labinterp.fhir.client import BearerAuth
from labinterp.server.app import create_app
from labinterp.server.queue import JobQueue
from labinterp.server.worker import Worker
from tests.conftest import SITE
from tests.contract.test_api import BASE, batch_response_for
from tests.contract.test_api_robust import p08, serve

API_TOKEN = "api-token-0123456789abcdef"
HOOK_TOKEN = "hook-token-0123456789abcdef"


@pytest.fixture
def app(tmp_path: Path) -> Any:
    return create_app({"FHIR_BASE_URL": BASE, "MAPPINGS_DIR": str(SITE), "QUEUE_PATH": str(tmp_path / "q.db")})


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


def assert_secured(r: Any) -> None:
    csp = dict(part.strip().split(" ", 1) for part in r.headers["Content-Security-Policy"].split(";"))
    assert csp == {
        "default-src": "'none'",
        "img-src": "'self' data:",
        "style-src": "'self'",
        "frame-ancestors": "'none'",
        "base-uri": "'none'",
        "form-action": "'self'",
    }
    assert "unsafe" not in r.headers["Content-Security-Policy"] and "script-src" not in csp  # default-src 'none': no script
    assert r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Referrer-Policy"] == "no-referrer"
    assert "Cache-Control" in r.headers


@responses.activate
@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("get", "/healthz", 200),
        ("get", "/openapi.json", 200),
        ("get", "/queue", 200),
        ("get", "/readyz", 200),
        ("get", "/dashboard", 200),
        ("get", "/dashboard/Patient/p08", 200),
        ("get", "/dashboard/cohort", 200),
        ("get", "/dashboard/style.css", 200),
        ("post", "/Patient/p08/$interpret?dry-run", 200),
        ("post", "/Patient/bad%20id/$interpret", 400),
        ("get", "/nowhere", 404),
        ("get", "/Patient/p08/$interpret", 405),
        ("post", "/hook", 200),
    ],
)
def test_every_response_carries_the_security_headers(client: Any, method: str, path: str, status: int) -> None:
    serve_everything()
    r = getattr(client, method)(path)
    assert r.status_code == status, r.get_data(as_text=True)[:300]
    assert_secured(r)
    if path != "/dashboard/style.css":
        assert r.headers["Cache-Control"] == "no-store"  # answers carry patient data


def serve_everything() -> None:
    from tests.contract.test_api import READ, tx_response

    READ[:] = [batch_response_for(p08())]
    responses.add_callback(responses.POST, BASE, callback=tx_response)
    empty = {"resourceType": "Bundle", "type": "searchset"}
    for rtype in ("DiagnosticReport", "RiskAssessment", "Provenance"):
        responses.get(f"{BASE}/{rtype}", json=empty)
    responses.get(f"{BASE}/metadata", json={"resourceType": "CapabilityStatement"})


def test_errors_unauthorized_and_500_carry_them_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app({"FHIR_BASE_URL": BASE, "QUEUE_PATH": str(tmp_path / "q.db"), "API_TOKEN": API_TOKEN})
    c = app.test_client()
    r = c.get("/queue")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
    assert_secured(r)

    def boom(*_a: Any, **_k: Any) -> Any:
        raise KeyError("x")

    monkeypatch.setattr(app.extensions["labinterp"], "interpret", boom)
    r = c.post("/Patient/p08/$interpret", headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert r.status_code == 500
    assert_secured(r)


def test_the_dashboard_has_no_inline_style_or_script(client: Any) -> None:
    r = client.get("/dashboard/cohort")
    html = r.get_data(as_text=True)
    assert "<style" not in html and "style=" not in html and "<script" not in html
    assert '<link rel="stylesheet" href="/dashboard/style.css">' in html
    css = client.get("/dashboard/style.css")
    assert css.mimetype == "text/css" and "header{background:#234" in css.get_data(as_text=True)


# --- ?now= only in a dry run ------------------------------------------------------------------------------


@responses.activate
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/Patient/p08/$interpret?now=2020-01-01T00:00:00Z", None),
        ("/Patient/p08/$interpret?now=2020-01-01T00:00:00Z&dry-run=false", None),
        (
            "/$interpret?now=2020-01-01T00:00:00Z",
            {"resourceType": "Parameters", "parameter": [{"name": "patient", "valueString": "p08"}]},
        ),
        ("/Group/g1/$interpret?now=2020-01-01T00:00:00Z", None),
    ],
)
def test_now_on_a_write_is_refused(client: Any, path: str, body: Any) -> None:
    """Before: the reports were written backdated, for good."""
    serve(batch_response_for(p08()))
    r = client.post(path, json=body) if body else client.post(path)
    assert r.status_code == 400 and r.json["resourceType"] == "OperationOutcome"
    assert "only with dry-run" in r.json["issue"][0]["diagnostics"]
    assert len(responses.calls) == 0  # nothing read, nothing written


@responses.activate
def test_now_in_a_dry_run_is_used(client: Any) -> None:
    serve(batch_response_for(p08()))
    r = client.post("/Patient/p08/$interpret?dry-run&now=2026-01-20T12:00:00Z")
    assert r.status_code == 200
    issued = {e["resource"].get("issued") for e in r.json["entry"] if e["resource"]["resourceType"] == "DiagnosticReport"}
    assert issued == {"2026-01-20T12:00:00Z"}


# --- no credentials in /queue or /readyz ------------------------------------------------------------------


SECRET_URL = "https://admin:s3cr3tPW@fhir.example.org/fhir/Patient?identifier=MRN-99887766&access_token=abc123xyz"


def test_redacted() -> None:
    from labinterp.server.queue import redacted

    text = redacted(f"failed: {SECRET_URL} (Authorization: Bearer {API_TOKEN}; Basic dXNlcjpwdw==; token=zzz)")
    for secret in ("s3cr3tPW", "admin", "MRN-99887766", "abc123xyz", API_TOKEN, "dXNlcjpwdw", "zzz"):
        assert secret not in text, secret
    assert "https://fhir.example.org/fhir/Patient?access_token=…&identifier=…" in text


def test_a_failure_quoting_a_url_with_credentials_is_stored_redacted(app: Any, client: Any) -> None:
    s = app.extensions["labinterp"]

    def process(pid: str) -> None:
        if pid == "fatal":
            raise InputError(f"Observation/o1 from {SECRET_URL}", "unusable")
        raise OSError(f"connection to {SECRET_URL} refused (Authorization: Bearer {HOOK_TOKEN})")

    s.queue.enqueue("fatal")
    s.queue.enqueue("temporary")
    worker = Worker(s.queue, process, attempts=1)
    worker.drain(timeout=5)
    raw = "".join(str(row) for row in JobQueue(s.queue.path).failures())
    shown = client.get("/queue").get_data(as_text=True)
    for text in (raw, shown):
        assert "fhir.example.org/fhir/Patient" in text
        for secret in ("s3cr3tPW", "admin", "MRN-99887766", "abc123xyz", HOOK_TOKEN):
            assert secret not in text, secret


def test_a_retrying_job_is_listed_redacted(app: Any, client: Any) -> None:
    s = app.extensions["labinterp"]
    s.queue.enqueue("p1")

    def process(_pid: str) -> None:
        raise FhirTemporaryError("POST", "http://fhir.test/fhir", 503, f"behind {SECRET_URL}")

    Worker(s.queue, process).run_one()
    body = client.get("/queue").json
    (retrying,) = body["retrying"]
    assert retrying["attempts"] == 1 and "s3cr3tPW" not in retrying["error"] and "abc123xyz" not in retrying["error"]


def test_readyz_names_no_credentials(app: Any, client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    s = app.extensions["labinterp"]
    s.fhir_auth = BearerAuth("fhir-token-0123456789")

    class Down:
        def metadata(self) -> Any:
            raise FhirTemporaryError("GET", SECRET_URL, None, "no answer; sent fhir-token-0123456789")

    monkeypatch.setattr(s, "client", lambda *a, **k: Down())
    r = client.get("/readyz")
    text = r.get_data(as_text=True)
    assert r.status_code == 503 and "FHIR server not reachable" in text
    for secret in ("s3cr3tPW", "admin", "MRN-99887766", "abc123xyz", "fhir-token-0123456789"):
        assert secret not in text, secret


def test_readyz_does_not_show_the_internal_fhir_url(app: Any, client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """/readyz answers without a token: it says the FHIR server is not reachable, not where it is."""
    s = app.extensions["labinterp"]

    class Down:
        def metadata(self) -> Any:
            raise FhirTemporaryError("GET", "http://10.1.2.3:8395/fhir/metadata", None, "no response: ConnectionError")

    monkeypatch.setattr(s, "client", lambda *a, **k: Down())
    text = client.get("/readyz").get_data(as_text=True)
    assert "FHIR server not reachable (FhirTemporaryError)" in text and "10.1.2.3" not in text


@pytest.mark.parametrize(
    ("headers", "data", "status"),
    [
        ({"Content-Type": "application/x-www-form-urlencoded"}, b"patient=Patient/p01", 415),  # an HTML form
        ({"Content-Type": "multipart/form-data; boundary=x"}, b"--x--", 415),
        ({"Content-Type": "text/plain"}, b'{"resourceType": "Parameters"}', 415),  # a form with enctype text/plain
        ({"Origin": "https://evil.example"}, None, 403),  # fetch(url, {method: "POST", mode: "no-cors"})
        ({"Sec-Fetch-Site": "cross-site"}, None, 403),
    ],
)
def test_cross_site_writes_are_refused_before_any_work(
    client: Any, headers: dict[str, str], data: bytes | None, status: int
) -> None:
    r = client.post("/Patient/p01/$interpret", headers=headers, data=data)
    assert r.status_code == status and r.json["resourceType"] == "OperationOutcome"


def test_same_origin_and_non_browser_writes_pass_the_check(tmp_path: Path) -> None:
    """The check stops at the door only: these go on to the FHIR server (unreachable here, tried once: a 5xx)."""
    app = create_app({"FHIR_BASE_URL": "http://127.0.0.1:9/fhir", "QUEUE_PATH": str(tmp_path / "q.db"), "FHIR_RETRIES": 1})
    for headers in ({}, {"Origin": "http://localhost"}, {"Content-Type": "application/fhir+json"}):
        status = app.test_client().post("/Patient/p01/$interpret?dry-run", headers=headers).status_code
        assert status >= 500, headers
