"""Verifying the JWT a CDS Client sends with every call (CDS Hooks 2.0, Trusting CDS Clients).

`Authorization: Bearer <JWT>`, signed ES384 or RS384 by a trusted issuer (`iss`) with a key of its JWK Set (`kid`),
`aud` = the URL the client called, `exp`, `iat` and `jti` present, the token used once. The header's `alg` is
checked against the two accepted algorithms before anything is verified, and must be the algorithm of the key the
`kid` names: `none` and HMAC (HS256/384/512) are refused explicitly, and no public key is ever used as an HMAC
secret (key confusion). Every refusal is an AuthError whose description quotes nothing of the token.

The replay cache is in memory, per process: with several replicas behind a load balancer a token replayed to
another replica within its lifetime is not detected (docs/cds-hooks.md).

Tokens are short-lived: CDS Hooks 2.0 says `exp` should be no more than five minutes ahead. A token whose `exp` is
more than MAX_LIFETIME_SECONDS (plus the clock-skew leeway) after now, or whose `iat` is more than that in the past
or more than the leeway in the future, is refused; so the replay cache holds each `jti` at most that long (until
its token's `exp` plus the leeway)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt

from labinterp.server.cds.keys import ALGORITHMS, KeySet, KeySetError

LEEWAY_SECONDS = 60.0  # clock skew allowed on exp and iat
MAX_LIFETIME_SECONDS = 300.0  # CDS Hooks 2.0: exp no more than 5 minutes ahead (and so iat no more than 5 minutes ago)
REQUIRED_CLAIMS = ("iss", "aud", "exp", "iat", "jti")
MAX_REPLAY_ENTRIES = 1_000_000


class AuthError(Exception):
    """A call that is not authenticated: `description` says why, in words that quote nothing of the token."""

    def __init__(self, description: str) -> None:
        self.description = description
        super().__init__(description)


@dataclass(frozen=True)
class Caller:
    """Who called, once verified: the issuer, the client id (`sub`, when given) and the token's id."""

    iss: str
    sub: str | None
    jti: str


class ReplayCache:
    """(iss, jti) pairs seen, each kept until its token can no longer be accepted; thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.time, max_entries: int = MAX_REPLAY_ENTRIES) -> None:
        self.clock, self.max_entries = clock, max_entries
        self._seen: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def first_use(self, iss: str, jti: str, until: float) -> bool:
        """True the first time a token id is seen (and remembered until `until`), False for a replay."""
        with self._lock:
            now = self.clock()
            key = (iss, jti)
            seen = self._seen.get(key)
            if seen is not None and seen >= now:
                return False
            if len(self._seen) >= self.max_entries // 2 or seen is not None:
                self._seen = {k: v for k, v in self._seen.items() if v >= now}
            if len(self._seen) >= self.max_entries:
                raise AuthError("too many tokens in use at once: try again shortly")
            self._seen[key] = until
            return True

    def __len__(self) -> int:
        return len(self._seen)


def _refused_algorithm(alg: Any) -> str:
    if isinstance(alg, str) and alg.lower() == "none":
        return "unsigned tokens (alg none) are refused: sign with ES384 or RS384"
    if isinstance(alg, str) and alg.upper() in ("HS256", "HS384", "HS512"):
        return f"HMAC-signed tokens ({alg.upper()}) are refused: sign with ES384 or RS384"
    return "the token's signature algorithm is not accepted: sign with ES384 or RS384"


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer` header."""
    if not authorization or not authorization.strip():
        raise AuthError("no token: send Authorization: Bearer <JWT> signed by a trusted issuer")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("expected Authorization: Bearer <JWT>")
    return token.strip()


