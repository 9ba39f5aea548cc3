"""The OpenAPI description of the service's own endpoints."""

from __future__ import annotations

from typing import Any

from labinterp import __version__

FHIR = {"application/fhir+json": {"schema": {"type": "object", "description": "a FHIR R4 resource"}}}
OUTCOME = {"description": "OperationOutcome naming what went wrong", "content": FHIR}


def _op(
    summary: str,
    params: list[dict[str, Any]] | None = None,
    body: bool = False,
    ok: str = "a FHIR Bundle",
    headers: dict[str, Any] | None = None,
) -> dict[str, Any]:
    success: dict[str, Any] = {"description": ok, "content": FHIR}
    if headers:
        success["headers"] = headers
    op: dict[str, Any] = {
        "summary": summary,
        "parameters": params or [],
        "responses": {"200": success, "4XX": OUTCOME, "5XX": OUTCOME},
        "security": [{"bearer": []}, {}],
    }
    if body:
        op["requestBody"] = {"content": FHIR}
    return op


DRY = {
    "name": "dry-run",
    "in": "query",
    "required": False,
    "schema": {"type": "boolean"},
    "description": "return the transaction without writing it",
}
STRICT = {
    "name": "strict",
    "in": "query",
    "required": False,
    "schema": {"type": "boolean"},
    "description": "any resource that cannot be used (unknown unit, unreadable value, genotype or date, unresolvable "
    "subject) fails the patient with a 422 OperationOutcome naming it, and nothing is written, for validating a "
    "data feed (a search result the FHIR server returned without a resourceType: 502, the server's fault). "
    "Default: the service's LABINTERP_STRICT (false): such a resource is left out, listed in the "
    "report's 'Not used' section and answered as a warning",
}
WARNINGS = {
    "X-Labinterp-Warnings": {"description": "how many resources were left out (0: none)", "schema": {"type": "integer"}},
    "X-Labinterp-Created": {"description": "report kinds created", "schema": {"type": "string"}},
    "X-Labinterp-Amended": {"description": "report kinds amended", "schema": {"type": "string"}},
    "X-Labinterp-Unchanged": {"description": "report kinds already stored", "schema": {"type": "string"}},
    "X-Labinterp-Requests": {"description": "HTTP requests to the FHIR server", "schema": {"type": "integer"}},
}
NOW = {
    "name": "now",
    "in": "query",
    "required": False,
    "schema": {"type": "string", "format": "date-time"},
    "description": "evaluation time, with dry-run only (400 otherwise): a report written to the record carries the time "
    "it was written",
}
HOOK_RESPONSES = {
    "200": {"description": "OperationOutcome: queued, or nothing to do", "content": FHIR},
    "400": {"description": "a body that is not JSON, or a path that names another resource than the payload", "content": FHIR},
    "401": {
        "description": "no or another token than LABINTERP_HOOK_TOKEN (the API token does not open the hook)",
        "content": FHIR,
    },
    "413": {"description": "a body over LABINTERP_HOOK_MAX_BYTES", "content": FHIR},
    "422": {"description": "a notification of the wrong shape, naming the element", "content": FHIR},
    "429": {
        "description": "over LABINTERP_HOOK_PER_MINUTE notifications a minute from this caller (counted per process)",
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
        "content": FHIR,
    },
    "503": {
        "description": "the notified resource could not be read back for now: send the notification again",
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
        "content": FHIR,
    },
}


HOOK_PATH = [
    {"name": "type", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[A-Za-z]+$"}},
    {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[A-Za-z0-9\\-.]{1,64}$"}},
]


def _hook(summary: str, path: bool = False) -> dict[str, Any]:
    return {
        "summary": summary,
        "parameters": HOOK_PATH if path else [],
        "requestBody": {"content": FHIR},
        "responses": HOOK_RESPONSES,
        "security": [{"hook": []}, {}],
    }


JSON = {"application/json": {"schema": {"type": "object"}}}
CDS_ERRORS = {
    "400": {"description": "a request of the wrong shape (OperationOutcome naming the element)", "content": FHIR},
    "401": {
        "description": "no, or an unverifiable, CDS Client JWT (OperationOutcome; WWW-Authenticate: Bearer error=invalid_token)",
        "content": FHIR,
    },
    "404": {"description": "no such CDS Service", "content": FHIR},
}


def _cds(summary: str, ok: str, service: bool = True, body: bool = True, more: dict[str, Any] | None = None) -> dict[str, Any]:
    params = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}] if service else []
    op: dict[str, Any] = {
        "summary": summary,
        "parameters": params,
        "responses": {"200": {"description": ok, "content": JSON}, **CDS_ERRORS, **(more or {})},
        "security": [{"cds": []}],
    }
    if body:
        op["requestBody"] = {"content": JSON}
    return op


def cds_paths() -> dict[str, Any]:
    """CDS Hooks 2.0 (docs/cds-hooks.md): every call carries a CDS Client's JWT, never the API token."""
    precondition = {"412": {"description": "data neither prefetched nor fetchable from an allowed FHIR server", "content": FHIR}}
    return {
        "/cds-services": {"get": _cds("CDS Hooks discovery", "the services, their hooks and prefetch templates", False, False)},
        "/cds-services/{id}": {
            "post": _cds("A hook call: cards from the same findings as the reports", "cards", more=precondition)
        },
        "/cds-services/{id}/feedback": {"post": _cds("Feedback on cards (accepted / overridden), stored", "stored")},
    }


