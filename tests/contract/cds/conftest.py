"""What the CDS Hooks contract tests share: a CDS Client's keys (ES384 and RS384, its JWK Set as a file), and the
service configured to trust them, its clock at the examples' time (tests/data/cds/cdskit.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from labinterp.server.app import create_app
from tests.data.cds.cdskit import NOW, Signer, config


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer.generate()


@pytest.fixture
def app(tmp_path: Path, signer: Signer) -> Any:
    app = create_app(config(tmp_path, signer))
    app.extensions["labinterp.cds"].clock = lambda: NOW
    return app


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()
