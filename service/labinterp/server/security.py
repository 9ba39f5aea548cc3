"""Response headers every page and API answer carries (issue 9): `register(app, settings)` is called once by
create_app, and sets them on every response — API answers, dashboard pages, errors and 404s alike.

- Content-Security-Policy: nothing may run or load but this service's own stylesheet and images (PNG figures
  as data: URIs). No script source at all (the dashboard has no script), no inline style (the dashboard's styles
  are /dashboard/style.css), no frames, no <base>, forms only to this service. A script that slipped into a
  page past the dashboard's escaping and sanitizing would still not run.
- X-Frame-Options: DENY (and frame-ancestors 'none'): no page can be framed (clickjacking).
- X-Content-Type-Options: nosniff: a JSON answer is never read as HTML or script.
- Referrer-Policy: no-referrer: a patient's page URL never leaves in a Referer header.
- Cache-Control: no-store, unless the view set its own (the stylesheet): answers carry patient data.

Cross-site writes are refused before any work (a page of another site must not make a browser write reports):
a POST or PUT whose body is not JSON (`application/json` or `application/fhir+json`: HTML forms can send only
form and text types) is a 415; one a browser marks as coming from another origin (`Origin` not this service's,
or `Sec-Fetch-Site: cross-site`) is a 403, so a body-less `fetch(..., {mode: "no-cors"})` writes nothing either.
Command-line clients and FHIR servers send neither header. The CDS Hooks endpoints are left to their CORS and JWT
(a browser-based CDS Client is cross-origin by design, and carries a JWT no other page can mint).

It also refuses a hook token equal to the API token: the Subscription that carries the hook token is readable by
anyone who reads Subscriptions on the FHIR server, and would then open the API."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import request
from werkzeug.exceptions import Forbidden, UnsupportedMediaType

from labinterp.errors import InputError

if TYPE_CHECKING:
    from flask import Flask, Response

    from labinterp.config import Settings

CSP = "; ".join(
    [
        "default-src 'none'",
        "img-src 'self' data:",
        "style-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    ]
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def secure(response: Response) -> Response:
    for name, value in HEADERS.items():
        response.headers[name] = value
    if "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "no-store"
    return response


WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
JSON_TYPES = frozenset({"application/json", "application/fhir+json"})


def refuse_cross_site_writes() -> None:
    if request.method not in WRITES or request.blueprint == "cds":
        return
    has_body = bool(request.content_length) or "Transfer-Encoding" in request.headers
    if (has_body or request.mimetype) and request.mimetype not in JSON_TYPES:
        raise UnsupportedMediaType("a write takes a JSON body: Content-Type application/fhir+json or application/json")
    origin = request.headers.get("Origin")
    if origin is not None and origin.rstrip("/") != request.host_url.rstrip("/"):
        raise Forbidden(
            "a write from a page of another origin is refused (Origin); call the API from a server or the command line"
        )
    if request.headers.get("Sec-Fetch-Site") == "cross-site":
        raise Forbidden("a write from a page of another site is refused (Sec-Fetch-Site)")


def register(app: Flask, settings: Settings) -> None:
    """The headers above on every response; a hook token that is the API token refused (the service does not start)."""
    if settings.hook_token is not None and settings.hook_token == settings.api_token:
        raise InputError("LABINTERP_HOOK_TOKEN", "must differ from LABINTERP_API_TOKEN (the Subscription carries it)")
    app.before_request(refuse_cross_site_writes)
    app.after_request(secure)
