"""SMART Backend Services (issue 9 point 3) against HTTP mocked with `responses`: discovery of the token endpoint,
the signed client assertion (verified with the public key, RS384 and ES384), the token cached across calls and
threads and refreshed before expiry (a fake clock, no sleeping), one refresh and one retry on a 401, the FHIR calls'
retry policy on the token endpoint, and keys and settings refused at start without quoting a secret."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jwt
import pytest
import responses
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from labinterp.cli.main import cli
from labinterp.config import Settings
from labinterp.errors import FhirAuthError, FhirTemporaryError, InputError, SmartAuthError
from labinterp.fhir.client import BasicAuth, BearerAuth, FhirClient
from labinterp.fhir.retry import RetryPolicy
from labinterp.fhir.smart import ASSERTION_TYPE, SigningKey, SmartAuth, load_signing_key

BASE = "https://fhir.test/fhir"
DISCOVERY = f"{BASE}/.well-known/smart-configuration"
TOKEN_URL = "https://auth.test/oauth/token"
CLIENT_ID = "labinterp-backend"
SCOPE = "system/Patient.rs system/Observation.rs"
T0 = 1_900_000_000.0
CAPABILITY = {"resourceType": "CapabilityStatement"}
EXAMPLE = Path(__file__).resolve().parents[1] / "data" / "patients" / "p01.json"


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def pem(key: Any) -> bytes:
    return bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def jwk(key: Any, kid: str, **extra: str) -> dict[str, Any]:
    algorithm = RSAAlgorithm if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey) else ECAlgorithm
    return {**algorithm.to_jwk(key, as_dict=True), "kid": kid, **extra}


def smart(key: Any, alg: str = "RS384", clock: Clock | None = None, slept: list[float] | None = None, **kw: Any) -> SmartAuth:
    return SmartAuth(
        BASE,
        CLIENT_ID,
        SigningKey(key, "kid-1", alg),
        scope=SCOPE,
        retry=RetryPolicy(attempts=4, base_delay=0.5, max_delay=10.0, jitter=0.0),
        sleep=(slept if slept is not None else []).append,
        clock=clock or Clock(),
        **kw,
    )


def token(value: str = "tok-1", expires_in: Any = 300) -> dict[str, Any]:
    return {"access_token": value, "token_type": "bearer", "expires_in": expires_in, "scope": SCOPE}


def discovery(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "token_endpoint": TOKEN_URL,
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
    }
    doc.update(over)
    return {k: v for k, v in doc.items() if v is not None}


def token_calls(mock: responses.RequestsMock) -> list[Any]:
    return [c for c in mock.calls if c.request.url == TOKEN_URL]


def form(call: Any) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(call.request.body).items()}


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as r:
        yield r


# --- discovery and the assertion ----------------------------------------------------------------


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_discovery_then_a_signed_assertion_then_the_bearer_token(
    mocked: responses.RequestsMock, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey, alg: str
) -> None:
    key = rsa_key if alg == "RS384" else ec_key
    mocked.get(DISCOVERY, json=discovery())
    mocked.post(TOKEN_URL, json=token("tok-1"))
    mocked.get(f"{BASE}/metadata", json=CAPABILITY)
    clock = Clock()
    FhirClient(BASE, auth=smart(key, alg, clock)).metadata()

    assert [c.request.url for c in mocked.calls] == [DISCOVERY, TOKEN_URL, f"{BASE}/metadata"]
    assert "Authorization" not in mocked.calls[0].request.headers and "Authorization" not in mocked.calls[1].request.headers
    assert mocked.calls[2].request.headers["Authorization"] == "Bearer tok-1"
    sent = form(mocked.calls[1])
    assert sent["grant_type"] == "client_credentials" and sent["scope"] == SCOPE
    assert sent["client_assertion_type"] == ASSERTION_TYPE == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    assert mocked.calls[1].request.headers["Content-Type"] == "application/x-www-form-urlencoded"

    assertion = sent["client_assertion"]
    header = jwt.get_unverified_header(assertion)
    assert header == {"alg": alg, "kid": "kid-1", "typ": "JWT"}
    claims = jwt.decode(  # the signature checked with the public key; exp/iat against the fake clock below
        assertion, key.public_key(), algorithms=[alg], audience=TOKEN_URL, options={"verify_exp": False, "verify_iat": False}
    )
    assert claims["iss"] == claims["sub"] == CLIENT_ID and claims["aud"] == TOKEN_URL
    assert claims["iat"] == int(T0) and 0 < claims["exp"] - T0 <= 300
    assert isinstance(claims["jti"], str) and len(claims["jti"]) >= 16
    with pytest.raises(jwt.InvalidSignatureError):  # not signed by another key
        other = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            if alg == "RS384"
            else ec.generate_private_key(ec.SECP384R1())
        )
        jwt.decode(
            assertion,
            other.public_key(),
            algorithms=[alg],
            audience=TOKEN_URL,
            options={"verify_exp": False, "verify_iat": False},
        )


def test_every_assertion_has_a_new_jti(rsa_key: rsa.RSAPrivateKey) -> None:
    auth = smart(rsa_key, token_url=TOKEN_URL)
    jtis = {jwt.decode(auth.assertion(TOKEN_URL), options={"verify_signature": False})["jti"] for _ in range(20)}
    assert len(jtis) == 20


def test_a_configured_token_url_skips_discovery(mocked: responses.RequestsMock, rsa_key: rsa.RSAPrivateKey) -> None:
    mocked.post(TOKEN_URL, json=token())
    mocked.get(f"{BASE}/metadata", json=CAPABILITY)
    FhirClient(BASE, auth=smart(rsa_key, token_url=TOKEN_URL)).metadata()
    assert [c.request.url for c in mocked.calls] == [TOKEN_URL, f"{BASE}/metadata"]


@pytest.mark.parametrize(
    ("doc", "status", "message"),
    [
        (discovery(token_endpoint_auth_methods_supported=["client_secret_basic"]), 200, "does not list private_key_jwt"),
        (discovery(grant_types_supported=["authorization_code"]), 200, "does not list client_credentials"),
        (discovery(token_endpoint_auth_signing_alg_values_supported=["RS256"]), 200, "does not list RS384"),
        (discovery(token_endpoint=None), 200, "no token_endpoint: set LABINTERP_SMART_TOKEN_URL"),
        (discovery(token_endpoint="/token"), 200, "not an http(s) URL"),
        (discovery(token_endpoint="http://auth.test/token"), 200, "plain http while the FHIR server is https"),
        (["not", "an", "object"], 200, "not a JSON object"),
        ({"resourceType": "OperationOutcome"}, 404, "no SMART configuration here: set LABINTERP_SMART_TOKEN_URL"),
    ],
)
def test_discovery_that_cannot_be_used_is_a_clear_error(
    mocked: responses.RequestsMock, rsa_key: rsa.RSAPrivateKey, doc: Any, status: int, message: str
) -> None:
    mocked.get(DISCOVERY, json=doc, status=status)
    with pytest.raises(SmartAuthError, match=message.replace("(", r"\(").replace(")", r"\)")) as caught:
        FhirClient(BASE, auth=smart(rsa_key)).metadata()
    assert not caught.value.temporary and len(mocked.calls) == 1  # nothing retried, nothing sent to the FHIR server


def test_discovery_without_the_optional_lists_is_enough(mocked: responses.RequestsMock, rsa_key: rsa.RSAPrivateKey) -> None:
    mocked.get(DISCOVERY, json={"token_endpoint": TOKEN_URL})
    mocked.post(TOKEN_URL, json=token())
    mocked.get(f"{BASE}/metadata", json=CAPABILITY)
    FhirClient(BASE, auth=smart(rsa_key)).metadata()


# --- the token: cached, refreshed, shared ---------------------------------------------------------


def test_the_token_is_reused_across_calls_and_clients(mocked: responses.RequestsMock, rsa_key: rsa.RSAPrivateKey) -> None:
    mocked.get(DISCOVERY, json=discovery())
    mocked.post(TOKEN_URL, json=token("tok-1"))
    mocked.get(f"{BASE}/metadata", json=CAPABILITY)
    mocked.get(f"{BASE}/Patient/p1", json={"resourceType": "Patient", "id": "p1"})
    auth = smart(rsa_key)
    first = FhirClient(BASE, auth=auth)
    first.metadata()
    first.read("Patient", "p1")
    FhirClient(BASE, auth=auth).metadata()  # the service makes a client per request: the token outlives them
    assert len(token_calls(mocked)) == 1 and auth.token_requests == 1
    assert len([c for c in mocked.calls if c.request.url == DISCOVERY]) == 1
    fhir = [c for c in mocked.calls if str(c.request.url).startswith(BASE + "/") and c.request.url != DISCOVERY]
    assert [c.request.headers["Authorization"] for c in fhir] == ["Bearer tok-1"] * 3


def test_the_token_is_refreshed_before_it_expires(mocked: responses.RequestsMock, rsa_key: rsa.RSAPrivateKey) -> None:
    mocked.post(TOKEN_URL, json=token("tok-1", expires_in=300))
    mocked.post(TOKEN_URL, json=token("tok-2", expires_in=3600))
    mocked.post(TOKEN_URL, json=token("tok-3", expires_in=3600))
    clock = Clock()
    auth = smart(rsa_key, clock=clock, token_url=TOKEN_URL)
    assert auth.access_token() == "tok-1"
    clock.now = T0 + 269  # 300 s, refreshed 30 s (10 %) before the end
    assert auth.access_token() == "tok-1"
    clock.now = T0 + 270
    assert auth.access_token() == "tok-2"
    clock.now = T0 + 270 + 3539  # 3600 s: refreshed 60 s before the end
    assert auth.access_token() == "tok-2"
    clock.now = T0 + 270 + 3540
    assert auth.access_token() == "tok-3" and len(token_calls(mocked)) == 3
    later = jwt.decode(form(token_calls(mocked)[2])["client_assertion"], options={"verify_signature": False})
    assert later["iat"] == int(clock.now) and later["exp"] - later["iat"] <= 300  # each assertion from its own time


def test_expires_in_missing_or_as_text_is_read(mocked: responses.RequestsMock, rsa_key: rsa.RSAPrivateKey) -> None:
    mocked.post(TOKEN_URL, json={"access_token": "tok-1", "token_type": "Bearer"})
    mocked.post(TOKEN_URL, json=token("tok-2", expires_in="120"))
    clock = Clock()
    auth = smart(rsa_key, clock=clock, token_url=TOKEN_URL)
    assert auth.access_token() == "tok-1"
    clock.now = T0 + 269  # without expires_in: SMART's recommended 300 s
    assert auth.access_token() == "tok-1"
    clock.now = T0 + 270
    assert auth.access_token() == "tok-2"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"token_type": "bearer", "expires_in": 300}, "no usable access_token"),
        (token("has a space"), "no usable access_token"),
        (token("line\r\nX-Evil: 1"), "no usable access_token"),
        ({**token(), "token_type": "mac"}, "token_type is not bearer"),
        (token(expires_in=-5), "expires_in is not a number"),
        (token(expires_in=True), "expires_in is not a number"),
        ("<html>", "not a JSON object"),
    ],
)
def test_a_token_answer_that_cannot_be_used_is_refused(
    mocked: responses.RequestsMock, rsa_key: rsa.RSAPrivateKey, body: Any, message: str
) -> None:
    mocked.post(TOKEN_URL, **({"json": body} if isinstance(body, dict) else {"body": body}))
    with pytest.raises(SmartAuthError, match=message) as caught:
        smart(rsa_key, token_url=TOKEN_URL).access_token()
    assert "has a space" not in str(caught.value) and "X-Evil" not in str(caught.value)


def test_concurrent_calls_fetch_one_token(mocked: responses.RequestsMock, rsa_key: rsa.RSAPrivateKey) -> None:
    inside = threading.Event()

    def slow_token(request: Any) -> tuple[int, dict[str, str], str]:
        inside.set()
        threading.Event().wait(0.2)  # hold the token request open while the other threads arrive
        return 200, {"Content-Type": "application/json"}, json.dumps(token("tok-1"))

    mocked.add_callback(responses.POST, TOKEN_URL, callback=slow_token)
    mocked.get(f"{BASE}/metadata", json=CAPABILITY)
    auth = smart(rsa_key, token_url=TOKEN_URL)
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            start.wait()
            FhirClient(BASE, auth=auth).metadata()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not errors and inside.is_set()
    assert len(token_calls(mocked)) == 1 and auth.token_requests == 1
    fhir_calls = [c for c in mocked.calls if c.request.url == f"{BASE}/metadata"]
    assert len(fhir_calls) == 8 and {c.request.headers["Authorization"] for c in fhir_calls} == {"Bearer tok-1"}


# --- 401 from the FHIR server -------------------------------------------------------------------


def test_a_401_makes_one_refresh_and_one_retry(mocked: responses.RequestsMock, rsa_key: rsa.RSAPrivateKey) -> None:
    mocked.post(TOKEN_URL, json=token("tok-1"))
    mocked.post(TOKEN_URL, json=token("tok-2"))
    mocked.get(f"{BASE}/metadata", status=401, json={"resourceType": "OperationOutcome"})
    mocked.get(f"{BASE}/metadata", json=CAPABILITY)
    auth = smart(rsa_key, token_url=TOKEN_URL)
    c = FhirClient(BASE, auth=auth, sleep=lambda s: None)
    assert c.metadata() == CAPABILITY
    fhir = [c.request.headers["Authorization"] for c in mocked.calls if c.request.url == f"{BASE}/metadata"]
    assert fhir == ["Bearer tok-1", "Bearer tok-2"] and len(token_calls(mocked)) == 2
    assert c.stats.requests == 2 and c.stats.retries == 1


def test_a_second_401_is_the_answer(mocked: responses.RequestsMock, rsa_key: rsa.RSAPrivateKey) -> None:
    mocked.post(TOKEN_URL, json=token("tok-1"))
    mocked.post(TOKEN_URL, json=token("tok-2"))
    mocked.post(TOKEN_URL, json=token("tok-3"))
    mocked.get(f"{BASE}/Patient/p1", status=401)
    auth = smart(rsa_key, token_url=TOKEN_URL)
    with pytest.raises(FhirAuthError) as caught:
        FhirClient(BASE, auth=auth, sleep=lambda s: None).read("Patient", "p1")
    assert caught.value.status == 401 and not caught.value.temporary
    assert len(token_calls(mocked)) == 2 and len([c for c in mocked.calls if c.request.url == f"{BASE}/Patient/p1"]) == 2
    assert "tok-" not in str(caught.value)


def test_a_401_with_a_fixed_token_is_not_retried(mocked: responses.RequestsMock) -> None:
    mocked.get(f"{BASE}/metadata", status=401)
    with pytest.raises(FhirAuthError):
        FhirClient(BASE, token="fixed-token-0123456789").metadata()
    assert len(mocked.calls) == 1


def test_a_stale_401_does_not_drop_a_newer_token(rsa_key: rsa.RSAPrivateKey, mocked: responses.RequestsMock) -> None:
    """Two threads got a 401 with tok-1; the first refreshed to tok-2; the second's invalidate must keep tok-2."""
    mocked.post(TOKEN_URL, json=token("tok-1"))
    mocked.post(TOKEN_URL, json=token("tok-2"))
    auth = smart(rsa_key, token_url=TOKEN_URL)
    assert auth.access_token() == "tok-1"
    auth.invalidate("Bearer tok-1")
    assert auth.access_token() == "tok-2"
    auth.invalidate("Bearer tok-1")
    assert auth.access_token() == "tok-2" and len(token_calls(mocked)) == 2


