"""Response headers every page and API answer carries (issue 9): `register(app, settings)` is called once by
create_app."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from labinterp.config import Settings


def register(app: Flask, settings: Settings) -> None:
    """Nothing registered yet (issue 9)."""
