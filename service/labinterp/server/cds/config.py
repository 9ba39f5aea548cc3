"""The CDS Hooks settings read once at start: the trusted issuers with their JWK Sets (LABINTERP_CDS_ISSUERS) and the
FHIR servers a CDS call may name for fetching (LABINTERP_CDS_FHIR_SERVERS). A value that cannot be read stops the
service with an InputError naming the variable, never quoting a value (a URL may carry a credential)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from labinterp.errors import InputError

ISSUERS = "LABINTERP_CDS_ISSUERS"
FHIR_SERVERS = "LABINTERP_CDS_FHIR_SERVERS"


@dataclass(frozen=True)
class IssuerSource:
    """Where one trusted issuer's JWK Set is: an https URL (fetched and cached) or a file (read at start)."""

    iss: str
    url: str | None = None
    path: Path | None = None

    @property
    def where(self) -> str:
        return self.url if self.url is not None else str(self.path)


def normalized_url(url: str) -> str:
    """A base URL compared the way servers route it: scheme and host lower-cased, default port and trailing slash
    dropped; the path kept as it is (paths are case-sensitive)."""
    parts = urlsplit(url.strip())
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    port = parts.port
    if port is not None and (scheme, port) not in (("http", 80), ("https", 443)):
        host = f"{host}:{port}"
    return f"{scheme}://{host}{parts.path.rstrip('/')}"


def _check_url(url: str, variable: str, what: str, https_only: bool) -> None:
    if any(c.isspace() or not c.isprintable() or c == "\\" for c in url):
        raise InputError(variable, f"{what} has whitespace, a control character or a backslash")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (a malformed port raises here)
    except ValueError:
        raise InputError(variable, f"{what} is not a URL that can be read") from None
    schemes = ("https",) if https_only else ("http", "https")
    if parts.scheme.lower() not in schemes or not parts.hostname:
        need = "an https URL" if https_only else "an http(s) URL"
        raise InputError(variable, f"{what} must be {need} with a host")
    if parts.username or parts.password:
        raise InputError(variable, f"{what} must not carry a user or password")
    if not https_only and ("?" in url or "#" in url):
        raise InputError(variable, f"{what} must be a base URL, without a query or fragment")


def parse_issuers(value: str | None) -> tuple[IssuerSource, ...]:
    """LABINTERP_CDS_ISSUERS: a JSON object mapping each trusted `iss` to its JWK Set, an https URL or a file path."""
    if value is None or not value.strip():
        return ()
    try:
        data = json.loads(value)
    except (ValueError, RecursionError):
        raise InputError(
            ISSUERS, 'not JSON: expected an object such as {"https://ehr.example.org": "https://ehr.example.org/jwks.json"}'
        ) from None
    if not isinstance(data, dict) or not data:
        raise InputError(ISSUERS, "expected a JSON object mapping each trusted issuer (iss) to its JWK Set URL or file")
    out = []
    for n, (iss, where) in enumerate(data.items(), start=1):
        what = f"issuer {n}"
        if not iss.strip():
            raise InputError(ISSUERS, f"{what}: the issuer (iss) is empty")
        if not isinstance(where, str) or not where.strip():
            raise InputError(ISSUERS, f"{what}: expected the JWK Set's https URL or file path as a text")
        where = where.strip()
        scheme = urlsplit(where).scheme.lower()
        if scheme in ("http", "https"):
            _check_url(where, ISSUERS, f"{what}: the JWK Set URL", https_only=True)
            out.append(IssuerSource(iss, url=where))
            continue
        if scheme == "file":
            where = urlsplit(where).path
        path = Path(where).expanduser()
        if not path.is_file():
            raise InputError(ISSUERS, f"{what}: the JWK Set file does not exist or is not a file")
        out.append(IssuerSource(iss, path=path))
    return tuple(out)


def parse_fhir_servers(value: str | None, default: str) -> tuple[str, ...]:
    """LABINTERP_CDS_FHIR_SERVERS: a JSON list or comma-separated base URLs; default the configured FHIR server."""
    if value is None or not value.strip():
        return (normalized_url(default),)
    text = value.strip()
    if text.startswith("["):
        try:
            items = json.loads(text)
        except (ValueError, RecursionError):
            raise InputError(FHIR_SERVERS, "not a JSON list: expected a list of base URLs or comma-separated URLs") from None
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise InputError(FHIR_SERVERS, "expected a JSON list of base URLs (texts)")
    else:
        items = text.split(",")
    urls = [i.strip() for i in items if i.strip()]
    if not urls:
        raise InputError(FHIR_SERVERS, "no URL given: leave it unset for the configured FHIR server")
    for n, url in enumerate(urls, start=1):
        _check_url(url, FHIR_SERVERS, f"URL {n}", https_only=False)
    return tuple(dict.fromkeys(normalized_url(u) for u in urls))