# --- token endpoint errors --------------------------------------------------------------------------


def test_temporary_token_endpoint_errors_are_retried_with_the_fhir_policy(
    mocked: responses.RequestsMock, rsa_key: rsa.RSAPrivateKey
) -> None:
    mocked.post(TOKEN_URL, status=503, body="busy")
    mocked.post(TOKEN_URL, status=429, headers={"Retry-After": "2"}, json={"error": "slow_down"})
    mocked.post(TOKEN_URL, json=token("tok-1"))
    slept: list[float] = []
    auth = smart(rsa_key, slept=slept, token_url=TOKEN_URL)
    assert auth.access_token() == "tok-1"
    assert slept == [0.5, 2.0] and len(token_calls(mocked)) == 3
    jtis = {jwt.decode(form(c)["client_assertion"], options={"verify_signature": False})["jti"] for c in token_calls(mocked)}
    assert len(jtis) == 3  # a retry never replays an assertion


def test_token_endpoint_timeouts_end_as_a_temporary_error(mocked: responses.RequestsMock, rsa_key: rsa.RSAPrivateKey) -> None:
    import requests

    for _ in range(4):
        mocked.post(TOKEN_URL, body=requests.ConnectTimeout("no route"))
    slept: list[float] = []
    with pytest.raises(FhirTemporaryError) as caught:
        FhirClient(BASE, auth=smart(rsa_key, slept=slept, token_url=TOKEN_URL), sleep=lambda s: None).metadata()
    assert caught.value.temporary and slept == [0.5, 1.0, 2.0] and len(token_calls(mocked)) == 4
    assert not [c for c in mocked.calls if str(c.request.url).startswith(BASE)]  # not multiplied by the FHIR call's retries


