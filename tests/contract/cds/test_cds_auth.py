"""CDS Hooks 2.0 JWT verification on every call: ES384 and RS384 accepted; every other token refused with 401, an
OperationOutcome (login) and `WWW-Authenticate: Bearer error="invalid_token"` that quotes nothing of the token; JWK
Sets over https fetched once and cached, refetched on an unknown kid at most once a minute; the settings checked at
start (a bad LABINTERP_CDS_ISSUERS stops create_app)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import responses

from labinterp.errors import InputError
from labinterp.server.app import create_app
from tests.data.cds.cdskit import ISSUER, NOW, Signer, config, url

DISCOVERY = "/cds-services"
AUD = url(DISCOVERY)
JWKS_URL = "https://ehr.example.org/.well-known/jwks.json"


@pytest.fixture(scope="module")
def stranger() -> Signer:
    """Another party's keys under the same kids: its signatures must not verify."""
    return Signer.generate()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_refused(resp: Any, token: str | None = None, says: str = "") -> None:
    assert resp.status_code == 401, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "login"
    challenge = resp.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer error="invalid_token", error_description="')
    assert says in body["issue"][0]["diagnostics"]
    if token:
        for part in token.split("."):
            if len(part) > 8:
                assert part not in challenge and part not in resp.get_data(as_text=True)


@pytest.mark.parametrize("alg", ["ES384", "RS384"])
def test_es384_and_rs384_accepted(client: Any, signer: Signer, alg: str) -> None:
    resp = client.get(DISCOVERY, headers=bearer(signer.token(AUD, alg)))
    assert resp.status_code == 200
    assert resp.get_json()["services"]


FORGED: dict[str, Callable[[Signer, Signer], str | None]] = {
    "no Authorization header": lambda s, o: None,
    "another scheme": lambda s, o: "Basic dXNlcjpwYXNz",
    "not a JWT": lambda s, o: "Bearer not-a-jwt",
    "three parts that are not a JWT": lambda s, o: "Bearer aaaa.bbbb.cccc",
    "alg none": lambda s, o: f"Bearer {s.unsigned(AUD)}",
    "HS384 signed with the public key": lambda s, o: f"Bearer {s.hmac_with_public_key(AUD)}",
    "HS256 signed with the public key": lambda s, o: f"Bearer {s.hmac_with_public_key(AUD, 'HS256')}",
    "HS512 signed with the public key": lambda s, o: f"Bearer {s.hmac_with_public_key(AUD, 'HS512')}",
    "unknown iss": lambda s, o: f"Bearer {s.token(AUD, iss='https://other.example.org')}",
    "unknown kid": lambda s, o: f"Bearer {s.token(AUD, kid='no-such-key')}",
    "signed by another key": lambda s, o: f"Bearer {o.token(AUD)}",
    "alg other than the key's": lambda s, o: f"Bearer {s.token(AUD, 'RS384', kid=s.ec_kid)}",
    "wrong aud": lambda s, o: f"Bearer {s.token(url('/cds-services/labinterp-patient-view'))}",
    "aud of another host": lambda s, o: f"Bearer {s.token('https://evil.example.org/cds-services')}",
    "expired": lambda s, o: f"Bearer {s.token(AUD, iat=int(time.time()) - 4000, exp=int(time.time()) - 3600)}",
    "issued in the future": lambda s, o: f"Bearer {s.token(AUD, iat=int(time.time()) + 3600, exp=int(time.time()) + 3900)}",
    "no jti": lambda s, o: f"Bearer {s.token(AUD, jti=None)}",
    "empty jti": lambda s, o: f"Bearer {s.token(AUD, jti='')}",
    "no exp": lambda s, o: f"Bearer {s.token(AUD, exp=None)}",
    "no iat": lambda s, o: f"Bearer {s.token(AUD, iat=None)}",
    "no iss": lambda s, o: f"Bearer {s.token(AUD, iss=None)}",
    "no aud": lambda s, o: f"Bearer {s.token(AUD, aud=None)}",
    # CDS Hooks: exp no more than 5 minutes ahead (60 s of clock skew allowed)
    "lives an hour": lambda s, o: f"Bearer {s.token(AUD, exp=int(time.time()) + 3600)}",
    "lives a year": lambda s, o: f"Bearer {s.token(AUD, exp=int(time.time()) + 365 * 86400)}",
    "exp 6 min 30 s ahead": lambda s, o: f"Bearer {s.token(AUD, exp=int(time.time()) + 390)}",
    "issued 10 minutes ago": lambda s, o: f"Bearer {s.token(AUD, iat=int(time.time()) - 600, exp=int(time.time()) + 60)}",
    "issued 2 minutes ahead": lambda s, o: f"Bearer {s.token(AUD, iat=int(time.time()) + 120, exp=int(time.time()) + 300)}",
    "exp Infinity": lambda s, o: f"Bearer {s.token(AUD, exp=float('inf'))}",
    "iat NaN": lambda s, o: f"Bearer {s.token(AUD, iat=float('nan'))}",
    "iat a text": lambda s, o: f"Bearer {s.token(AUD, iat=str(int(time.time())))}",
    "exp true": lambda s, o: f"Bearer {s.token(AUD, exp=True)}",
}
SAYS = {
    "alg none": "alg none",
    "HS384 signed with the public key": "HMAC",
    "HS256 signed with the public key": "HMAC",
    "unknown iss": "trusted issuer",
    "unknown kid": "kid",
    "signed by another key": "signature",
    "wrong aud": "aud",
    "expired": "expired",
    "no jti": "jti",
    "no exp": "exp",
    "no iat": "iat",
    "lives an hour": "lives too long",
    "lives a year": "lives too long",
    "exp 6 min 30 s ahead": "more than 5 minutes ahead",
    "issued 10 minutes ago": "issued more than 5 minutes ago",
    "issued 2 minutes ahead": "not valid yet",
    "iat a text": "iat claim must be a number",
}


