"""The CDS Hooks endpoints: `GET /cds-services` (discovery), `POST /cds-services/{id}` (a hook call),
`POST /cds-services/{id}/feedback`. Every call is authenticated first (auth.py): 401 with an OperationOutcome
(code login) and `WWW-Authenticate: Bearer error="invalid_token"`; a CORS preflight (OPTIONS) is answered 204 without
auth. A request of the wrong shape is a 400, data that can be had neither from the prefetch nor from an allowed FHIR
server a 412, an unknown service a 404, a body over the app's MAX_CONTENT_LENGTH a 413: each an OperationOutcome,
never a 500. No clinical logic here: the pipeline interprets, the card modules word."""

from __future__ import annotations

import logging
import re
import sqlite3
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from labinterp.cli.common import parse_json
from labinterp.errors import InputError
from labinterp.pipeline import interpret_bundle
from labinterp.server.api.outcome import fhir_response, outcome
from labinterp.server.cds.auth import AuthError
from labinterp.server.cds.call import CallError, parse_call
from labinterp.server.cds.cards import Card, CardContext
from labinterp.server.cds.catalog import CdsService, discovery
from labinterp.server.cds.feedback import parse_feedback
from labinterp.server.cds.findings_cards import patient_view_cards
from labinterp.server.cds.order_cards import linezolid_order_cards, magnesium_order_cards
from labinterp.server.cds.orders import drafted, drafts_for_pipeline
from labinterp.server.cds.prefetch import PreconditionFailed, assemble, gather
from labinterp.server.cds.state import CdsState

log = logging.getLogger("labinterp.cds")
bp = Blueprint("cds", __name__)
_HEADER_UNSAFE = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")  # RFC 6750 error_description characters


def state() -> CdsState:
    return current_app.extensions["labinterp.cds"]


def audience() -> str:
    """The URL the client called, as `aud` must name it: LABINTERP_PUBLIC_URL + path when set, else the request's."""
    public = state().public_url
    return public.rstrip("/") + request.path if public else request.base_url


def unauthorized(description: str) -> Response:
    resp = fhir_response(outcome("error", "login", description), 401)
    safe = _HEADER_UNSAFE.sub("'", description)
    resp.headers["WWW-Authenticate"] = f'Bearer error="invalid_token", error_description="{safe}"'
    return resp


def failure(status: int, code: str, text: str) -> Response:
    return fhir_response(outcome("error", code, text), status)


# CORS for browser-based CDS Clients (the spec: "CDS Services and browser-based CDS Clients will require CORS support").
# Any origin: the calls carry a bearer JWT, never cookies, so a page of another origin gains nothing it could not send.
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Max-Age": "600",
}


@bp.after_request
def cors(resp: Response) -> Response:
    resp.headers["Access-Control-Allow-Origin"] = CORS["Access-Control-Allow-Origin"]
    return resp


@bp.before_request
def authenticate() -> Response | None:
    if request.method == "OPTIONS":  # a browser's preflight carries no Authorization: answered before auth
        return Response(status=204, headers=CORS)
    s = state()
    if not s.auth:
        return None
    if s.verifier is None:
        return unauthorized("LABINTERP_CDS_ISSUERS is not configured: no CDS Client is trusted, so every call is refused")
    try:
        s.verifier.verify(request.headers.get("Authorization"), audience())
    except AuthError as exc:
        log.info("CDS call refused (401): %s", exc.description)
        return unauthorized(exc.description)
    return None


@bp.errorhandler(RequestEntityTooLarge)
def too_large(exc: RequestEntityTooLarge) -> Response:
    """A body over the app's MAX_CONTENT_LENGTH: 413 with an OperationOutcome (as every other refusal)."""
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    most = f" (at most {limit} bytes)" if isinstance(limit, int) else ""
    return failure(413, "too-costly", f"the request body is larger than this service accepts{most}")


def _body() -> Any:
    data = request.get_data(cache=True)
    if not data.strip():
        raise CallError("request body", "empty: expected a JSON object")
    try:
        return parse_json(data, "request body")
    except InputError as exc:
        raise CallError("request body", exc.what) from None


def _service(service_id: str) -> CdsService | None:
    return state().catalog.get(service_id)


@bp.get("/cds-services")
def discover() -> Any:
    return jsonify(discovery(state().catalog))


@bp.post("/cds-services/<service_id>")
def call(service_id: str) -> Any:
    service = _service(service_id)
    if service is None:
        return failure(404, "not-found", "no CDS service with this id: GET /cds-services lists them")
    try:
        return jsonify({"cards": _cards(service)})
    except CallError as exc:
        return failure(400, "invalid", str(exc))
    except PreconditionFailed as exc:
        return failure(412, "incomplete", f"the data this service needs cannot be had: {exc}")
    except InputError as exc:  # the call's data as the pipeline reads it (never quoted back)
        return failure(400, "invalid", f"the call's data cannot be read: {exc}")


def _cards(service: CdsService) -> list[dict[str, Any]]:
    s = state()
    hook = parse_call(_body(), service)
    resources, fetched = gather(hook, service, s.allowed, s.client_factory)
    drafts, draft_resources = drafts_for_pipeline(hook)
    now = s.clock()
    k = s.services.knowledge
    run = interpret_bundle(
        assemble(resources + draft_resources),
        k,
        now,
        equation=s.services.equation,
        validate=False,
        with_provenance=False,
        render=False,
    )
    result = next((p for p in run.patients if p.findings.record.patient.source.id == hook.patient_id), None)
    if result is None:
        raise PreconditionFailed("the Patient of context.patientId is not in the data")
    f = result.findings
    aliases = {d.internal: f"{d.reference} (draft order)" if d.reference else "the draft order" for d in drafts}
    ctx = CardContext(k, s.services.fhir_base_url, result.written, aliases)
    cards: list[Card]
    if service.domain == "patient":
        cards = patient_view_cards(ctx, f)
    elif service.domain == "linezolid":
        cards = linezolid_order_cards(ctx, f, drafted(f.record, drafts), hook.patient_id, now)
    else:
        cards = magnesium_order_cards(ctx, f, drafted(f.record, drafts))
    rendered = [ctx.render(c) for c in cards]
    try:
        s.store.issued(service.id, [(c.uuid, c.kind, c.indicator) for c in cards], now)
    except (OSError, sqlite3.Error) as exc:  # the cards still go out; feedback on them is stored without their kind
        log.warning("CDS cards issued but not recorded in the feedback store (%s)", type(exc).__name__)
    log.info(
        "CDS %s: %d cards, %d prefetch keys fetched, %d resources left out",
        service.id,
        len(cards),
        len(fetched),
        len(run.problems),
    )
    return rendered


@bp.post("/cds-services/<service_id>/feedback")
def feedback(service_id: str) -> Any:
    service = _service(service_id)
    if service is None:
        return failure(404, "not-found", "no CDS service with this id: GET /cds-services lists them")
    s = state()
    try:
        items = parse_feedback(_body())
        s.store.record(service.id, items, s.clock())
    except CallError as exc:
        return failure(400, "invalid", str(exc))
    except (OSError, sqlite3.Error) as exc:
        log.error("CDS feedback not stored (%s)", type(exc).__name__)
        return failure(503, "transient", "the feedback could not be stored: try again later")
    log.info("CDS %s: %d feedback items stored", service.id, len(items))
    return Response(status=200)
