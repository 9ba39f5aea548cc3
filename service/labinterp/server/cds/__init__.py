"""CDS Hooks 2.0 (issue 9): discovery, patient-view, order-select / order-sign, feedback, JWT verification.
`register(app, settings, services)` is called once by create_app."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from labinterp.config import Settings
    from labinterp.server.services import Services


def register(app: Flask, settings: Settings, services: Services) -> None:
    """Nothing registered yet: the CDS Hooks services are being built (issue 9)."""
