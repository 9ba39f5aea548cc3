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

It also refuses a hook token equal to the API token: the Subscription that carries the hook token is readable by
anyone who reads Subscriptions on the FHIR server, and would then open the API."""

from __future__ import annotations

from typing import TYPE_CHECKING

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


def register(app: Flask, settings: Settings) -> None:
    """The headers above on every response; a hook token that is the API token refused (the service does not start)."""
    if settings.hook_token is not None and settings.hook_token == settings.api_token:
        raise InputError("LABINTERP_HOOK_TOKEN", "must differ from LABINTERP_API_TOKEN (the Subscription carries it)")
    app.after_request(secure)
