"""SMART Backend Services client authentication (https://hl7.org/fhir/smart-app-launch/backend-services.html):
labinterp asks the authorization server for an access token with the `client_credentials` grant, authenticating
with a JWT it signs with its private key (`private_key_jwt`), and sends the token to the FHIR server as a bearer
token.

    SmartAuth (a requests AuthBase, given to FhirClient as `auth=`)
      token endpoint  LABINTERP_SMART_TOKEN_URL, else `token_endpoint` of [base]/.well-known/smart-configuration
                      (which must offer private_key_jwt and client_credentials when it lists methods and grants)
      assertion       header {alg: RS384|ES384, kid, typ: JWT}; claims iss = sub = client id, aud = token endpoint,
                      exp = now + 4 min (SMART: at most 5), iat, a random jti; a new one for every token request
      token           cached and shared by every thread; refreshed min(60 s, 10 % of its lifetime) before it
                      expires; one fetch at a time (concurrent callers wait for it); a 401 from the FHIR server
                      drops it (`invalidate`) and FhirClient tries once more with a new one
      errors          408/429/5xx and no answer: retried with the FHIR calls' RetryPolicy, then FhirTemporaryError;
                      anything else (400 invalid_client, 401, a discovery without a token endpoint, an answer without
                      a bearer token): SmartAuthError naming the endpoint and the OAuth error code

Keys (`load_signing_key`): a PEM private key (its kid given) or a JWK / JWK Set (the key picked by kid, else the only
private key); RSA of 2048 bits or more signs RS384, EC on P-384 signs ES384; anything else is refused at start with
an InputError naming the variable. The key, the assertion and the tokens are never logged, never in an error and
never in a repr."""

from __future__ import annotations

import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
import requests
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from requests.auth import AuthBase

from labinterp.errors import FhirError, FhirLinkError, FhirTemporaryError, InputError, SmartAuthError, shown_url
from labinterp.fhir.retry import TEMPORARY, RetryPolicy, parse_retry_after
from labinterp.fhir.search import base_parts, within_base

log = logging.getLogger("labinterp.fhir.smart")

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_SECONDS = 240  # SMART: exp at most 5 minutes ahead; 4 leave room for the servers' clock skew
REFRESH_MARGIN = 60.0  # seconds before expiry a token is replaced (at most 10 % of its lifetime)
DEFAULT_LIFETIME = 300.0  # a token answer without expires_in (SMART requires it; 300 s is its recommendation)
MIN_RSA_BITS = 2048
MAX_KEY_FILE = 1_000_000
KEY_VAR, KID_VAR, ALG_VAR = "LABINTERP_SMART_KEY", "LABINTERP_SMART_KID", "LABINTERP_SMART_ALG"
BEARER = re.compile(r"[\x21-\x7e]{1,8192}")  # printable ASCII: a token that cannot break a header (or be echoed by one)
ERROR_CODE = re.compile(r"[a-z_]{1,64}")
SMART_NAME = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]{0,253}[\x21-\x7e])?")  # a client_id or kid: printable, 1-255
SMART_SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+(?: [\x21\x23-\x5b\x5d-\x7e]+)*")  # RFC 6749 scope-tokens
CREDENTIAL_LIKE = re.compile(r"[A-Za-z0-9_\-.+/=~]{24,}")  # JWTs, tokens, key material in a server's description
HINTS = {
    "invalid_client": "check LABINTERP_SMART_CLIENT_ID, and that the public key of the kid is registered for it",
    "invalid_scope": "check LABINTERP_SMART_SCOPE against what the client is allowed",
    "unauthorized_client": "the client may not use the client_credentials grant",
    "invalid_grant": "the assertion was refused: check the clocks, the kid and the key",
}

SigningKeyType = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True, repr=False)
class SigningKey:
    key: SigningKeyType
    kid: str
    alg: str  # RS384 | ES384

    def __repr__(self) -> str:
        return f"SigningKey(kid={self.kid!r}, alg={self.alg!r})"


