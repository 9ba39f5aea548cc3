"""A CDS Hooks 2.0 service call, validated: `hook` is the service's, `hookInstance` a UUID, `context.patientId` a FHIR
id, `draftOrders` a Bundle (order hooks) and `selections` references into it (order-select), `fhirServer` an http(s)
URL (required with `fhirAuthorization`), each prefetch value a FHIR resource or null. A request of another shape is a
CallError: a 400 OperationOutcome naming the element, never a 500. Nothing of the access token is ever shown.

`fhirServer` is checked as written, character by character, and then used in its normalized form (config.
normalized_url): the URL compared with the allow-list is the URL requested. A base URL with whitespace or control
characters, a `?` or `#` (even an empty query or fragment), userinfo (`@`), a backslash or any character outside
RFC 3986 is refused, since a URL parser and an HTTP library can read such a string differently. The access token
must be an RFC 6750 b64token (so nothing of it can end a header line) with `token_type` Bearer."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from labinterp.fhir.search import is_fhir_id
from labinterp.server.cds.catalog import CdsService
from labinterp.server.cds.config import normalized_url

_WORD = re.compile(r"[a-z][a-z0-9-]{0,39}")
# the characters of an http(s) base URL: RFC 3986 unreserved, percent-encoding and the delimiters a base URL needs;
# no "?", "#", "@", backslash, whitespace, control or non-ASCII character
_URL_CHARS = re.compile(r"[A-Za-z0-9\-._~%:/\[\]!$&'()*+,;=]+")
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")  # RFC 6750 section 2.1
MAX_URL_CHARS = 2048
MAX_TOKEN_CHARS = 16384


class CallError(Exception):
    """A request of the wrong shape: `where` is the element (FHIRPath-like), `what` the problem."""

    def __init__(self, where: str, what: str) -> None:
        self.where, self.what = where, what
        super().__init__(f"{where}: {what}")


@dataclass(frozen=True)
class HookCall:
    hook: str
    hook_instance: str
    patient_id: str
    fhir_server: str | None = None  # normalized (config.normalized_url): the URL compared with the allow-list and requested
    access_token: str | None = field(default=None, repr=False)  # never logged, stored or shown
    prefetch: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # the service's keys the client sent
    draft_orders: tuple[dict[str, Any], ...] = ()  # the resources of context.draftOrders
    selections: tuple[str, ...] | None = None  # order-select: "MedicationRequest/id" of the orders just selected


def _hook_instance(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise CallError("hookInstance", "required: a UUID for this hook call")
    try:
        uuid.UUID(value.strip().removeprefix("urn:uuid:"))
    except ValueError:
        raise CallError("hookInstance", "expected a UUID (e.g. d1577c69-dfbe-44ad-ba6d-3e05e953b2ea)") from None
    return value.strip()


def _server_url(server: Any) -> str:
    """The fhirServer in its normalized form (the form compared with the allow-list and requested)."""
    shape = "expected the base URL of the client's FHIR server (http or https, no user or password)"
    if not isinstance(server, str) or not server:
        raise CallError("fhirServer", shape)
    if len(server) > MAX_URL_CHARS:
        raise CallError("fhirServer", f"longer than {MAX_URL_CHARS} characters: expected a FHIR base URL")
    if "?" in server or "#" in server:
        raise CallError("fhirServer", "expected a base URL, without a query or fragment (not even an empty ? or #)")
    if "@" in server:
        raise CallError("fhirServer", "expected a base URL without a user or password (no @)")
    if not _URL_CHARS.fullmatch(server):
        raise CallError(
            "fhirServer",
            "has a character a base URL cannot carry (whitespace, a control character, a backslash or a character "
            "outside RFC 3986): percent-encode it or send the URL as it is configured",
        )
    try:
        parts = urlsplit(server)
        _ = parts.port  # a port that is no number, or out of range, raises here
    except ValueError:  # an unclosed IPv6 bracket, a port that is no number
        raise CallError("fhirServer", shape) from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or not parts.netloc:
        raise CallError("fhirServer", shape)
    return normalized_url(server)


def _access_token(auth: dict[str, Any]) -> str:
    token = auth.get("access_token")
    if not isinstance(token, str) or not token.strip():
        raise CallError("fhirAuthorization.access_token", "required: the OAuth 2.0 bearer token for the FHIR server")
    if len(token) > MAX_TOKEN_CHARS or not _B64TOKEN.fullmatch(token):
        raise CallError(
            "fhirAuthorization.access_token",
            f"not a bearer token: expected an RFC 6750 b64token (letters, digits and - . _ ~ + /, then any =; at most "
            f"{MAX_TOKEN_CHARS} characters)",
        )
    kind = auth.get("token_type")
    if not isinstance(kind, str) or kind.lower() != "bearer":
        raise CallError("fhirAuthorization.token_type", "expected Bearer")
    return token


def _fhir_server(body: dict[str, Any]) -> tuple[str | None, str | None]:
    """(the normalized fhirServer, the access token); each None when not given."""
    server, auth = body.get("fhirServer"), body.get("fhirAuthorization")
    url = _server_url(server) if server is not None else None
    if auth is None:
        return url, None
    if not isinstance(auth, dict):
        raise CallError("fhirAuthorization", "expected an object with access_token and token_type")
    if url is None:
        raise CallError("fhirServer", "required when fhirAuthorization is given (cds-r-1)")
    return url, _access_token(auth)


def _prefetch(body: dict[str, Any], service: CdsService) -> dict[str, dict[str, Any] | None]:
    given = body.get("prefetch")
    if given is None:
        return {}
    if not isinstance(given, dict):
        raise CallError("prefetch", "expected an object: each key of the service's prefetch with a FHIR resource or null")
    out: dict[str, dict[str, Any] | None] = {}
    for key in service.prefetch:
        if key not in given:
            continue
        value = given[key]
        if value is not None and not (isinstance(value, dict) and isinstance(value.get("resourceType"), str)):
            raise CallError(f"prefetch.{key}", "expected a FHIR resource (with resourceType) or null")
        out[key] = value
    return out


def _draft_orders(context: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    bundle = context.get("draftOrders")
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise CallError("context.draftOrders", "required for order hooks: a Bundle of the draft orders")
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise CallError("context.draftOrders.entry", "expected a list of entries")
    out = []
    for n, e in enumerate(entries):
        resource = e.get("resource") if isinstance(e, dict) else None
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            raise CallError(f"context.draftOrders.entry[{n}].resource", "expected a FHIR resource with resourceType")
        rid = resource.get("id")
        if rid is not None and not is_fhir_id(rid):
            raise CallError(f"context.draftOrders.entry[{n}].resource.id", "not a FHIR id")
        out.append(resource)
    return tuple(out)


def _selections(context: dict[str, Any], drafts: tuple[dict[str, Any], ...]) -> tuple[str, ...]:
    selections = context.get("selections")
    if not isinstance(selections, list) or not selections or not all(isinstance(s, str) and s for s in selections):
        raise CallError("context.selections", "required for order-select: a list of references to draft orders")
    known = {f"{r['resourceType']}/{r['id']}" for r in drafts if isinstance(r.get("id"), str)}
    for n, s in enumerate(selections):
        if s not in known:
            raise CallError(f"context.selections[{n}]", "does not name a resource of context.draftOrders (Type/id)")
    return tuple(selections)


def parse_call(body: Any, service: CdsService) -> HookCall:
    """The call, validated against the service it was sent to."""
    if not isinstance(body, dict):
        raise CallError("request body", "expected a CDS Hooks request object (hook, hookInstance, context, ...)")
    hook = body.get("hook")
    if hook != service.hook:
        shown = f"'{hook}'" if isinstance(hook, str) and _WORD.fullmatch(hook) else "missing or not a hook name"
        raise CallError("hook", f"{shown}: this service is called on {service.hook}")
    instance = _hook_instance(body.get("hookInstance"))
    context = body.get("context")
    if not isinstance(context, dict):
        raise CallError("context", "required: an object with the hook's context (patientId, ...)")
    patient = context.get("patientId")
    if not isinstance(patient, str) or not is_fhir_id(patient):
        raise CallError("context.patientId", "required: a FHIR id (letters, digits, - and ., at most 64)")
    server, token = _fhir_server(body)
    drafts: tuple[dict[str, Any], ...] = ()
    selections = None
    if service.order_hook:
        drafts = _draft_orders(context)
        if service.hook == "order-select":
            selections = _selections(context, drafts)
    return HookCall(hook, instance, patient, server, token, _prefetch(body, service), drafts, selections)
