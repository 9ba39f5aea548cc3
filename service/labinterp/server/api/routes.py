"""The HTTP API: parse, call the pipeline, render. No clinical logic here."""

from __future__ import annotations

import hmac
import logging
import re
import threading
import traceback
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, current_app, request, url_for
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge, ServiceUnavailable, Unauthorized

from labinterp.cli.common import parse_json
from labinterp.config import Settings
from labinterp.errors import InputError, LabinterpError, is_temporary
from labinterp.extract.fhirtime import parse_now
from labinterp.fhir.search import FHIR_ID, is_fhir_id
from labinterp.pipeline import BatchLiveResult, LiveResult
from labinterp.population import Selection
from labinterp.server.api import hook as hook_guard
from labinterp.server.api.openapi import openapi_document
from labinterp.server.api.outcome import error_response, fhir_response, outcome, status_for, warnings_outcome, with_warnings
from labinterp.server.runs import FAILED_SHOWN, is_run_id
from labinterp.server.services import NotificationMismatch, Services

__all__ = ["FHIR_ID", "bp", "register_errors", "services"]  # FHIR_ID: for modules that imported it from here
log = logging.getLogger("labinterp.api")
bp = Blueprint("api", __name__)
PUBLIC = {"/healthz", "/readyz", "/openapi.json"}
HOOK_ENDPOINT = "api.hook"
_limiter_lock = threading.Lock()


def services() -> Services:
    return current_app.extensions["labinterp"]


def settings() -> Settings:
    return current_app.extensions["labinterp.settings"]


@bp.before_app_request
def require_token() -> None:
    """The hook takes the hook token only (labinterp.server.api.hook); the CDS Hooks endpoints a CDS Client's JWT
    (labinterp.server.cds.auth); everything else but health and OpenAPI takes the API token only, when one is set."""
    if request.blueprint == "cds":
        return
    if request.endpoint == HOOK_ENDPOINT:
        hook_guard.check_token(request, settings().hook_token, services().api_token)
        return
    token = services().api_token
    if not token or request.path in PUBLIC:
        return
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        raise Unauthorized("a valid bearer token is required (Authorization: Bearer ...)")


def _patient_id(value: str) -> str:
    value = value.removeprefix("Patient/")
    if not is_fhir_id(value):
        raise BadRequest("the patient reference is not a FHIR resource id (Patient/ and up to 64 letters, digits, - and .)")
    return value


def _json_body() -> Any:
    """The request body as JSON; None when there is none. A body that is not JSON, or not JSON a parser can hold
    (nested too deeply, a number of thousands of digits), is a 400 naming it, never a 500."""
    data = request.get_data(cache=True)
    if not data.strip():
        return None
    try:
        return parse_json(data, "request body")
    except InputError as exc:
        raise BadRequest(str(exc)) from None


TRUE, FALSE = ("", "true", "1", "yes", "on"), ("false", "0", "no", "off")
INTERPRET_PARAMETERS = frozenset({"dry-run", "dry_run", "strict", "now"})


def _yes_no(name: str) -> bool | None:
    """A boolean query parameter: None when absent; anything but true or false is a 400, never a guess (a
    `?dry-run=maybe` read as false would write to the record)."""
    if name not in request.args:
        return None
    value = request.args.get(name, "").strip().lower()
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise BadRequest(f"{name}: expected true or false")


def _check_parameters() -> None:
    """Unknown query parameters are refused: a misspelt `?dryrun` must not write to the record."""
    unknown = sorted(set(request.args) - INTERPRET_PARAMETERS)
    if unknown:
        shown = ", ".join(u for u in unknown if FHIR_ID.fullmatch(u)) or "a parameter"
        raise BadRequest(f"unknown query parameter ({shown}): expected dry-run, strict or now")


def _dry_run() -> bool:
    _check_parameters()
    return bool(_yes_no("dry-run") or _yes_no("dry_run"))


def _strict() -> bool | None:
    """`?strict` (or `?strict=true`): any resource that cannot be used fails the patient (422), as a feed
    validator wants; `?strict=false` leaves it out. Absent: the service's setting (LABINTERP_STRICT)."""
    return _yes_no("strict")


def _now(dry: bool) -> Any:
    """`?now=`: the evaluation time, for a dry run only. A real write stamps its reports and Provenance with the
    time they are written: a `now` on a write would backdate (or postdate) them in the record for good."""
    text = request.args.get("now")
    if "now" in request.args and not dry:
        raise BadRequest("now: only with dry-run (a report written to the record carries the time it was written)")
    try:
        return parse_now(text) if text else None
    except InputError as exc:  # a query parameter of the request: the request is wrong (400)
        raise BadRequest(str(exc)) from None


