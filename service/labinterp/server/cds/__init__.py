"""CDS Hooks 2.0 (issue 9): discovery, patient-view, order-select / order-sign, feedback, JWT verification.
`register(app, settings, services)` is called once by create_app.

    config.py          LABINTERP_CDS_ISSUERS, LABINTERP_CDS_FHIR_SERVERS read and checked
    keys.py, auth.py   the issuers' JWK Sets; the JWT of every call verified (alg, iss, kid, aud, exp, iat, jti)
    catalog.py         the services and their prefetch templates, from the knowledge
    call.py            a hook call validated
    prefetch.py        prefetch checked, what lacks fetched from an allowed FHIR server
    orders.py          draft orders for the pipeline; when to draw the first linezolid trough
    cards.py           the card and its parts; findings_cards.py, order_cards.py: findings into cards
    feedback.py        feedback validated and stored (SQLite)
    routes.py          the endpoints

See docs/cds-hooks.md."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from labinterp.errors import InputError
from labinterp.server.cds.auth import Verifier
from labinterp.server.cds.catalog import catalog
from labinterp.server.cds.config import ISSUERS, parse_fhir_servers, parse_issuers
from labinterp.server.cds.feedback import FeedbackStore
from labinterp.server.cds.keys import KeySet, KeySetError
from labinterp.server.cds.routes import bp
from labinterp.server.cds.state import CdsState

if TYPE_CHECKING:
    from flask import Flask

    from labinterp.config import Settings
    from labinterp.server.services import Services

__all__ = ["FEEDBACK_FILE", "register"]
log = logging.getLogger("labinterp.cds")
FEEDBACK_FILE = "cds_feedback.sqlite3"


def register(app: Flask, settings: Settings, services: Services) -> None:
    """The CDS Hooks endpoints on `app`. A setting that cannot be read stops the service (InputError naming it)."""
    issuers = parse_issuers(settings.cds_issuers)
    keysets: dict[str, KeySet] = {}
    for n, source in enumerate(issuers, start=1):
        try:
            keysets[source.iss] = KeySet(source)
        except KeySetError as exc:
            raise InputError(ISSUERS, f"issuer {n}: {exc}") from None
    allowed = parse_fhir_servers(settings.cds_fhir_servers, services.fhir_base_url)
    verifier = Verifier(keysets) if keysets else None
    if not settings.cds_auth:
        log.warning("LABINTERP_CDS_AUTH=false: CDS Hooks calls are NOT authenticated (no JWT checked); only for a local sandbox")
    elif verifier is None:
        log.warning("LABINTERP_CDS_ISSUERS is not configured: every CDS Hooks call will be refused (401)")
    app.extensions["labinterp.cds"] = CdsState(
        services=services,
        catalog=catalog(services.knowledge),
        store=FeedbackStore(Path(settings.workdir) / FEEDBACK_FILE),
        allowed=allowed,
        auth=settings.cds_auth,
        verifier=verifier,
        public_url=settings.public_url,
    )
    app.register_blueprint(bp)