def load_signing_key(path: str, kid: str | None = None, alg: str | None = None) -> SigningKey:
    """The private key in `path` (LABINTERP_SMART_KEY) as PEM or a JWK / JWK Set, with its kid and algorithm.
    InputError naming the variable for anything unusable; the file's content is never quoted."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_KEY_FILE + 1)
    except OSError as exc:
        raise InputError(KEY_VAR, f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    if len(data) > MAX_KEY_FILE:
        raise InputError(KEY_VAR, f"{path}: too large for a key file")
    text = data.lstrip()
    if text.startswith(b"{"):
        key, kid, jwk_alg = _from_jwk(path, data, kid)
    elif text.startswith(b"-----BEGIN"):
        key = _from_pem(path, data)
        if not kid:
            raise InputError(KID_VAR, "is required with a PEM key: the kid under which its public key is registered")
        jwk_alg = None
    else:
        raise InputError(KEY_VAR, f"{path}: neither a PEM private key nor a JWK (Set)")
    derived = _algorithm(path, key)
    for variable, wanted in ((ALG_VAR, alg), (KEY_VAR, jwk_alg)):
        if wanted and wanted != derived:
            what = "is" if variable == ALG_VAR else f"{path}: the JWK's alg is"
            raise InputError(variable, f"{what} {wanted}, but the key signs {derived} (SMART: RSA → RS384, EC P-384 → ES384)")
    return SigningKey(key, kid, derived)


def _from_pem(path: str, data: bytes) -> SigningKeyType:
    if b"PUBLIC KEY-----" in data and b"PRIVATE KEY-----" not in data:
        raise InputError(KEY_VAR, f"{path}: a public key; the private key is needed (its public key is what the server knows)")
    try:
        key = load_pem_private_key(data, password=None)
    except TypeError:
        raise InputError(
            KEY_VAR, f"{path}: an encrypted private key; give it unencrypted (and readable by labinterp only)"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise InputError(KEY_VAR, f"{path}: not a PEM private key that can be read") from None
    return _private(path, key)


def _from_jwk(path: str, data: bytes, kid: str | None) -> tuple[SigningKeyType, str, str | None]:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        raise InputError(KEY_VAR, f"{path}: not JSON (expected a JWK or a JWK Set)") from None
    if not isinstance(doc, dict):
        raise InputError(KEY_VAR, f"{path}: expected a JWK or a JWK Set (a JSON object)")
    keys = doc.get("keys") if "keys" in doc else [doc]
    if not isinstance(keys, list) or not all(isinstance(k, dict) for k in keys):
        raise InputError(KEY_VAR, f"{path}: `keys` must be a list of JWKs")
    if kid:
        chosen = [k for k in keys if k.get("kid") == kid]
        if not chosen:
            raise InputError(KID_VAR, f"no key with this kid in {path}")
        if len(chosen) > 1:
            raise InputError(KID_VAR, f"several keys with this kid in {path}")
    else:
        chosen = [k for k in keys if "d" in k]
        if len(chosen) != 1:
            found = "no private key" if not chosen else f"{len(chosen)} private keys"
            raise InputError(KID_VAR, f"{path} holds {found}: set LABINTERP_SMART_KID to the kid of the key to sign with")
    jwk = chosen[0]
    if "d" not in jwk:
        raise InputError(KEY_VAR, f"{path}: the key is a public JWK; the private key (with `d`) is needed")
    own_kid = jwk.get("kid")
    if kid is None:
        if not isinstance(own_kid, str) or not own_kid:
            raise InputError(KID_VAR, f"the JWK in {path} has no kid: set LABINTERP_SMART_KID")
        kid = own_kid
    kty = jwk.get("kty")
    try:
        if kty == "RSA":
            key: Any = RSAAlgorithm.from_jwk(jwk)
        elif kty == "EC":
            key = ECAlgorithm.from_jwk(jwk)
        else:
            raise InputError(KEY_VAR, f"{path}: a JWK of kty {kty!s:.10}: SMART signs with RSA (RS384) or EC P-384 (ES384)")
    except (jwt.exceptions.PyJWTError, ValueError, KeyError, TypeError):
        raise InputError(KEY_VAR, f"{path}: a {kty} JWK that cannot be read") from None
    jwk_alg = jwk.get("alg")
    return _private(path, key), kid, jwk_alg if isinstance(jwk_alg, str) else None


def _private(path: str, key: Any) -> SigningKeyType:
    if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        return key
    if isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise InputError(KEY_VAR, f"{path}: a public key; the private key is needed")
    raise InputError(KEY_VAR, f"{path}: a {type(key).__name__.lstrip('_')}: SMART signs with RSA (RS384) or EC P-384 (ES384)")


def _algorithm(path: str, key: SigningKeyType) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise InputError(KEY_VAR, f"{path}: an RSA key of {key.key_size} bits: use {MIN_RSA_BITS} or more")
        return "RS384"
    if isinstance(key.curve, ec.SECP384R1):
        return "ES384"
    raise InputError(KEY_VAR, f"{path}: an EC key on {key.curve.name}: SMART's ES384 needs P-384 (secp384r1)")


@dataclass(frozen=True)
class _Token:
    value: str
    refresh_at: float  # clock time from which it is replaced before use


class SmartAuth(AuthBase):
    """Adds `Authorization: Bearer <access token>` to requests inside the FHIR base (and refuses any other: a
    FhirLinkError, the token is not sent). Share one instance across clients and threads: it holds the cached token.

    `session`, `sleep` and `clock` (wall-clock seconds, as the assertion's `exp`) are injectable for tests."""

    def __init__(
        self,
        fhir_base_url: str,
        client_id: str,
        key: SigningKey,
        *,
        scope: str,
        token_url: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: tuple[float, float] = (5.0, 30.0),
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        base_parts(fhir_base_url)  # InputError for a base that is no http(s) URL or carries a user or password
        if token_url is not None and (problem := _endpoint_problem(token_url, fhir_base_url)):
            raise InputError("LABINTERP_SMART_TOKEN_URL", problem)
        self.fhir_base_url = fhir_base_url.rstrip("/")
        self.client_id, self.key, self.scope, self.retry, self.timeout = client_id, key, scope, retry or RetryPolicy(), timeout
        self.session = session or requests.Session()
        self.sleep, self.clock = sleep, clock
        self.token_requests = 0  # token endpoint calls that returned a token (tests and stats)
        self._token_url = token_url
        self._token: _Token | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SmartAuth(client_id={self.client_id!r}, kid={self.key.kid!r}, alg={self.key.alg!r})"

    # --- requests' AuthBase -------------------------------------------------------------------

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        if not within_base(str(r.url), self.fhir_base_url):
            raise FhirLinkError(
                str(r.method), str(r.url), None, "outside the FHIR base: the SMART access token is not sent there"
            )
        r.headers["Authorization"] = f"Bearer {self.access_token()}"
        return r

    def secrets(self) -> list[str]:
        """The access token held now (error texts are scrubbed of it); the private key never leaves the key object."""
        token = self._token
        return [token.value] if token is not None else []

    def invalidate(self, sent: str | None) -> None:
        """The FHIR server refused a request (401): drop the token that request carried (`sent`: its Authorization
        header), unless another thread has already replaced it. The next request fetches a new one."""
        with self._lock:
            if self._token is not None and (sent is None or sent == f"Bearer {self._token.value}"):
                self._token = None

    # --- the token ------------------------------------------------------------------------------

    def access_token(self) -> str:
        """The cached access token, or a new one when there is none or it is within its refresh margin. One thread
        fetches; the others wait for it and use the same token."""
        with self._lock:
            if self._token is None or self.clock() >= self._token.refresh_at:
                self._token = self._fetch_token()
            return self._token.value

    def token_endpoint(self) -> str:
        """LABINTERP_SMART_TOKEN_URL, or discovered once from [base]/.well-known/smart-configuration."""
        if self._token_url is None:
            self._token_url = self._discover()
        return self._token_url

    def assertion(self, token_url: str) -> str:
        """A new signed client assertion for `token_url` (never logged: it authenticates labinterp for 4 minutes)."""
        now = int(self.clock())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": token_url,
            "exp": now + ASSERTION_SECONDS,
            "iat": now,
            "jti": secrets.token_urlsafe(24),
        }
        return jwt.encode(claims, self.key.key, algorithm=self.key.alg, headers={"kid": self.key.kid, "typ": "JWT"})

    def _fetch_token(self) -> _Token:
        url = self.token_endpoint()

        def post() -> requests.Response:
            form = {
                "grant_type": "client_credentials",
                "scope": self.scope,
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": self.assertion(url),  # a new jti for every try
            }
            return self.session.post(url, data=form, headers={"Accept": "application/json"}, timeout=self.timeout)

        started = self.clock()
        status, body = self._call("POST", url, post, "no token endpoint at this address")
        if not isinstance(body, dict):
            raise SmartAuthError("POST", url, status, "the token endpoint answered with something that is not a JSON object")
        value = body.get("access_token")
        if not isinstance(value, str) or not BEARER.fullmatch(value):
            raise SmartAuthError("POST", url, status, "the token endpoint's answer has no usable access_token")
        if str(body.get("token_type", "")).lower() != "bearer":
            raise SmartAuthError("POST", url, status, "the token endpoint's token_type is not bearer")
        lifetime = body.get("expires_in", DEFAULT_LIFETIME)
        if isinstance(lifetime, str) and lifetime.isdigit():
            lifetime = int(lifetime)
        if isinstance(lifetime, bool) or not isinstance(lifetime, int | float) or not 0 < lifetime < 10**7:
            raise SmartAuthError("POST", url, status, "the token endpoint's expires_in is not a number of seconds")
        self.token_requests += 1
        log.info("SMART access token from %s, valid %d s", shown_url(url), lifetime)
        return _Token(value, started + lifetime - min(REFRESH_MARGIN, lifetime / 10))

    def _discover(self) -> str:
        url = f"{self.fhir_base_url}/.well-known/smart-configuration"

        def get() -> requests.Response:
            return self.session.get(url, headers={"Accept": "application/json"}, timeout=self.timeout)

        status, body = self._call("GET", url, get, "no SMART configuration here: set LABINTERP_SMART_TOKEN_URL")
        hint = ": set LABINTERP_SMART_TOKEN_URL"
        if not isinstance(body, dict):
            raise SmartAuthError("GET", url, status, f"the SMART configuration is not a JSON object{hint}")
        endpoint = body.get("token_endpoint")
        if not isinstance(endpoint, str) or not endpoint:
            raise SmartAuthError("GET", url, status, f"the SMART configuration has no token_endpoint{hint}")
        if problem := _endpoint_problem(endpoint, self.fhir_base_url):
            raise SmartAuthError("GET", url, status, f"the SMART configuration's token_endpoint: {problem}")
        for name, needed in (
            ("token_endpoint_auth_methods_supported", "private_key_jwt"),
            ("grant_types_supported", "client_credentials"),
            ("token_endpoint_auth_signing_alg_values_supported", self.key.alg),
        ):
            offered = body.get(name)
            if isinstance(offered, list) and needed not in offered:
                raise SmartAuthError("GET", url, status, f"the server's {name} does not list {needed}")
        return endpoint

    def _call(self, method: str, url: str, send: Callable[[], requests.Response], not_found: str) -> tuple[int, Any]:
        """`send` tried with the FHIR calls' RetryPolicy: 408/429/5xx and no answer are retried (Retry-After honoured),
        then FhirTemporaryError; another error status is a SmartAuthError with the OAuth error code."""
        attempt = 1
        while True:
            try:
                resp = send()
            except (requests.Timeout, requests.ConnectionError) as exc:
                err: FhirError = FhirTemporaryError(method, url, None, f"{type(exc).__name__}: the server did not answer")
                retry_after = None
            else:
                body = _json(resp)
                if resp.status_code < 400:
                    return resp.status_code, body
                err = _token_error(method, url, resp.status_code, body, not_found)
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            if not err.temporary or attempt >= self.retry.attempts:
                log.info("SMART %s %s failed: HTTP %s", method, shown_url(url), err.status)
                raise err
            wait = self.retry.delay(attempt, retry_after)
            log.info("SMART %s %s: HTTP %s, retry %d in %.1f s", method, shown_url(url), err.status, attempt, wait)
            self.sleep(wait)
            attempt += 1


def _endpoint_problem(endpoint: str, fhir_base_url: str) -> str | None:
    """What is wrong with a token endpoint, if anything: it must be an absolute http(s) URL with a host and no user or
    password, and https when the FHIR server is (the assertion must not travel in the clear when the server is reached
    with TLS)."""
    try:
        scheme = base_parts(endpoint)[0]
    except InputError:
        return "is not an http(s) URL with a host (and no user, password, query or fragment)"
    if scheme == "http" and base_parts(fhir_base_url)[0] == "https":
        return "is plain http while the FHIR server is https"
    return None


def _token_error(method: str, url: str, status: int, body: Any, not_found: str) -> FhirError:
    """The error for a token endpoint's (or discovery's) error status: temporary as FHIR calls are, else SmartAuthError
    with RFC 6749's error code and the server's description, anything that looks like a credential cut out."""
    if status in TEMPORARY:
        return FhirTemporaryError(method, url, status, "the authorization server is unavailable")
    code = body.get("error") if isinstance(body, dict) else None
    code = code if isinstance(code, str) and ERROR_CODE.fullmatch(code) else None
    described = body.get("error_description") if isinstance(body, dict) else None
    message = code or (not_found if status in (404, 410) else "refused")
    if isinstance(described, str) and described.strip():
        message += f" ({_redacted(described)})"
    if code in HINTS:
        message += f": {HINTS[code]}"
    return SmartAuthError(method, url, status, message)


def _redacted(text: str) -> str:
    flat = " ".join(text.split())[:200]
    return CREDENTIAL_LIKE.sub("…", flat)


def _json(resp: requests.Response) -> Any:
    if not resp.content:
        return None
    try:
        return resp.json()
    except (ValueError, RecursionError):
        return None