@bp.post("/Patient/<pid>/$interpret")
def interpret_one(pid: str) -> Any:
    """Interpret one patient; `?dry-run` returns the transaction Bundle without writing it.

    200 with the Bundle (the server's transaction-response, or the planned transaction in a dry run); when
    resources were left out, a Parameters with `return` (that Bundle) and `outcome` (an OperationOutcome of
    warnings, one issue per resource). X-Labinterp-Warnings counts them either way."""
    s = services()
    dry = _dry_run()
    result = s.interpret(_patient_id(pid), dry_run=dry, now=_now(dry), strict=_strict())
    return _written(result, dry)


def _written(result: LiveResult | BatchLiveResult, dry: bool, **more: str) -> Any:
    """The answer to one subject's $interpret: the Bundle (the server's transaction-response, or the planned
    transaction in a dry run), with the warnings, and what was created, amended and left unchanged in headers."""
    headers = {
        "X-Labinterp-Created": ",".join(result.plan.created),
        "X-Labinterp-Amended": ",".join(result.plan.amended),
        "X-Labinterp-Unchanged": ",".join(result.plan.unchanged),
        "X-Labinterp-Requests": str(result.requests),
        "X-Labinterp-Warnings": str(len(result.problems)),
        **more,
    }
    body = result.plan.bundle if dry or result.response is None else result.response
    return fhir_response(with_warnings(body, result.problems), 200, headers)


@bp.post("/Substance/<rid>/$interpret")
def interpret_batch(rid: str) -> Any:
    """Interpret one formulation batch (a Substance with its samples and results, SPEC section 5) and write its QC
    report; `?dry-run` returns the transaction Bundle without writing it. Answers as `Patient/<id>/$interpret` does."""
    if not is_fhir_id(rid):
        raise BadRequest("the batch is not a FHIR resource id (up to 64 letters, digits, - and .)")
    dry = _dry_run()
    result = services().interpret_batch(rid, dry_run=dry, now=_now(dry), strict=_strict())
    conclusion = result.finding.conclusion if result.finding is not None else "no usable result"
    return _written(result, dry, **{"X-Labinterp-Conclusion": conclusion})


def _patients_from_parameters(body: Any) -> tuple[list[str], str | None]:
    """The patient ids and the Group id a Parameters names; 400 naming the parameter when it has another shape."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise BadRequest("expected a Parameters resource with 'patient' and/or 'group' references")
    params = body.get("parameter")
    if params is not None and not isinstance(params, list):
        raise BadRequest("Parameters.parameter: expected a list of parameters")
    patients, group = [], None
    for i, p in enumerate(params or []):
        where = f"Parameters.parameter[{i}]"
        if not isinstance(p, dict):
            raise BadRequest(f"{where}: expected a parameter object with a name and a valueReference")
        name, value = p.get("name"), p.get("valueReference")
        if value is not None and not isinstance(value, dict):
            raise BadRequest(f'{where}.valueReference: expected a Reference object, e.g. {{"reference": "Patient/id"}}')
        ref = (value or {}).get("reference") or p.get("valueString")
        if name == "patient" and isinstance((value or {}).get("identifier"), dict) and ref is None:
            raise BadRequest(f"{where}: a logical reference (identifier) is not supported: give Patient/id")
        if name == "patient" and isinstance(ref, str):
            patients.append(_patient_id(ref))
        elif name == "group" and isinstance(ref, str):
            if group:
                raise BadRequest(f"{where}: one group only: a second group parameter is not read")
            group = ref.removeprefix("Group/")
            if not is_fhir_id(group):
                raise BadRequest(f"{where}: the group reference is not Group/ followed by a FHIR resource id")
        else:
            shown = repr(name) if isinstance(name, str) and is_fhir_id(name) else "without a usable name"
            raise BadRequest(f"{where}: unknown or empty parameter {shown}: expected patient or group references")
    if not patients and not group:
        raise BadRequest("no patient or group given")
    return patients, group


def _many(patients: list[str], dry: bool, bad_members: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    """One batch-response entry per patient: its result or its error, so one bad patient spoils nothing. A
    patient's outcome says what was written, then one warning issue per resource left out. A Group member that
    cannot be read is an entry of its own (422, naming it)."""
    s = services()
    unique = list(dict.fromkeys(patients))
    cap = settings().max_patients
    if len(unique) > cap:  # one synchronous request holds a request thread for every patient it names
        raise RequestEntityTooLarge(
            f"{len(unique)} patients in one request; at most {cap} (LABINTERP_MAX_PATIENTS): send them in smaller "
            "requests, or interpret a whole server or Group from the command line"
        )
    entries: list[dict[str, Any]] = [
        {"response": {"status": "422", "outcome": outcome("error", "processing", f"{where}: {what}", where)}}
        for where, what in bad_members or []
    ]
    now, strict = _now(dry), _strict()
    for pid in unique:
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


RUN_PARAMETERS = frozenset({"all", "group", "since"})
INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})")


def _is_run(body: Any, dry: bool) -> bool:
    """Whether a Parameters asks for a population run: `all` or `since`, or a `group` without `patient` (a dry run of
    a Group stays the synchronous batch it was). Anything of another shape is left to the batch's own checks."""
    params = body.get("parameter") if isinstance(body, dict) and body.get("resourceType") == "Parameters" else None
    if not isinstance(params, list):
        return False
    names = {p.get("name") for p in params if isinstance(p, dict) and isinstance(p.get("name"), str)}
    return bool(names & {"all", "since"}) or ("group" in names and "patient" not in names and not dry)