def test_invalid_client_is_fatal_and_names_no_secret(
    mocked: responses.RequestsMock, rsa_key: rsa.RSAPrivateKey, caplog: pytest.LogCaptureFixture
) -> None:
    leaked = "eyJhbGciOiJSUzM4NCJ9.eyJpc3MiOiJsYWJpbnRlcnAifQ.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
    mocked.post(
        TOKEN_URL,
        status=400,
        json={"error": "invalid_client", "error_description": f"Signature check failed for assertion {leaked}"},
    )
    caplog.set_level(logging.DEBUG)
    auth = smart(rsa_key, token_url=TOKEN_URL)
    with pytest.raises(SmartAuthError) as caught:
        FhirClient(BASE, auth=auth).metadata()
    err = caught.value
    text = str(err)
    assert isinstance(err, FhirAuthError) and not err.temporary and err.status == 400 and len(mocked.calls) == 1
    assert text.startswith(
        "POST https://auth.test/oauth/token: HTTP 400: invalid_client (Signature check failed for assertion …)"
    )
    assert "LABINTERP_SMART_CLIENT_ID" in text
    sent = form(mocked.calls[0])["client_assertion"]
    key_text = pem(rsa_key).decode()
    for secret in (sent, leaked, key_text, key_text.splitlines()[1]):
        assert secret not in text and secret not in caplog.text and secret not in repr(auth)


