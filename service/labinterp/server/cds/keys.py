"""The trusted issuers' JWK Sets: the public keys CDS Clients sign their JWTs with (CDS Hooks 2.0, Trusting CDS Clients).

A JWK Set comes from a file (read at start, re-read on an unknown key id) or an https URL (fetched on first use and
cached for `max_age`). A token naming a key id the set does not hold makes it refetch, at most once per
`min_refresh` seconds (a rotated key is picked up; a flood of made-up key ids costs one fetch a minute). Only
public EC P-384 (ES384) and RSA (RS384, 2048 bits or more) signing keys are kept: symmetric (oct) and private keys,
other curves and other uses are left out, so a key can never be taken for an HMAC secret."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from labinterp.server.cds.config import IssuerSource

log = logging.getLogger("labinterp.cds.keys")

ALGORITHMS = ("ES384", "RS384")  # the only signatures accepted (CDS Hooks 2.0)
MIN_RSA_BITS = 2048
MAX_JWKS_BYTES = 1_000_000


class KeySetError(Exception):
    """A JWK Set that cannot be read or fetched; the message names no key material."""


@dataclass(frozen=True)
class TrustedKey:
    kid: str
    algorithm: str  # "ES384" | "RS384": the one algorithm this key verifies
    key: Any  # a cryptography public key object


def trusted_key(data: Any) -> TrustedKey | str:
    """A JWK as a key this service verifies with, or why it is left out."""
    if not isinstance(data, dict):
        return "not a JSON object"
    kid = data.get("kid")
    if not isinstance(kid, str) or not kid:
        return "no key id (kid)"
    kty = data.get("kty")
    if kty not in ("EC", "RSA"):
        return "not an EC or RSA key"
    if "d" in data or any(p in data for p in ("p", "q", "k")):
        return "holds private or symmetric key material"
    if data.get("use", "sig") != "sig":
        return "not a signing key (use)"
    ops = data.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        return "key_ops does not allow verify"
    algorithm = "ES384" if kty == "EC" else "RS384"
    if data.get("alg", algorithm) != algorithm:
        return f"alg is not {algorithm}"
    if kty == "EC" and data.get("crv") != "P-384":
        return "not a P-384 curve (ES384)"
    try:
        key = jwt.PyJWK(data, algorithm).key
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
        return "its parameters cannot be read"
    if kty == "EC" and not isinstance(key, EllipticCurvePublicKey):
        return "not an EC public key"
    if kty == "RSA" and (not isinstance(key, RSAPublicKey) or key.key_size < MIN_RSA_BITS):
        return f"not an RSA public key of at least {MIN_RSA_BITS} bits"
    return TrustedKey(kid, algorithm, key)


def parse_jwks(data: Any, where: str) -> dict[str, TrustedKey]:
    """The usable keys of a JWK Set by key id; KeySetError when it is no JWK Set or holds no usable key."""
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise KeySetError(f"{where}: not a JWK Set (expected an object with a 'keys' list)")
    keys: dict[str, TrustedKey] = {}
    for n, item in enumerate(data["keys"]):
        got = trusted_key(item)
        if isinstance(got, str):
            log.info("JWK Set %s: key %d left out: %s", where, n, got)
        else:
            keys[got.kid] = got
    if not keys:
        raise KeySetError(f"{where}: no usable ES384 (EC P-384) or RS384 (RSA) public signing key with a kid")
    return keys


class KeySet:
    """One trusted issuer's keys, cached; thread-safe."""

    def __init__(
        self,
        source: IssuerSource,
        *,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_age: float = 3600.0,
        min_refresh: float = 60.0,
        timeout: tuple[float, float] = (3.05, 5.0),
    ) -> None:
        self.source = source
        self.session = session or requests.Session()
        self.clock, self.max_age, self.min_refresh, self.timeout = clock, max_age, min_refresh, timeout
        self._keys: dict[str, TrustedKey] | None = None
        self._loaded_at = 0.0
        self._refetched_at: float | None = None  # the last refetch an unknown kid caused
        self._lock = threading.Lock()
        self.fetches = 0  # loads attempted (tests and the log read it)
        if source.path is not None:  # a file is read at start: a broken one stops the service
            self._load()

    def key(self, kid: str) -> TrustedKey | None:
        """The key with this id; None when the (refreshed) set does not hold it. KeySetError when no set can be had."""
        with self._lock:
            now = self.clock()
            if self._keys is None or (self.source.url is not None and now - self._loaded_at >= self.max_age):
                self._refresh()
            assert self._keys is not None
            found = self._keys.get(kid)
            if found is None and (self._refetched_at is None or now - self._refetched_at >= self.min_refresh):
                self._refetched_at = now
                self._refresh()
                found = self._keys.get(kid)
            return found

    def _refresh(self) -> None:
        """Load again; a failure keeps the keys already held (and is raised only when there are none)."""
        try:
            self._load()
        except KeySetError as exc:
            if self._keys is None:
                raise
            log.warning("JWK Set of a trusted issuer not refreshed, the cached keys kept: %s", exc)

    def _load(self) -> None:
        self.fetches += 1
        where = self.source.where
        if self.source.path is not None:
            try:
                data = json.loads(self.source.path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
                raise KeySetError(f"{where}: cannot be read as JSON ({type(exc).__name__})") from None
        else:
            assert self.source.url is not None
            data = self._fetch(self.source.url)
        self._keys = parse_jwks(data, where)
        self._loaded_at = self.clock()
        log.info("JWK Set loaded: %s (%d keys)", where, len(self._keys))

    def _fetch(self, url: str) -> Any:
        try:
            resp = self.session.get(url, timeout=self.timeout, headers={"Accept": "application/json"}, allow_redirects=False)
        except requests.RequestException as exc:
            raise KeySetError(f"{url}: not fetched ({type(exc).__name__})") from None
        if resp.status_code != 200:
            raise KeySetError(f"{url}: HTTP {resp.status_code}")
        if len(resp.content) > MAX_JWKS_BYTES:
            raise KeySetError(f"{url}: larger than {MAX_JWKS_BYTES} bytes")
        try:
            return resp.json()
        except (ValueError, RecursionError):
            raise KeySetError(f"{url}: not JSON") from None
