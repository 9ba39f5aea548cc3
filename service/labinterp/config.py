"""One settings object for the command line and the service alike (issue 8 point 2): the environment with the
prefix LABINTERP_, validated once by pydantic-settings; the service's `create_app(test_config)` overrides it
key by key (FHIR_BASE_URL, WORKER, ...). A value that cannot be read is an InputError naming the variable, for
the CLI (exit 2) and the service (it does not start) the same way."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from requests.auth import AuthBase

from labinterp.errors import InputError
from labinterp.fhir.client import BasicAuth, BearerAuth, FhirClient
from labinterp.fhir.retry import RetryPolicy
from labinterp.fhir.smart import SMART_NAME, SMART_SCOPE, SmartAuth, load_signing_key

ROOT = Path(__file__).resolve().parents[2]  # the checkout: service/labinterp/config.py

EQUATIONS = {"ckd-epi-2021": "ckd_epi_2021", "mdrd": "mdrd_idms"}
PREFIX = "LABINTERP_"
SECRETS = frozenset({"fhir_token", "fhir_basic", "api_token", "hook_token", "queue_url"})  # never quoted back in an error
# LABINTERP_* variables that are not settings of labinterp but of its tests and of the HAPI launcher (docker/);
# any other unknown LABINTERP_* variable is refused, so a misspelt one (LABINTERP_STRICT_MODE) is never ignored
NOT_SETTINGS = frozenset({"LABINTERP_SKIP_INTEGRATION", "LABINTERP_TEST_FHIR_URL", "LABINTERP_UPDATE_SCREENSHOTS"})
NOT_SETTINGS_PREFIXES = ("LABINTERP_HAPI_",)
TOKEN_CHARS = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
MIN_TOKEN_LENGTH = 16
URLS = frozenset({"fhir_base_url", "callback_url"})  # may carry credentials: not quoted either


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX, case_sensitive=False, extra="forbid", frozen=True)

    fhir_base_url: str | None = None  # the FHIR server (the service defaults to the local sandbox)
    fhir_token: str | None = None  # bearer token for the FHIR server
    fhir_basic: str | None = None  # "user:password" for the FHIR server
    api_token: str | None = None  # bearer token required on the service's own endpoints
    mappings_dir: str | None = None  # a site's overlay directory for mappings/
    workdir: str = str(ROOT / ".labinterp")  # sandbox, queue database
    queue_path: str | None = None  # the queue's SQLite file (default WORKDIR/queue.sqlite3)
    worker: bool = False  # the service starts the queue worker and the reconciliation poll
    worker_threads: int = Field(default=2, ge=1)
    poll_seconds: float = Field(default=30.0, ge=0, allow_inf_nan=False)  # 0: no poll
    callback_url: str | None = None  # this service's URL as the FHIR server reaches it: registers the Subscription
    egfr_equation: Literal["ckd-epi-2021", "mdrd"] | None = None  # None: the mappings' default
    strict: bool | None = None  # any resource that cannot be used is an error (validating a feed)
    lenient: bool | None = None  # deprecated (it is the default): an explicit false still means strict
    validate_output: bool = True  # validate every written resource with fhir.resources R4B
    render: bool = True  # HTML/PDF presentedForm for each report (the narrative is written either way)
    fhir_retries: int = Field(default=5, ge=1)  # tries per request
    fhir_retry_delay: float = Field(default=0.5, ge=0, allow_inf_nan=False)  # first backoff, seconds
    queue_lease: float = Field(default=300.0, gt=0, allow_inf_nan=False)  # seconds before a dead process's job is retried
    # postgresql://user:password@host:port/db moves the job queue to PostgreSQL (procrastinate); default: the SQLite file
    queue_url: str | None = None
    # population runs (interpret --all / --group, POST $interpret with all or group)
    population_chunk: int = Field(default=100, ge=1, le=1000)  # patients read per batch request and per chunk job
    population_transaction: int = Field(default=50, ge=1, le=1000)  # patients written per transaction
    write_mode: Literal["conditional", "put"] = "conditional"  # new reports: conditional create, or PUT to deterministic ids
    cohort_stats: str | None = None  # a stats.json for the dashboard's cohort page
    public_url: str | None = None  # this service's base URL as its callers see it (CDS Hooks `aud`); default: the request's
    # the FHIR server's notifications (Subscription.channel.header) carry this token, never the API token
    hook_token: str | None = None
    hook_max_bytes: int = Field(default=5_000_000, ge=1024)  # a larger notification body is refused (413)
    hook_per_minute: int = Field(default=600, ge=1)  # notifications accepted per minute and caller, then 429
    log_format: Literal["text", "json"] = "text"  # json: one JSON object per line, with the request's correlation id
    max_request_bytes: int = Field(default=10_000_000, ge=1024)  # any larger request body is refused (413)
    max_patients: int = Field(default=100, ge=1)  # patients one $interpret request may name (a Group's members too), then 413
    # CDS Hooks 2.0: JWT verification of every call (false only for a local sandbox: a warning at start)
    cds_auth: bool = True
    cds_issuers: str | None = None  # JSON object: trusted `iss` -> its JWK Set (a file path or an https URL)
    cds_fhir_servers: str | None = None  # JSON list or comma-separated: FHIR servers a CDS call may name (default: the FHIR base)
    # SMART Backend Services: client_credentials with a signed JWT assertion, beside bearer and basic
    smart_client_id: str | None = None
    smart_key: str | None = None  # a file: the private key as PEM or as a JWK (Set) with its `kid`
    smart_kid: str | None = None  # the key id in the assertion's header (default: the JWK's `kid`)
    smart_alg: Literal["RS384", "ES384"] | None = None  # default: from the key's type
    smart_scope: str = "system/Patient.rs system/Observation.rs system/MedicationStatement.rs system/DiagnosticReport.cruds"
    smart_token_url: str | None = None  # default: token_endpoint of FHIR_BASE_URL/.well-known/smart-configuration

    @model_validator(mode="before")
    @classmethod
    def _unset_when_empty(cls, data: Any) -> Any:
        """An empty variable (LABINTERP_STRICT=) is an unset one."""
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not (isinstance(v, str) and not v.strip())}
        return data

    @field_validator("fhir_base_url", "callback_url", "public_url", "smart_token_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL with a host, e.g. https://fhir.example.org/fhir")
        if parts.username or parts.password:
            raise ValueError("must not carry a user or password: use LABINTERP_FHIR_BASIC or LABINTERP_FHIR_TOKEN")
        return value

    @field_validator("api_token", "hook_token")
    @classmethod
    def _usable_token(cls, value: str | None) -> str | None:
        """A bearer token the service can compare safely: RFC 6750's token characters, long enough not to be guessed.
        "0", "false" or "null" are refused, never read as "no token"."""
        if value is None:
            return None
        if not TOKEN_CHARS.fullmatch(value):
            raise ValueError("must be a bearer token: letters, digits and -._~+/ (then = padding), no spaces")
        if len(value) < MIN_TOKEN_LENGTH:
            raise ValueError(f"is too short: use at least {MIN_TOKEN_LENGTH} random characters (openssl rand -hex 16)")
        return value

    @field_validator("fhir_basic")
    @classmethod
    def _user_and_password(cls, value: str | None) -> str | None:
        if value is not None and ":" not in value:
            raise ValueError("must be user:password")
        return value

    @field_validator("smart_client_id", "smart_kid")
    @classmethod
    def _smart_name(cls, value: str | None) -> str | None:
        """OAuth's client_id and a JWK's kid: printable characters a JWT header and a form can carry."""
        if value is not None and not SMART_NAME.fullmatch(value):
            raise ValueError("must be 1-255 printable characters (no control characters, no leading or trailing space)")
        return value

    @field_validator("smart_scope")
    @classmethod
    def _smart_scope(cls, value: str) -> str:
        """RFC 6749 scope: scope-tokens separated by single spaces (SMART v2: system/Observation.rs ...)."""
        if not SMART_SCOPE.fullmatch(value.strip()):
            raise ValueError("must be scopes separated by spaces, e.g. system/Patient.rs system/Observation.rs")
        return " ".join(value.split())

    @model_validator(mode="after")
    def _one_fhir_auth(self) -> Settings:
        """SMART Backend Services complete (client id and key, the key usable) and at most one way to authenticate to
        the FHIR server: an InputError naming the variable at start, never the secret."""
        smart_parts = ("LABINTERP_SMART_KID", "LABINTERP_SMART_ALG", "LABINTERP_SMART_TOKEN_URL")
        given = [
            name for name, value in zip(smart_parts, (self.smart_kid, self.smart_alg, self.smart_token_url), strict=True) if value
        ]
        if self.smart_key or self.smart_client_id or given:
            if not self.smart_key:
                needs = "LABINTERP_SMART_CLIENT_ID" if self.smart_client_id else given[0]
                raise InputError(
                    "LABINTERP_SMART_KEY", f"is not set, and {needs} (SMART Backend Services) needs the private key file"
                )
            if not self.smart_client_id:
                raise InputError(
                    "LABINTERP_SMART_KEY", "needs LABINTERP_SMART_CLIENT_ID: the client id the authorization server registered"
                )
        ways = [
            name
            for name, value in (
                ("LABINTERP_FHIR_TOKEN", self.fhir_token),
                ("LABINTERP_FHIR_BASIC", self.fhir_basic),
                ("LABINTERP_SMART_KEY", self.smart_key),
            )
            if value
        ]
        if len(ways) > 1:
            raise InputError(ways[-1], f"{' and '.join(ways)} are set together: authenticate to the FHIR server one way")
        if self.smart_key:
            load_signing_key(self.smart_key, self.smart_kid, self.smart_alg)  # an unusable key stops the start
        return self

    @property
    def strict_mode(self) -> bool:
        """STRICT when set; else an explicit LENIENT=false (from when strict was the default) means strict."""
        return self.strict if self.strict is not None else self.lenient is False

    @property
    def equation(self) -> str | None:
        """The rules' name of the eGFR equation, None for the mappings' default."""
        return EQUATIONS[self.egfr_equation] if self.egfr_equation else None

    @property
    def basic(self) -> tuple[str, str] | None:
        if not self.fhir_basic:
            return None
        user, _, password = self.fhir_basic.partition(":")
        return user, password

    @classmethod
    def load(cls, overrides: dict[str, Any] | None = None) -> Settings:
        """The environment, then `overrides` (keys as the variables without the prefix, any case). Errors name
        the variable."""
        given = {k.lower(): v for k, v in (overrides or {}).items()}
        unknown_variables(os.environ)
        try:
            return cls(**given)
        except ValidationError as exc:
            first = exc.errors()[0]
            name = PREFIX + str(first["loc"][0]).upper() if first["loc"] else PREFIX.rstrip("_")
            shown = first.get("input")
            secret = bool(first["loc"]) and str(first["loc"][0]) in SECRETS | URLS
            found = (
                f" (found {shown!r})"
                if not secret and isinstance(shown, str | int | float | bool) and len(str(shown)) < 40
                else ""
            )
            raise InputError(name, f"{first['msg']}{found}") from None

    @classmethod
    def from_env(cls) -> Settings:
        return cls.load()

    def fhir_auth(self, base_url: str | None = None) -> AuthBase | None:
        """How to authenticate to the FHIR server at `base_url` (default FHIR_BASE_URL): a bearer token, basic auth,
        SMART Backend Services, or None. Build it once and share it (FhirClient(..., auth=...)): a SMART auth caches
        its access token for every client and thread that uses it."""
        if self.fhir_token:
            return BearerAuth(self.fhir_token)
        if self.basic:
            return BasicAuth(*self.basic)
        if not (self.smart_client_id and self.smart_key):
            return None
        url = base_url or self.fhir_base_url
        if not url:
            raise InputError("LABINTERP_FHIR_BASE_URL", "no FHIR server configured (SMART Backend Services needs it)")
        return SmartAuth(
            url,
            self.smart_client_id,
            load_signing_key(self.smart_key, self.smart_kid, self.smart_alg),
            scope=self.smart_scope,
            token_url=self.smart_token_url,
            retry=_retry_policy(self),
        )

    def client(self, base_url: str | None = None, *, auth: AuthBase | None = None) -> FhirClient:
        """A FhirClient for `base_url` (default FHIR_BASE_URL) with the retry settings and `auth` (default: a new
        `fhir_auth()`; pass a shared one where clients are made per request, so a SMART token is fetched once)."""
        url = base_url or self.fhir_base_url
        if not url:
            raise InputError("LABINTERP_FHIR_BASE_URL", "no FHIR server configured")
        return FhirClient(url, auth=auth or self.fhir_auth(url), retry=_retry_policy(self))


def _retry_policy(settings: Settings) -> RetryPolicy:
    """FHIR_RETRIES and FHIR_RETRY_DELAY, for FHIR calls and SMART token requests alike."""
    return RetryPolicy(attempts=settings.fhir_retries, base_delay=settings.fhir_retry_delay)


def unknown_variables(environ: Mapping[str, str]) -> None:
    """Refuse a LABINTERP_* variable that is no setting (nor one of the tests' or the HAPI launcher's): a typo
    would otherwise be ignored silently, and LABINTERP_STRCT=true would run lenient."""
    known = {PREFIX + name.upper() for name in Settings.model_fields}
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(PREFIX) or upper in known or upper in NOT_SETTINGS or upper.startswith(NOT_SETTINGS_PREFIXES):
            continue
        close = difflib.get_close_matches(upper, sorted(known), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise InputError(upper, f"not a labinterp setting{hint} (see the README's settings)")