def test_nothing_secret_is_logged_or_shown(
    mocked: responses.RequestsMock, rsa_key: rsa.RSAPrivateKey, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    mocked.post(TOKEN_URL, json=token("tok-secret-value"))
    mocked.get(f"{BASE}/metadata", status=401)
    mocked.get(f"{BASE}/metadata", status=403)
    auth = smart(rsa_key, token_url=TOKEN_URL)
    client = FhirClient(BASE, auth=auth)
    with pytest.raises(FhirAuthError) as caught:
        client.metadata()
    assertions = [form(c)["client_assertion"] for c in token_calls(mocked)]
    for shown in (caplog.text, str(caught.value), repr(auth), repr(client)):
        assert "tok-secret-value" not in shown and not any(a in shown for a in assertions)
    assert repr(auth) == "SmartAuth(client_id='labinterp-backend', kid='kid-1', alg='RS384')"


# --- keys ----------------------------------------------------------------------------------------------


def write(tmp_path: Path, name: str, data: bytes | str | dict[str, Any]) -> str:
    path = tmp_path / name
    if isinstance(data, dict):
        data = json.dumps(data)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return str(path)


def test_keys_from_pem_jwk_and_jwk_set(tmp_path: Path, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey) -> None:
    k = load_signing_key(write(tmp_path, "rsa.pem", pem(rsa_key)), kid="pem-kid")
    assert (k.kid, k.alg) == ("pem-kid", "RS384") and k.key.private_numbers() == rsa_key.private_numbers()
    k = load_signing_key(write(tmp_path, "ec.json", jwk(ec_key, "ec-1")))
    assert (k.kid, k.alg) == ("ec-1", "ES384")
    jwks = {"keys": [jwk(rsa_key.public_key(), "rsa-pub"), jwk(rsa_key, "rsa-1"), jwk(ec_key, "ec-1")]}
    path = write(tmp_path, "jwks.json", jwks)
    assert load_signing_key(path, kid="ec-1").alg == "ES384" and load_signing_key(path, kid="rsa-1").alg == "RS384"
    only = write(tmp_path, "one.json", {"keys": [jwk(rsa_key.public_key(), "rsa-pub"), jwk(ec_key, "ec-1", alg="ES384")]})
    assert load_signing_key(only).kid == "ec-1"  # the only private key
    assert load_signing_key(write(tmp_path, "ec.pem", pem(ec_key)), kid="k", alg="ES384").alg == "ES384"
    assert "PRIVATE" not in repr(k) and repr(k) == "SigningKey(kid='ec-1', alg='ES384')"


@pytest.mark.parametrize(
    ("make", "kid", "alg", "variable", "message"),
    [
        (lambda r, e: pem(r), None, None, "LABINTERP_SMART_KID", "required with a PEM key"),
        (lambda r, e: pem(ec.generate_private_key(ec.SECP256R1())), "k", None, "LABINTERP_SMART_KEY", "secp256r1"),
        (lambda r, e: jwk(ec.generate_private_key(ec.SECP256R1()), "p256"), None, None, "LABINTERP_SMART_KEY", "P-384"),
        (
            lambda r, e: pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)),
            "k",
            None,
            "LABINTERP_SMART_KEY",
            "1024 bits",
        ),
        (lambda r, e: pem(r), "k", "ES384", "LABINTERP_SMART_ALG", "the key signs RS384"),
        (lambda r, e: jwk(r, "r", alg="RS256"), None, None, "LABINTERP_SMART_KEY", "alg is RS256"),
        (lambda r, e: jwk(r.public_key(), "pub"), "pub", None, "LABINTERP_SMART_KEY", "public JWK"),
        (
            lambda r, e: r.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
            "k",
            None,
            "LABINTERP_SMART_KEY",
            "a public key",
        ),
        (
            lambda r, e: r.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")
            ),
            "k",
            None,
            "LABINTERP_SMART_KEY",
            "encrypted",
        ),
        (lambda r, e: {"keys": [jwk(r, "a"), jwk(e, "b")]}, None, None, "LABINTERP_SMART_KID", "2 private keys"),
        (lambda r, e: {"keys": [jwk(r, "a")]}, "zz", None, "LABINTERP_SMART_KID", "no key with this kid"),
        (lambda r, e: {k: v for k, v in jwk(r, "a").items() if k != "kid"}, None, None, "LABINTERP_SMART_KID", "has no kid"),
        (
            lambda r, e: {"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQ", "kid": "h", "d": "x"},
            None,
            None,
            "LABINTERP_SMART_KEY",
            "kty oct",
        ),
        (lambda r, e: {**jwk(r, "a"), "n": "!!"}, None, None, "LABINTERP_SMART_KEY", "cannot be read"),
        (
            lambda r, e: b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END PRIVATE KEY-----\n",
            "k",
            None,
            "LABINTERP_SMART_KEY",
            "not a PEM",
        ),
        (lambda r, e: "{not json", None, None, "LABINTERP_SMART_KEY", "not JSON"),
        (lambda r, e: "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC", None, None, "LABINTERP_SMART_KEY", "neither a PEM"),
    ],
)
def test_unusable_keys_are_refused_naming_the_variable(
    tmp_path: Path,
    rsa_key: rsa.RSAPrivateKey,
    ec_key: ec.EllipticCurvePrivateKey,
    make: Any,
    kid: str | None,
    alg: str | None,
    variable: str,
    message: str,
) -> None:
    data = make(rsa_key, ec_key)
    path = write(tmp_path, "key", data)
    with pytest.raises(InputError, match=message) as caught:
        load_signing_key(path, kid, alg)
    assert caught.value.where == variable
    raw = Path(path).read_text()
    for line in raw.splitlines():
        if len(line) > 20:
            assert line not in str(caught.value)
    for part in ("c2VjcmV0", '"d"', '"n"'):
        assert part not in str(caught.value)