class Verifier:
    """Verifies the JWT of one call against the trusted issuers' keys."""

    def __init__(
        self,
        issuers: dict[str, KeySet],
        *,
        leeway: float = LEEWAY_SECONDS,
        max_lifetime: float = MAX_LIFETIME_SECONDS,
        replay: ReplayCache | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuers, self.leeway, self.max_lifetime, self.clock = issuers, leeway, max_lifetime, clock
        self.replay = replay or ReplayCache()

    def verify(self, authorization: str | None, audience: str) -> Caller:
        """The caller of a verified token; AuthError naming what is wrong otherwise. `audience` is the URL called."""
        token = bearer_token(authorization)
        if token.count(".") != 2:
            raise AuthError("the bearer token is not a JWT (expected three dot-separated parts)")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("the bearer token is not a JWT (its header cannot be read)") from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:  # before any key is looked up or any signature checked
            raise AuthError(_refused_algorithm(alg))
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthError("the token header has no key id (kid)")
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise AuthError("the token's claims cannot be read") from None
        iss = unverified.get("iss")
        if not isinstance(iss, str) or not iss:
            raise AuthError("the iss claim is required")
        keys = self.issuers.get(iss)
        if keys is None:
            raise AuthError("the token's issuer (iss) is not a trusted issuer (LABINTERP_CDS_ISSUERS)")
        try:
            key = keys.key(kid)
        except KeySetError:
            raise AuthError("the issuer's JWK Set cannot be had right now: try again later") from None
        if key is None:
            raise AuthError("no key with the token's key id (kid) in the issuer's JWK Set")
        if key.algorithm != alg:
            raise AuthError(f"the key named by kid verifies {key.algorithm} signatures, not {alg}")
        claims = self._decode(token, key.key, alg, iss, audience)
        exp = self._lifetime(claims)
        jti = claims["jti"]
        if not isinstance(jti, str) or not jti.strip():
            raise AuthError("the jti claim must be a non-empty text")
        if not self.replay.first_use(iss, jti, exp + self.leeway):
            raise AuthError("the token was already used (its jti was seen before): send a new token with every call")
        sub = claims.get("sub")
        return Caller(iss, sub if isinstance(sub, str) else None, jti)

    def _lifetime(self, claims: dict[str, Any]) -> float:
        """The token's `exp`, once `exp` and `iat` are numbers within the lifetime CDS Hooks allows."""
        now = self.clock()
        limit = self.max_lifetime + self.leeway
        minutes = f"{self.max_lifetime / 60:g} minutes"
        values = {}
        for name in ("exp", "iat"):
            value = claims[name]
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise AuthError(f"the {name} claim must be a number (seconds since the epoch)")
            values[name] = float(value)
        exp, iat = values["exp"], values["iat"]
        if exp - now > limit:
            raise AuthError(
                f"the token lives too long: its exp is more than {minutes} ahead (CDS Hooks: at most {minutes}); "
                "send a short-lived token"
            )
        if now - iat > limit:
            raise AuthError(f"the token was issued more than {minutes} ago (iat): send a new token with every call")
        if iat - now > self.leeway:
            raise AuthError("the token is not valid yet (iat in the future): check the client's clock")
        return exp

    def _decode(self, token: str, key: Any, alg: str, iss: str, audience: str) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=[audience, audience + "/"],
                issuer=iss,
                leeway=self.leeway,
                options={"require": list(REQUIRED_CLAIMS), "verify_signature": True},
            )
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(f"the {exc.claim} claim is required") from None
        except jwt.ExpiredSignatureError:
            raise AuthError("the token has expired (exp)") from None
        except jwt.ImmatureSignatureError:
            raise AuthError("the token is not valid yet (iat or nbf in the future)") from None
        except jwt.InvalidAudienceError:
            raise AuthError(f"the audience (aud) is not the URL called: expected {audience}") from None
        except jwt.InvalidIssuedAtError:
            raise AuthError("the iat claim must be a number (seconds since the epoch)") from None
        except jwt.InvalidSignatureError:
            raise AuthError("the token's signature does not verify with the issuer's key") from None
        except jwt.exceptions.InvalidJTIError:
            raise AuthError("the jti claim must be a non-empty text") from None
        except (jwt.PyJWTError, OverflowError, ValueError, TypeError):  # e.g. exp Infinity: no integer holds it
            raise AuthError("the token cannot be verified (a claim has the wrong type or the token is malformed)") from None
