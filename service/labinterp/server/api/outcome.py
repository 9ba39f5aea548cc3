"""Every error the HTTP layer returns is an OperationOutcome, with a status that says whose fault it is."""

from __future__ import annotations

import re
from typing import Any

from flask import Response, jsonify
from werkzeug.exceptions import HTTPException

from labinterp.errors import (
    FhirAuthError,
    FhirConflict,
    FhirError,
    FhirNotFound,
    FhirTemporaryError,
    InputError,
    LabinterpError,
)
from labinterp.extract.facts import Problem

FHIR_JSON = "application/fhir+json"


_WHERE = re.compile(r"^(?P<type>[A-Z][A-Za-z]+)/[A-Za-z0-9.-]{1,64}(?: \([^)]*\))?(?: (?P<path>[A-Za-z][\w.\[\]]*))?$")


def fhirpath(where: str) -> str | None:
    """`OperationOutcome.issue.expression` is FHIRPath: "Observation/abc valueQuantity.unit" becomes
    "Observation.valueQuantity.unit" (the resource's id stays in the diagnostics). None when `where` is no
    resource and element (e.g. "input", "Bundle.entry[3]" stays as it is: that is FHIRPath already)."""
    m = _WHERE.match(where)
    if m:
        return m["type"] + (f".{m['path']}" if m["path"] else "")
    return where if re.fullmatch(r"[A-Z][A-Za-z]+(\.[\w\[\]]+)*", where) else None


def outcome(severity: str, code: str, diagnostics: str, expression: str | None = None) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    path = fhirpath(expression) if expression else None
    if path:
        issue["expression"] = [path]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def warnings_outcome(problems: list[Problem], prefix: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """An OperationOutcome of warnings: one issue per resource left out, `expression` naming the resource and
    element (as the 422 errors do), `diagnostics` the reason. `prefix`: issues to put first."""
    issues = list(prefix or [])
    for p in problems:
        issue: dict[str, Any] = {"severity": "warning", "code": "processing", "diagnostics": p.line}
        path = fhirpath(p.where)
        if path:
            issue["expression"] = [path]
        issues.append(issue)
    return {"resourceType": "OperationOutcome", "issue": issues}


def with_warnings(body: dict[str, Any], problems: list[Problem]) -> dict[str, Any]:
    """The operation's result as FHIR returns an operation's outputs: the Bundle itself when nothing was left out
    (one `return` output), otherwise a Parameters with `return` (the Bundle) and `outcome` (the warnings)."""
    if not problems:
        return body
    return {
        "resourceType": "Parameters",
        "parameter": [{"name": "return", "resource": body}, {"name": "outcome", "resource": warnings_outcome(problems)}],
    }


def fhir_response(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    resp = jsonify(body)
    resp.status_code = status
    resp.mimetype = FHIR_JSON
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def status_for(exc: LabinterpError) -> tuple[int, str]:
    """HTTP status and issue code for an error. Upstream failures are 502/503/504, never blamed on the caller."""
    if isinstance(exc, InputError):
        return 422, "processing"
    if isinstance(exc, FhirNotFound):
        return 404, "not-found"
    if isinstance(exc, FhirConflict):
        return 409, "conflict"
    if isinstance(exc, FhirTemporaryError):
        return (504 if exc.status is None else 503), "transient"
    if isinstance(exc, FhirAuthError):
        return 502, "security"
    if isinstance(exc, FhirError):
        return 502, "exception"
    return 500, "exception"  # mappings and anything else: labinterp's own fault


def error_response(exc: LabinterpError) -> Response:
    status, code = status_for(exc)
    where = getattr(exc, "where", None)
    return fhir_response(outcome("error", code, str(exc), where if isinstance(where, str) and where else None), status)


HTTP_ISSUE_CODES = {
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    413: "too-costly",
    415: "not-supported",
    429: "throttled",
    503: "transient",
}
PASSED_ON = ("Retry-After", "WWW-Authenticate", "Allow")  # headers of an HTTP error kept on its OperationOutcome


def http_error_response(exc: HTTPException) -> Response:
    status = exc.code or 500
    headers = {k: v for k, v in exc.get_headers() if k in PASSED_ON}
    if status == 401 and "WWW-Authenticate" not in headers:
        headers["WWW-Authenticate"] = "Bearer"
    return fhir_response(outcome("error", HTTP_ISSUE_CODES.get(status, "invalid"), exc.description or exc.name), status, headers)
