"""What the CDS Hooks endpoints of one app share, built once by `register` and kept in app.extensions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from labinterp.server.cds.auth import Verifier
from labinterp.server.cds.catalog import CdsService
from labinterp.server.cds.feedback import FeedbackStore
from labinterp.server.cds.prefetch import ClientFactory, default_client
from labinterp.server.services import Services


def utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass
class CdsState:
    services: Services
    catalog: dict[str, CdsService]
    store: FeedbackStore
    allowed: tuple[str, ...]  # normalized base URLs of the FHIR servers a call may make this service contact
    auth: bool = True  # LABINTERP_CDS_AUTH: false only for a local sandbox
    verifier: Verifier | None = None  # None with auth on: no issuer configured, every call is refused
    public_url: str | None = None
    clock: Callable[[], datetime] = utc_now  # the evaluation time of the cards (tests fix it)
    client_factory: ClientFactory = field(default=default_client)
