"""The OpenAPI description of the service's own endpoints."""

from __future__ import annotations

from typing import Any

from service import __version__

FHIR = {"application/fhir+json": {"schema": {"type": "object", "description": "a FHIR R4 resource"}}}
OUTCOME = {"description": "OperationOutcome naming what went wrong", "content": FHIR}


def _op(
    summary: str, params: list[dict[str, Any]] | None = None, body: bool = False, ok: str = "a FHIR Bundle"
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "parameters": params or [],
        "responses": {"200": {"description": ok, "content": FHIR}, "4XX": OUTCOME, "5XX": OUTCOME},
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
NOW = {
    "name": "now",
    "in": "query",
    "required": False,
    "schema": {"type": "string", "format": "date-time"},
    "description": "evaluation time",
}


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
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": {
            "/Patient/{id}/$interpret": {
                "post": _op(
                    "Interpret one patient (one read, one write)",
                    [pid, DRY, NOW],
                    ok="the server's transaction-response, or the planned transaction with dry-run",
                )
            },
            "/$interpret": {
                "post": _op(
                    "Interpret the patients and/or Group members named in a Parameters resource",
                    [DRY, NOW],
                    body=True,
                    ok="batch-response Bundle, one entry per patient",
                )
            },
            "/Group/{id}/$interpret": {
                "post": _op("Interpret every member of a Group", [pid, DRY, NOW], ok="batch-response Bundle")
            },
            "/hook": {
                "post": _op(
                    "Subscription rest-hook endpoint (no payload or a notification Bundle)", body=True, ok="OperationOutcome"
                )
            },
            "/hook/{type}/{id}": {
                "put": _op("Subscription rest-hook endpoint with a resource payload", body=True, ok="OperationOutcome"),
                "post": _op("Subscription rest-hook endpoint with a resource payload", body=True, ok="OperationOutcome"),
            },
            "/queue": {"get": _op("Work queue: counts by state and recent failures", ok="JSON")},
            "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "alive"}}}},
            "/readyz": {
                "get": {
                    "summary": "Readiness: FHIR server reachable, mappings loaded",
                    "responses": {"200": {"description": "ready"}, "503": OUTCOME},
                }
            },
            "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3"}}}},
        },
    }