RUN_ID = {"name": "run_id", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[A-Za-z0-9\\-.]{1,64}$"}}
JSON_OBJECT = {"application/json": {"schema": {"type": "object"}}}
RUN_STATUS = {
    "summary": "A population run's status",
    "parameters": [RUN_ID],
    "responses": {
        "200": {
            "description": "JSON: id, state (listing: the patients are being selected; running: chunk jobs queued or "
            "running; done: every chunk finished, failed patients listed; failed: the listing, or a chunk's job, failed "
            "for good), selection, chunks {total, done, failed}, patients, created, amended, unchanged (reports), "
            "left_out (resources), requests (to the FHIR server), failed {count, patients: the first 100 as "
            "{patient, error}}, error (the listing's), started and finished (UTC instants; finished null until then)",
            "content": JSON_OBJECT,
        },
        "401": OUTCOME,
        "404": {"description": "no population run with this id (OperationOutcome)", "content": FHIR},
    },
    "security": [{"bearer": []}, {}],
}


def _interpret_many() -> dict[str, Any]:
    op = _op(
        "Interpret the patients and/or Group members named in a Parameters resource; or start a population run",
        [DRY, NOW, STRICT],
        body=True,
        ok="batch-response Bundle, one entry per patient; each entry's response.outcome says what was "
        "written (information) and lists each resource left out (warning)",
    )
    op["description"] = (
        "Named patients ('patient' references, with or without a 'group'), or a dry run of a 'group': interpreted in the "
        "request (200, a batch-response). A population run: parameter 'all' (valueBoolean true: every Patient of the "
        "FHIR server) or 'group' alone (valueString or valueReference Group/id: its active Patient members), optionally "
        "'since' (valueInstant with seconds and a time zone: only patients with something changed at or after it). The "
        "run goes on in the background on the job queue (a listing job, then chunk jobs of LABINTERP_POPULATION_CHUNK "
        "patients, written as transactions of LABINTERP_POPULATION_TRANSACTION patients, shared by every worker of the "
        "queue): 202 at once. 'all' with 'group', 'all' or 'since' with 'patient' or dry-run, a group that is not a FHIR "
        "id, a 'since' that is not an instant: 400"
    )
    op["responses"]["202"] = {
        "description": "a population run started: a Parameters with 'run' (valueId), 'status' (valueUrl: "
        "GET /$interpret/runs/{run_id}) and 'state' (valueCode listing)",
        "headers": {"Content-Location": {"description": "the run's status URL", "schema": {"type": "string"}}},
        "content": FHIR,
    }
    return op


def openapi_document() -> dict[str, Any]:
    pid = {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[A-Za-z0-9\\-.]{1,64}$"}}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "labinterp",
            "version": __version__,
            "description": "Interprets linezolid troughs, magnesium, renal function and PGx genotypes from a FHIR server and "
            "writes DiagnosticReport, RiskAssessment and Provenance back. Errors are OperationOutcomes.",
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "LABINTERP_API_TOKEN"},
                "hook": {"type": "http", "scheme": "bearer", "description": "LABINTERP_HOOK_TOKEN: the hook only"},
                "cds": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "a CDS Client's JWT (ES384 or RS384) from an issuer of LABINTERP_CDS_ISSUERS",
                },
            }
        },
        "paths": {
            "/Patient/{id}/$interpret": {
                "post": _op(
                    "Interpret one patient (one read, one write)",
                    [pid, DRY, NOW, STRICT],
                    ok="the server's transaction-response Bundle, or the planned transaction Bundle with dry-run. When "
                    "resources were left out (not in strict mode), a Parameters instead, as FHIR returns an operation's "
                    "two outputs: parameter 'return' holds that Bundle, parameter 'outcome' an OperationOutcome with one "
                    "issue per resource left out (severity warning, code processing, expression = the resource and "
                    "element, diagnostics = why); the patient's other reports are written",
                    headers=WARNINGS,
                )
            },
            "/Substance/{id}/$interpret": {
                "post": _op(
                    "Interpret one formulation batch (a Substance with its samples and QC results) and write its QC report",
                    [pid, DRY, NOW, STRICT],
                    ok="as POST /Patient/{id}/$interpret; header X-Labinterp-Conclusion says released, not released or "
                    "incomplete",
                    headers=WARNINGS,
                )
            },
            "/$interpret": {"post": _interpret_many()},
            "/$interpret/runs/{run_id}": {"get": RUN_STATUS},
            "/Group/{id}/$interpret": {
                "post": _op(
                    "Interpret every member of a Group",
                    [pid, DRY, NOW, STRICT],
                    ok="batch-response Bundle, as POST /$interpret",
                )
            },
            "/hook": {"post": _hook("Subscription rest-hook endpoint (no payload or a notification Bundle)")},
            "/hook/{type}/{id}": {
                "put": _hook(
                    "Subscription rest-hook endpoint with a resource payload (or none: the resource is read back)", True
                ),
                "post": _hook(
                    "Subscription rest-hook endpoint with a resource payload (or none: the resource is read back)", True
                ),
            },
            "/queue": {
                "get": _op(
                    "Work queue: counts by state, recent failures ('retryable' when they failed on a temporary error: "
                    "requeued when the FHIR server answers again), jobs waiting for another try after an error "
                    "('retrying'), and recent jobs that succeeded with resources left out ('warned', each with its "
                    "warning lines). Error texts name no credentials or query values",
                    ok="JSON",
                )
            },
            "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "alive"}}}},
            "/readyz": {
                "get": {
                    "summary": "Readiness: FHIR server reachable, mappings loaded",
                    "responses": {"200": {"description": "ready"}, "503": OUTCOME},
                }
            },
            "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3"}}}},
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics: requests and latency by route template, FHIR round trips, queue depth "
                    "and age, reports written by kind and interpretation, resources left out",
                    "responses": {"200": {"description": "Prometheus text exposition format"}, "401": OUTCOME},
                    "security": [{"bearer": []}, {}],
                }
            },
            **cds_paths(),
        },
    }