def _run_selection(body: dict[str, Any], dry: bool) -> Selection:
    """The Selection a run's Parameters name; 400 naming the parameter when it is of another shape."""
    if dry:
        raise BadRequest("dry-run: a population run (all, group or since) writes its reports; dry-run is for named patients")
    if "strict" in request.args:
        raise BadRequest("strict: a population run uses the service's setting (LABINTERP_STRICT)")
    every: bool | None = None
    group: str | None = None
    since: str | None = None
    for i, p in enumerate(body["parameter"]):
        where = f"Parameters.parameter[{i}]"
        name = p.get("name") if isinstance(p, dict) else None
        if not isinstance(name, str) or name not in RUN_PARAMETERS or (name == "all" and every is not None):
            shown = repr(name) if isinstance(name, str) and is_fhir_id(name) else "without a usable name"
            raise BadRequest(f"{where}: parameter {shown} does not go with a population run: give all or group, and since")
        if name == "all":
            if not isinstance(p.get("valueBoolean"), bool):
                raise BadRequest(f"{where}.valueBoolean: expected true or false")
            every = p["valueBoolean"]
        elif name == "group":
            value = p.get("valueReference")
            ref = value.get("reference") if isinstance(value, dict) else p.get("valueString")
            if group is not None or not isinstance(ref, str) or not is_fhir_id(ref.removeprefix("Group/")):
                raise BadRequest(f"{where}: one group, as valueString or valueReference Group/ followed by a FHIR resource id")
            group = ref.removeprefix("Group/")
        else:
            text = p.get("valueInstant", p.get("valueDateTime"))
            if since is not None or not isinstance(text, str) or not _instant(text):
                raise BadRequest(f"{where}: since: one valueInstant, e.g. 2026-01-31T12:00:00Z (with seconds and a time zone)")
            since = text
    if every and group:
        raise BadRequest("all and group together: a run takes either every patient of the server or a Group's members")
    if not every and not group:
        raise BadRequest("no patients selected: give all (valueBoolean true) or a group")
    return Selection(all=bool(every), group=group, since=since)


def _instant(text: str) -> bool:
    if not INSTANT.fullmatch(text):
        return False
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:  # a month 13, a day 32
        return False
    return True


def _run_url(run_id: str) -> str:
    """The run's status URL: under LABINTERP_PUBLIC_URL when set (behind a proxy, and never from the request's Host
    header, which the caller chooses); otherwise as the request reached the service."""
    public = settings().public_url
    if public:
        return public.rstrip("/") + url_for("api.run_status", run_id=run_id)
    return url_for("api.run_status", run_id=run_id, _external=True)


@bp.post("/$interpret")
def interpret_many() -> Any:
    """The named patients and Group members at once (a batch-response); or, with `all`, `since`, or a `group` alone,
    a population run in the background: 202 with its status URL in Content-Location."""
    dry = _dry_run()  # the query is checked (?now= only with dry-run) before anything is read
    _now(dry)
    body = _json_body()
    if _is_run(body, dry):
        selection = _run_selection(body, dry)
        run_id = services().start_run(selection)
        url = _run_url(run_id)
        params = [
            {"name": "run", "valueId": run_id},
            {"name": "status", "valueUrl": url},
            {"name": "state", "valueCode": "listing"},
        ]
        return fhir_response({"resourceType": "Parameters", "parameter": params}, 202, {"Content-Location": url})
    patients, group = _patients_from_parameters(body)
    bad: list[tuple[str, str]] = []
    if group:
        members, bad = services().group_members(group)
        patients += members
    return fhir_response(_many(patients, dry, bad))