@pytest.mark.parametrize("case", list(FORGED))
def test_every_auth_failure_is_401(client: Any, signer: Signer, stranger: Signer, case: str) -> None:
    header = FORGED[case](signer, stranger)
    resp = client.get(DISCOVERY, headers={"Authorization": header} if header else {})
    assert_refused(resp, header.removeprefix("Bearer ") if header else None, SAYS.get(case, ""))


def test_a_token_within_its_lifetime_and_the_clock_skew_is_accepted(client: Any, signer: Signer) -> None:
    now = int(time.time())
    for claims in (
        {"iat": now, "exp": now + 300},
        {"iat": now - 50, "exp": now + 350},  # exp 5 minutes and 50 s ahead: within the skew
        {"iat": now - 340, "exp": now + 10},  # issued 5 minutes and 40 s ago
        {"iat": now + 30, "exp": now + 330},  # the client's clock 30 s ahead
    ):
        assert client.get(DISCOVERY, headers=bearer(signer.token(AUD, **claims))).status_code == 200, claims


def test_the_replay_cache_holds_no_token_longer_than_its_lifetime(signer: Signer, tmp_path: Path) -> None:
    """The cache keeps a jti until its exp plus the skew: never past now + 5 minutes + twice the skew."""
    app = create_app(config(tmp_path, signer))
    verifier = app.extensions["labinterp.cds"].verifier
    client = app.test_client()
    assert client.get(DISCOVERY, headers=bearer(signer.token(AUD, exp=int(time.time()) + 3600))).status_code == 401
    assert client.get(DISCOVERY, headers=bearer(signer.token(AUD))).status_code == 200
    assert len(verifier.replay) == 1
    assert max(verifier.replay._seen.values()) <= time.time() + 300 + 2 * 60


def test_refused_before_verification_for_alg_none_and_hmac(client: Any, signer: Signer, app: Any) -> None:
    """The header's alg is refused before any key is looked up: no JWK Set is even consulted."""
    keys = app.extensions["labinterp.cds"].verifier.issuers[ISSUER]
    before = keys.fetches
    for token in (signer.unsigned(AUD), signer.hmac_with_public_key(AUD)):
        assert_refused(client.get(DISCOVERY, headers=bearer(token)))
    assert keys.fetches == before