def test_a_missing_key_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot be read") as caught:
        load_signing_key(str(tmp_path / "nope.pem"), "k")
    assert caught.value.where == "LABINTERP_SMART_KEY"


# --- settings: one way to authenticate, checked at start -----------------------------------------------


@pytest.fixture
def key_file(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> str:
    return write(tmp_path, "key.json", {"keys": [jwk(rsa_key, "rsa-1")]})


def smart_config(key_file: str, **more: Any) -> dict[str, Any]:
    return {"FHIR_BASE_URL": BASE, "SMART_CLIENT_ID": CLIENT_ID, "SMART_KEY": key_file, **more}


def test_settings_build_the_smart_client(mocked: responses.RequestsMock, key_file: str) -> None:
    settings = Settings.load(smart_config(key_file, SMART_TOKEN_URL=TOKEN_URL, FHIR_RETRIES=2))
    auth = settings.fhir_auth()
    assert (
        isinstance(auth, SmartAuth) and auth.key.kid == "rsa-1" and auth.key.alg == "RS384" and auth.scope.startswith("system/")
    )
    assert auth.retry.attempts == 2
    mocked.post(TOKEN_URL, json=token("tok-1"))
    mocked.get(f"{BASE}/metadata", json=CAPABILITY)
    client = settings.client(auth=auth)
    assert client.auth is auth and client.retry.attempts == 2
    client.metadata()
    settings.client(auth=auth).metadata()
    assert len(token_calls(mocked)) == 1
    assert isinstance(settings.client().auth, SmartAuth)  # a one-shot client (the CLI) builds its own


def test_settings_build_bearer_and_basic_without_showing_them() -> None:
    bearer = Settings.load({"FHIR_BASE_URL": BASE, "FHIR_TOKEN": "tok-0123456789abcdef"})
    basic = Settings.load({"FHIR_BASE_URL": BASE, "FHIR_BASIC": "alice:pw-s3cr3t"})
    assert isinstance(bearer.fhir_auth(), BearerAuth) and isinstance(basic.fhir_auth(), BasicAuth)
    assert Settings.load({"FHIR_BASE_URL": BASE}).fhir_auth() is None
    for client, secret in ((bearer.client(), "tok-0123456789abcdef"), (basic.client(), "pw-s3cr3t")):
        assert secret not in repr(client) and secret not in repr(client.auth)
    assert repr(basic.client().auth) == "BasicAuth(user='alice', password=…)"


@pytest.mark.parametrize(
    ("extra", "variable"),
    [
        ({"FHIR_TOKEN": "tok-0123456789abcdef"}, "LABINTERP_SMART_KEY"),
        ({"FHIR_BASIC": "alice:pw-s3cr3t"}, "LABINTERP_SMART_KEY"),
    ],
)
def test_two_ways_to_authenticate_are_refused(key_file: str, extra: dict[str, str], variable: str) -> None:
    with pytest.raises(InputError, match="authenticate to the FHIR server one way") as caught:
        Settings.load(smart_config(key_file, **extra))
    assert caught.value.where == variable
    assert "tok-0123456789abcdef" not in str(caught.value) and "pw-s3cr3t" not in str(caught.value)
    with pytest.raises(InputError, match="LABINTERP_FHIR_TOKEN and LABINTERP_FHIR_BASIC"):
        Settings.load({"FHIR_TOKEN": "tok-0123456789abcdef", "FHIR_BASIC": "alice:pw-s3cr3t"})
    with pytest.raises(InputError):
        FhirClient(BASE, token="tok-0123456789abcdef", basic=("alice", "pw-s3cr3t"))


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"SMART_KEY": "KEY"}, "needs LABINTERP_SMART_CLIENT_ID"),
        ({"SMART_CLIENT_ID": CLIENT_ID}, "LABINTERP_SMART_CLIENT_ID .* needs the private key file"),
        ({"SMART_KID": "k"}, "LABINTERP_SMART_KID .* needs the private key file"),
        ({"SMART_CLIENT_ID": CLIENT_ID, "SMART_KEY": "/nonexistent/key.pem", "SMART_KID": "k"}, "cannot be read"),
    ],
)
def test_incomplete_smart_settings_stop_the_start(key_file: str, config: dict[str, str], message: str) -> None:
    config = {k: key_file if v == "KEY" else v for k, v in config.items()}
    with pytest.raises(InputError, match=message) as caught:
        Settings.load(config)
    assert caught.value.where == "LABINTERP_SMART_KEY"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LABINTERP_SMART_ALG", "RS256"),
        ("LABINTERP_SMART_CLIENT_ID", "bad\nid"),
        ("LABINTERP_SMART_SCOPE", 'system/Patient.rs "quoted"'),
        ("LABINTERP_SMART_TOKEN_URL", "ftp://auth.test/token"),
    ],
)
def test_smart_values_are_checked(key_file: str, variable: str, value: str) -> None:
    with pytest.raises(InputError) as caught:
        Settings.load(smart_config(key_file, **{variable.removeprefix("LABINTERP_"): value}))
    assert caught.value.where == variable