def _stamp(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@bp.get("/$interpret/runs/<run_id>")
def run_status(run_id: str) -> Any:
    """A population run's status: state (listing, running, done, failed), chunks, patients and reports counted, the
    patients that failed (the first FAILED_SHOWN, and how many), started and finished times. 404 for an unknown run."""
    run = services().queue.runs.get(run_id) if is_run_id(run_id) else None
    if run is None:
        return fhir_response(outcome("error", "not-found", "no population run with this id"), 404)
    body = {
        "id": run["id"],
        "state": run["state"],
        "selection": {k: v for k, v in run["selection"].items() if v not in (None, False)},
        "chunks": {"total": run["chunks_total"], "done": run["chunks_done"], "failed": run["chunks_failed"]},
        "patients": run["patients"],
        "created": run["created"],
        "amended": run["amended"],
        "unchanged": run["unchanged"],
        "left_out": run["left_out"],
        "requests": run["requests"],
        "failed": {"count": run["failed_count"], "patients": run["failed"], "shown_at_most": FAILED_SHOWN},
        "error": run["error"] or None,
        "started": _stamp(run["started"]),
        "finished": _stamp(run["finished"]),
    }
    return body


@bp.post("/Group/<gid>/$interpret")
def interpret_group(gid: str) -> Any:
    if not is_fhir_id(gid):
        raise BadRequest("the group id is not a FHIR resource id (up to 64 letters, digits, - and .)")
    dry = _dry_run()
    _now(dry)
    members, bad = services().group_members(gid)
    return fhir_response(_many(members, dry, bad))


def _hook_limiter() -> hook_guard.RateLimiter:
    """This app's rate limiter of notifications (one per process: see labinterp.server.api.hook)."""
    ext = current_app.extensions
    with _limiter_lock:
        if "labinterp.hook_limiter" not in ext:
            ext["labinterp.hook_limiter"] = hook_guard.RateLimiter(settings().hook_per_minute)
        return ext["labinterp.hook_limiter"]


@bp.route("/hook", methods=["POST"])
@bp.route("/hook/<rtype>/<rid>", methods=["POST", "PUT"])
def hook(rtype: str | None = None, rid: str | None = None) -> Any:
    """The Subscription's rest-hook endpoint: enqueue the patient and answer at once. Its token is checked before
    (require_token); then the caller's rate (429), the body's size (413), its shape (400/422), and the path against
    the payload (400). A read-back of the resource that fails on a temporary error is a 503: the FHIR server sends
    the notification again."""
    _hook_limiter().check(request.remote_addr or "unknown")
    data = hook_guard.bounded_body(request, settings().hook_max_bytes)
    try:
        body = parse_json(data, "request body") if data.strip() else None
    except InputError as exc:
        raise BadRequest(str(exc)) from None
    try:
        patient = services().patient_of_notification(body, rtype, rid)
    except NotificationMismatch as exc:
        raise BadRequest(str(exc)) from None
    except LabinterpError as exc:
        if not is_temporary(exc):
            raise
        log.info("hook: the resource could not be read back (%s): 503", type(exc).__name__)
        raise ServiceUnavailable(
            "the notified resource could not be read from the FHIR server: send the notification again", retry_after=30
        ) from None
    if patient:
        services().queue.enqueue(patient, "notification")
    return fhir_response(outcome("information", "informational", "queued" if patient else "nothing to do"), 200)


@bp.get("/queue")
def queue_state() -> Any:
    """Counts, recent failures, jobs waiting for another try, and jobs done with warnings. Every text redacted: no
    URL's credentials or query values, no token."""
    s, q = services(), services().queue

    def clean(rows: list[dict[str, object]]) -> list[dict[str, object]]:
        return [{k: s.redact(v) if isinstance(v, str) and k == "error" else v for k, v in row.items()} for row in rows]

    return {"counts": q.counts(), "failed": clean(q.failures()), "retrying": clean(q.retrying()), "warned": q.warned()}


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

    from labinterp.server.api.outcome import http_error_response

    app.register_error_handler(LabinterpError, error_response)
    app.register_error_handler(HTTPException, http_error_response)
    app.register_error_handler(Exception, unexpected_error_response)


def unexpected_error_response(exc: Exception) -> Any:
    """Defence in depth: any exception no handler expected is a 500 OperationOutcome, logged with the route's
    template (/Patient/<pid>/$interpret), the exception's class and the code's frames: never the request path's
    ids, nor the exception's text (which can quote any value of the input)."""
    rule = request.url_rule.rule if request.url_rule is not None else "(no route)"
    frames = "".join(traceback.format_tb(exc.__traceback__))
    log.error("unexpected error on %s %s: %s\n%s", request.method, rule, type(exc).__name__, frames)
    return fhir_response(outcome("error", "exception", f"internal error ({type(exc).__name__}): see the service's log"), 500)