def test_replayed_jti_refused(client: Any, signer: Signer) -> None:
    token = signer.token(AUD)
    assert client.get(DISCOVERY, headers=bearer(token)).status_code == 200
    assert_refused(client.get(DISCOVERY, headers=bearer(token)), token, "already used")
    same_jti = signer.token(AUD, jti=json.loads(_payload(token))["jti"])
    assert_refused(client.get(DISCOVERY, headers=bearer(same_jti)), same_jti, "already used")


def _payload(token: str) -> str:
    import base64

    part = token.split(".")[1]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)).decode()


def test_every_endpoint_needs_a_token(client: Any, signer: Signer) -> None:
    for path in ("/cds-services/labinterp-patient-view", "/cds-services/labinterp-patient-view/feedback", "/cds-services/nope"):
        assert_refused(client.post(path, json={}))
    # the token's aud is the endpoint called: a discovery token does not open a service
    resp = client.post("/cds-services/labinterp-patient-view", json={}, headers=bearer(signer.token(AUD)))
    assert_refused(resp, says="aud")


def test_aud_is_the_public_url_when_set(tmp_path: Path, signer: Signer) -> None:
    public = "https://labinterp.example.org/base"
    client = create_app(config(tmp_path, signer, PUBLIC_URL=public)).test_client()
    assert_refused(client.get(DISCOVERY, headers=bearer(signer.token(AUD))), says=f"{public}/cds-services")
    assert client.get(DISCOVERY, headers=bearer(signer.token(f"{public}/cds-services"))).status_code == 200


def test_no_token_in_the_log(client: Any, signer: Signer, caplog: pytest.LogCaptureFixture) -> None:
    token = signer.token(AUD, exp=int(time.time()) - 3600, iat=int(time.time()) - 4000)
    with caplog.at_level(logging.DEBUG):
        client.get(DISCOVERY, headers=bearer(token))
        client.get(DISCOVERY, headers=bearer(signer.token(AUD)))
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "refused" in logged
    assert token.split(".")[2] not in logged and token.split(".")[1] not in logged


@responses.activate
def test_jwks_over_https_fetched_once_and_cached(tmp_path: Path, signer: Signer) -> None:
    responses.add(responses.GET, JWKS_URL, json=signer.jwks())
    app = create_app(config(tmp_path, None, CDS_ISSUERS=json.dumps({ISSUER: JWKS_URL})))
    client = app.test_client()
    assert len(responses.calls) == 0  # fetched on first use, not at start
    for alg in ("ES384", "RS384", "ES384"):
        assert client.get(DISCOVERY, headers=bearer(signer.token(AUD, alg))).status_code == 200
    assert len(responses.calls) == 1
    # an unknown kid: one refetch (a rotated key would be found), then none within the minute
    assert_refused(client.get(DISCOVERY, headers=bearer(signer.token(AUD, kid="rotated-1"))), says="kid")
    assert len(responses.calls) == 2
    assert_refused(client.get(DISCOVERY, headers=bearer(signer.token(AUD, kid="rotated-2"))), says="kid")
    assert_refused(client.get(DISCOVERY, headers=bearer(signer.token(AUD, kid="rotated-3"))), says="kid")
    assert len(responses.calls) == 2
    # a minute later the issuer has rotated its EC key to a new kid: found after one refetch
    keys = app.extensions["labinterp.cds"].verifier.issuers[ISSUER]
    later = time.monotonic() + 61
    keys.clock = lambda: later
    rotated = signer.jwks()
    rotated["keys"][0]["kid"] = "rotated-1"
    responses.replace(responses.GET, JWKS_URL, json=rotated)
    assert client.get(DISCOVERY, headers=bearer(signer.token(AUD, kid="rotated-1"))).status_code == 200
    assert len(responses.calls) == 3
    assert all(c.request.headers.get("Authorization") is None for c in responses.calls)