def test_an_http_token_url_for_an_https_server_is_refused(key_file: str) -> None:
    settings = Settings.load(smart_config(key_file, SMART_TOKEN_URL="http://auth.test/token"))
    with pytest.raises(InputError, match="plain http") as caught:
        settings.fhir_auth()
    assert caught.value.where == "LABINTERP_SMART_TOKEN_URL"


def test_the_cli_exits_2_on_an_unusable_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ec_key: Any) -> None:
    bad = write(tmp_path, "p256.pem", pem(ec.generate_private_key(ec.SECP256R1())))
    for name, value in smart_config(bad, SMART_KID="k").items():
        monkeypatch.setenv(f"LABINTERP_{name}", value)
    r = CliRunner().invoke(cli, ["interpret", "--bundle", str(EXAMPLE), "--out", str(tmp_path / "o.json")])
    assert r.exit_code == 2 and "LABINTERP_SMART_KEY" in r.stderr and "P-384" in r.stderr
    assert "PRIVATE KEY" not in r.stderr and not (tmp_path / "o.json").exists()


def test_the_token_is_never_sent_outside_the_fhir_base(mocked: responses.RequestsMock, rsa_key: rsa.RSAPrivateKey) -> None:
    import requests

    from labinterp.errors import FhirLinkError

    mocked.post(TOKEN_URL, json=token("tok-1"))
    mocked.get("https://elsewhere.test/fhir/metadata", json=CAPABILITY)
    with pytest.raises(FhirLinkError):
        requests.get("https://elsewhere.test/fhir/metadata", auth=smart(rsa_key, token_url=TOKEN_URL), timeout=5)
    assert not [c for c in mocked.calls if "elsewhere" in str(c.request.url)] and not token_calls(mocked)
