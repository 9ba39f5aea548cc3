"""The rest-hook endpoint (issue 9 point 4): its own token (never the API token, in either direction), the
Subscription that carries it, the path checked against the payload, a size limit, a rate limit per caller, and a
503 when the notified resource cannot be read back for now."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import pytest
import responses

from labinterp.fhir.client import FhirClient
from labinterp.knowledge import Knowledge
from labinterp.server.app import create_app
from labinterp.server.worker import register_subscription
from tests.conftest import SITE

BASE = "http://fhir.test/fhir"
API_TOKEN = "api-token-0123456789abcdef"
HOOK_TOKEN = "hook-token-0123456789abcdef"
API = {"Authorization": f"Bearer {API_TOKEN}"}
HOOK = {"Authorization": f"Bearer {HOOK_TOKEN}"}


def obs(oid: str = "o1", patient: str = "p01") -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final", "subject": {"reference": f"Patient/{patient}"}}


def make_app(tmp_path: Path, **config: Any) -> Any:
    return create_app({"FHIR_BASE_URL": BASE, "MAPPINGS_DIR": str(SITE), "QUEUE_PATH": str(tmp_path / "q.db"), **config})


def pending(app: Any) -> int:
    return int(app.extensions["labinterp"].queue.counts()["pending"])


# --- tokens ----------------------------------------------------------------------------------------------------


def test_the_hook_takes_the_hook_token_only(tmp_path: Path) -> None:
    app = make_app(tmp_path, API_TOKEN=API_TOKEN, HOOK_TOKEN=HOOK_TOKEN)
    c = app.test_client()
    assert c.put("/hook/Observation/o1", json=obs()).status_code == 401
    r = c.put("/hook/Observation/o1", json=obs(), headers=API)  # the API token does not open the hook
    assert r.status_code == 401 and r.json["issue"][0]["code"] == "login"
    assert c.put("/hook/Observation/o1", json=obs(), headers=HOOK).status_code == 200
    assert c.post("/hook", json=obs(), headers=HOOK).status_code == 200
    assert pending(app) == 1


def test_the_hook_token_does_not_open_the_api(tmp_path: Path) -> None:
    c = make_app(tmp_path, API_TOKEN=API_TOKEN, HOOK_TOKEN=HOOK_TOKEN).test_client()
    assert c.get("/queue", headers=HOOK).status_code == 401
    assert c.post("/Patient/p01/$interpret?dry-run", headers=HOOK).status_code == 401
    assert c.get("/dashboard", headers=HOOK).status_code == 401
    assert c.get("/queue", headers=API).status_code == 200


def test_an_api_token_without_a_hook_token_closes_the_hook(tmp_path: Path) -> None:
    app = make_app(tmp_path, API_TOKEN=API_TOKEN)
    c = app.test_client()
    for headers in ({}, API):
        r = c.put("/hook/Observation/o1", json=obs(), headers=headers)
        assert r.status_code == 401 and "LABINTERP_HOOK_TOKEN" in r.json["issue"][0]["diagnostics"]
    assert pending(app) == 0


def test_with_no_token_at_all_the_hook_is_open(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    assert app.test_client().put("/hook/Observation/o1", json=obs()).status_code == 200 and pending(app) == 1


def test_a_hook_token_equal_to_the_api_token_is_refused(tmp_path: Path) -> None:
    from labinterp.errors import InputError

    with pytest.raises(InputError, match="LABINTERP_HOOK_TOKEN"):
        make_app(tmp_path, API_TOKEN=API_TOKEN, HOOK_TOKEN=API_TOKEN)


@responses.activate
def test_the_subscription_carries_the_hook_token_never_the_api_token(site_k: Knowledge) -> None:
    put = responses.put(f"{BASE}/Subscription/labinterp-observations", json={"resourceType": "Subscription"})
    register_subscription(FhirClient(BASE), site_k, "http://svc/hook", API_TOKEN, hook_token=HOOK_TOKEN)
    sent = put.calls[0].request.body.decode()
    assert f"Bearer {HOOK_TOKEN}" in sent and API_TOKEN not in sent


@responses.activate
def test_no_subscription_with_an_api_token_and_no_hook_token(site_k: Knowledge, caplog: pytest.LogCaptureFixture) -> None:
    """Before: the Subscription carried the API token, readable by anyone who reads Subscriptions."""
    with caplog.at_level(logging.WARNING):
        assert register_subscription(FhirClient(BASE), site_k, "http://svc/hook", API_TOKEN) is None
    assert len(responses.calls) == 0
    assert "LABINTERP_HOOK_TOKEN" in caplog.text and API_TOKEN not in caplog.text


@responses.activate
def test_a_sandbox_subscription_has_no_header(site_k: Knowledge) -> None:
    put = responses.put(f"{BASE}/Subscription/labinterp-observations", json={"resourceType": "Subscription"})
    register_subscription(FhirClient(BASE), site_k, "http://svc/hook")
    assert b"header" not in put.calls[0].request.body


# --- the path against the payload ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/hook/Patient/p01", obs(patient="p02")),  # a path naming one patient, a payload about another
        ("/hook/Patient/p01", {"resourceType": "Patient", "id": "p02"}),
        ("/hook/Observation/o1", obs("o2")),
        ("/hook/Observation/o1", {"resourceType": "Bundle", "type": "history", "entry": [{"resource": obs("o2")}]}),
    ],
)
def test_a_path_that_disagrees_with_the_payload_is_400(tmp_path: Path, path: str, body: Any) -> None:
    app = make_app(tmp_path)
    r = app.test_client().put(path, json=body)
    assert r.status_code == 400 and r.json["resourceType"] == "OperationOutcome"
    assert pending(app) == 0


def test_a_path_that_agrees_is_used(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    c = app.test_client()
    assert c.put("/hook/Observation/o1", json=obs("o1", "p02")).status_code == 200
    assert c.put("/hook/Patient/p03", json={"resourceType": "Patient", "id": "p03"}).status_code == 200
    assert sorted(str(j["patient"]) for j in queued(app)) == ["p02", "p03"]


def queued(app: Any) -> list[dict[str, Any]]:
    import sqlite3

    db = sqlite3.connect(app.extensions["labinterp"].queue.path)
    try:
        return [{"patient": p} for (p,) in db.execute("SELECT patient FROM jobs WHERE state = 'pending'")]
    finally:
        db.close()


# --- size ------------------------------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_413_by_its_length(tmp_path: Path) -> None:
    app = make_app(tmp_path, HOOK_MAX_BYTES=2048)
    big = obs() | {"note": [{"text": "x" * 4000}]}
    r = app.test_client().put("/hook/Observation/o1", json=big)
    assert r.status_code == 413 and r.json["issue"][0]["code"] == "too-costly"
    assert app.test_client().put("/hook/Observation/o1", json=obs()).status_code == 200


class Endless(io.RawIOBase):
    """A request body of 4 MB with no length given (endless as far as a 2 KB limit goes); counts what was read."""

    def __init__(self) -> None:
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), 4_000_000 - self.read_bytes)
        buffer[:n] = b" " * n
        self.read_bytes += n
        return n


def test_a_body_without_length_is_read_no_further_than_the_limit(tmp_path: Path) -> None:
    from werkzeug.test import EnvironBuilder, run_wsgi_app

    app = make_app(tmp_path, HOOK_MAX_BYTES=2048)
    stream = Endless()
    environ = EnvironBuilder(path="/hook", method="POST").get_environ()
    environ.pop("CONTENT_LENGTH", None)  # chunked: the server gives the body with no length
    environ.update({"wsgi.input": stream, "wsgi.input_terminated": True})
    _, status, _ = run_wsgi_app(app.wsgi_app, environ, buffered=True)
    assert status.startswith("413") and 2048 < stream.read_bytes <= 2048 + 65536


# --- rate ------------------------------------------------------------------------------------------------------


def test_too_many_notifications_from_one_caller_are_429(tmp_path: Path) -> None:
    app = make_app(tmp_path, HOOK_PER_MINUTE=3)
    c = app.test_client()
    one = {"REMOTE_ADDR": "10.0.0.1"}
    codes = [c.put("/hook/Observation/o1", json=obs(), environ_base=one).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    r = c.put("/hook/Observation/o1", json=obs(), environ_base=one)
    assert r.status_code == 429 and r.json["issue"][0]["code"] == "throttled" and 1 <= int(r.headers["Retry-After"]) <= 20
    assert c.put("/hook/Observation/o1", json=obs(), environ_base={"REMOTE_ADDR": "10.0.0.2"}).status_code == 200


def test_the_bucket_refills_and_stays_bounded() -> None:
    from labinterp.server.api.hook import RateLimiter

    now = [0.0]
    limiter = RateLimiter(60, clock=lambda: now[0], max_callers=100)
    assert [limiter.wait("a") for _ in range(60)] == [0.0] * 60
    assert limiter.wait("a") == pytest.approx(1.0)  # one a second
    now[0] += 1.0
    assert limiter.wait("a") == 0.0 and limiter.wait("a") > 0
    for i in range(1000):
        limiter.wait(f"caller-{i}")
    assert len(limiter._buckets) == 100


# --- read-back --------------------------------------------------------------------------------------------------


@responses.activate
@pytest.mark.parametrize(("status", "answer"), [(503, 503), (500, 503), (404, 200), (410, 200)])
def test_a_body_less_notification_whose_read_back_fails_for_now_is_503(tmp_path: Path, status: int, answer: int) -> None:
    """Before: 200 "nothing to do", and the change was lost until the poll (if any) found it."""
    responses.get(f"{BASE}/Observation/o1", status=status)
    app = make_app(tmp_path)
    r = app.test_client().put("/hook/Observation/o1")
    assert r.status_code == answer and r.json["resourceType"] == "OperationOutcome"
    if answer == 503:
        assert r.headers["Retry-After"] == "30" and r.json["issue"][0]["code"] == "transient"
    assert len(responses.calls) == 1  # one try: the FHIR server's own retry is the retry
    assert pending(app) == 0


@responses.activate
def test_a_body_less_notification_is_read_back(tmp_path: Path) -> None:
    responses.get(f"{BASE}/Observation/o1", json=obs("o1", "p07"))
    app = make_app(tmp_path)
    assert app.test_client().put("/hook/Observation/o1").status_code == 200
    assert [j["patient"] for j in queued(app)] == ["p07"]


def test_openapi_describes_the_hook(tmp_path: Path) -> None:
    doc = make_app(tmp_path).test_client().get("/openapi.json").json
    assert "hook" in doc["components"]["securitySchemes"]
    op = doc["paths"]["/hook/{type}/{id}"]["put"]
    assert op["security"][0] == {"hook": []} and {"400", "401", "413", "429", "503"} <= set(op["responses"])
    assert [p["name"] for p in op["parameters"]] == ["type", "id"]
    now = next(p for p in doc["paths"]["/Patient/{id}/$interpret"]["post"]["parameters"] if p["name"] == "now")
    assert "dry-run only" in now["description"]