@responses.activate
def test_jwks_url_down_is_401_not_500(tmp_path: Path, signer: Signer) -> None:
    responses.add(responses.GET, JWKS_URL, status=503)
    client = create_app(config(tmp_path, None, CDS_ISSUERS=json.dumps({ISSUER: JWKS_URL}))).test_client()
    assert_refused(client.get(DISCOVERY, headers=bearer(signer.token(AUD))), says="JWK Set")


def test_auth_off_warns_at_start(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        client = create_app(config(tmp_path, None, CDS_AUTH=False)).test_client()
    assert any("LABINTERP_CDS_AUTH=false" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    assert client.get(DISCOVERY).status_code == 200


def test_no_issuers_starts_but_refuses_every_call(tmp_path: Path, signer: Signer, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        client = create_app(config(tmp_path, None)).test_client()
    assert any("LABINTERP_CDS_ISSUERS is not configured" in r.getMessage() for r in caplog.records)
    resp = client.get(DISCOVERY, headers=bearer(signer.token(AUD)))
    assert_refused(resp, says="LABINTERP_CDS_ISSUERS is not configured")
    assert "LABINTERP_CDS_ISSUERS" in resp.headers["WWW-Authenticate"]


def _jwks_file(tmp_path: Path, content: Any) -> str:
    path = tmp_path / "odd-jwks.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


@pytest.mark.parametrize(
    "value",
    [
        "not json",
        "[]",
        "{}",
        json.dumps({ISSUER: 5}),
        json.dumps({ISSUER: "http://ehr.example.org/jwks.json"}),  # not https
        json.dumps({ISSUER: "/no/such/jwks.json"}),
        "FILE:not json",
        "FILE:{}",
        "FILE:" + json.dumps({"keys": [{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}]}),  # only an HMAC secret
        "PRIVATE",  # a private key published as a JWK Set: refused
    ],
)
def test_unreadable_issuers_stop_create_app(tmp_path: Path, signer: Signer, value: str) -> None:
    if value.startswith("FILE:"):
        value = json.dumps({ISSUER: _jwks_file(tmp_path, value.removeprefix("FILE:"))})
    elif value == "PRIVATE":
        private = json.loads(__import__("jwt").algorithms.ECAlgorithm.to_jwk(signer.ec_key))
        private["kid"] = "p"
        value = json.dumps({ISSUER: _jwks_file(tmp_path, {"keys": [private]})})
    with pytest.raises(InputError) as err:
        create_app(config(tmp_path, None, CDS_ISSUERS=value))
    assert err.value.where == "LABINTERP_CDS_ISSUERS"


@pytest.mark.parametrize(
    "value",
    [
        "ftp://fhir.example.org",
        '["http://user:pw@fhir.example.org/fhir"]',
        "[1]",
        "[",
        ",",
        '["http://fhir.example.org/fhir?"]',
        '["http://fhir.example.org/fhir#"]',
        '["http://fhir.example.org/f\\u0009hir"]',
        '["http://fhir.example.org\\\\@evil/fhir"]',
    ],
)
def test_unreadable_fhir_servers_stop_create_app(tmp_path: Path, signer: Signer, value: str) -> None:
    with pytest.raises(InputError) as err:
        create_app(config(tmp_path, signer, CDS_FHIR_SERVERS=value))
    assert err.value.where == "LABINTERP_CDS_FHIR_SERVERS"
    assert "pw" not in str(err.value)


def test_cds_calls_carry_a_jwt_not_the_api_token(tmp_path: Path, signer: Signer) -> None:
    """With LABINTERP_API_TOKEN set, the CDS endpoints take the CDS Client's JWT (and only that): an EHR has no API
    token to send, and the API token opens nothing there."""
    token = "api-token-0123456789abcdef"
    app = create_app(config(tmp_path, signer, API_TOKEN=token))
    app.extensions["labinterp.cds"].clock = lambda: NOW
    c = app.test_client()
    assert c.get(DISCOVERY, headers=bearer(signer.token(AUD))).status_code == 200
    assert_refused(c.get(DISCOVERY, headers=bearer(token)))
    assert c.get("/queue").status_code == 401 and c.get("/queue", headers=bearer(token)).status_code == 200
