"""The HTTP API: parse, call the pipeline, render. No clinical logic here."""

from __future__ import annotations

import hmac
import re
from typing import Any

from flask import Blueprint, current_app, request
from werkzeug.exceptions import BadRequest, Unauthorized

from service.api.openapi import openapi_document
from service.api.outcome import error_response, fhir_response, outcome, status_for, warnings_outcome, with_warnings
from service.errors import LabinterpError
from service.extract.fhirtime import parse_now
from service.services import Services

bp = Blueprint("api", __name__)
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
PUBLIC = {"/healthz", "/readyz", "/openapi.json"}


def services() -> Services:
    return current_app.extensions["labinterp"]


@bp.before_app_request
def require_token() -> None:
    token = services().api_token
    if not token or request.path in PUBLIC:
        return
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        raise Unauthorized("a valid bearer token is required (Authorization: Bearer ...)")


def _patient_id(value: str) -> str:
    value = value.removeprefix("Patient/")
    if not FHIR_ID.match(value):
        raise BadRequest(f"{value!r} is not a FHIR resource id")
    return value


def _flag(name: str) -> bool:
    if name not in request.args:
        return False
    return request.args.get(name, "").lower() in ("", "true", "1", "yes")


def _strict() -> bool | None:
    """`?strict` (or `?strict=true`): any resource that cannot be used fails the patient (422), as a feed
    validator wants; `?strict=false` leaves it out. Absent: the service's setting (LABINTERP_STRICT)."""
    if "strict" not in request.args:
        return None
    value = request.args.get("strict", "").lower()
    if value in ("", "true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise BadRequest(f"strict={value!r}: expected true or false")


def _now() -> Any:
    text = request.args.get("now")
    return parse_now(text) if text else None


@bp.post("/Patient/<pid>/$interpret")
def interpret_one(pid: str) -> Any:
    """Interpret one patient; `?dry-run` returns the transaction Bundle without writing it.

    200 with the Bundle (the server's transaction-response, or the planned transaction in a dry run); when
    resources were left out, a Parameters with `return` (that Bundle) and `outcome` (an OperationOutcome of
    warnings, one issue per resource). X-Labinterp-Warnings counts them either way."""
    s = services()
    dry = _flag("dry-run") or _flag("dry_run")
    result = s.interpret(_patient_id(pid), dry_run=dry, now=_now(), strict=_strict())
    headers = {
        "X-Labinterp-Created": ",".join(result.plan.created),
        "X-Labinterp-Amended": ",".join(result.plan.amended),
        "X-Labinterp-Unchanged": ",".join(result.plan.unchanged),
        "X-Labinterp-Requests": str(result.requests),
        "X-Labinterp-Warnings": str(len(result.problems)),
    }
    body = result.plan.bundle if dry or result.response is None else result.response
    return fhir_response(with_warnings(body, result.problems), 200, headers)


def _patients_from_parameters(body: Any) -> tuple[list[str], str | None]:
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise BadRequest("expected a Parameters resource with 'patient' and/or 'group' references")
    patients, group = [], None
    for p in body.get("parameter", []) or []:
        ref = ((p or {}).get("valueReference") or {}).get("reference") or (p or {}).get("valueString")
        if p.get("name") == "patient" and isinstance(ref, str):
            patients.append(_patient_id(ref))
        elif p.get("name") == "group" and isinstance(ref, str):
            group = ref.removeprefix("Group/")
        else:
            raise BadRequest(f"unknown or empty parameter {p.get('name')!r}: expected patient or group references")
    if not patients and not group:
        raise BadRequest("no patient or group given")
    return patients, group


def _many(patients: list[str], dry: bool) -> dict[str, Any]:
    """One batch-response entry per patient: its result or its error, so one bad patient spoils nothing. A
    patient's outcome says what was written, then one warning issue per resource left out."""
    s = services()
    entries = []
    now, strict = _now(), _strict()
    for pid in dict.fromkeys(patients):
        try:
            r = s.interpret(pid, dry_run=dry, now=now, strict=strict)
        except LabinterpError as exc:
            status, code = status_for(exc)
            entries.append(
                {"response": {"status": str(status), "location": f"Patient/{pid}", "outcome": outcome("error", code, str(exc))}}
            )
            continue
        text = f"created {', '.join(r.plan.created) or '-'}; amended {', '.join(r.plan.amended) or '-'}; unchanged {', '.join(r.plan.unchanged) or '-'}"
        entries.append(
            {
                "response": {
                    "status": "200",
                    "location": f"Patient/{pid}",
                    "outcome": warnings_outcome(
                        r.problems, [{"severity": "information", "code": "informational", "diagnostics": text}]
                    ),
                }
            }
        )
    return {"resourceType": "Bundle", "type": "batch-response", "entry": entries}


@bp.post("/$interpret")
def interpret_many() -> Any:
    patients, group = _patients_from_parameters(request.get_json(force=True, silent=True))
    if group:
        patients += services().group_members(group)
    return fhir_response(_many(patients, _flag("dry-run") or _flag("dry_run")))


@bp.post("/Group/<gid>/$interpret")
def interpret_group(gid: str) -> Any:
    if not FHIR_ID.match(gid):
        raise BadRequest(f"{gid!r} is not a FHIR resource id")
    return fhir_response(_many(services().group_members(gid), _flag("dry-run") or _flag("dry_run")))


@bp.route("/hook", methods=["POST"])
@bp.route("/hook/<rtype>/<rid>", methods=["POST", "PUT"])
def hook(rtype: str | None = None, rid: str | None = None) -> Any:
    """The Subscription's rest-hook endpoint: enqueue the patient and answer at once."""
    body = request.get_json(force=True, silent=True)
    patient = services().patient_of_notification(body, rtype, rid)
    if patient:
        services().queue.enqueue(patient, "notification")
    return fhir_response(outcome("information", "informational", "queued" if patient else "nothing to do"), 200)


@bp.get("/queue")
def queue_state() -> Any:
    q = services().queue
    return {"counts": q.counts(), "failed": q.failures(), "warned": q.warned()}


@bp.get("/healthz")
def healthz() -> Any:
    return {"status": "ok"}


@bp.get("/readyz")
def readyz() -> Any:
    problems = services().readiness_problems()
    if problems:
        return fhir_response(
            {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "transient", "diagnostics": p} for p in problems],
            },
            503,
        )
    return {"status": "ready"}


@bp.get("/openapi.json")
def openapi() -> Any:
    return openapi_document()


def register_errors(app: Any) -> None:
    from werkzeug.exceptions import HTTPException

    from service.api.outcome import http_error_response

    app.register_error_handler(LabinterpError, error_response)
    app.register_error_handler(HTTPException, http_error_response)
