"""Shared fixtures: the package's knowledge, the example site's, a fixed evaluation time, and
helpers that run one small patient through extract and rules."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from labinterp.extract import extract_patient, split_bundle
from labinterp.extract.facts import PatientRecord
from labinterp.knowledge import Knowledge, load_knowledge
from labinterp.rules import Findings, interpret

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "service" / "labinterp" / "examples" / "site-mappings"
NOW = datetime(2026, 1, 20, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def k() -> Knowledge:
    return load_knowledge()


@pytest.fixture(scope="session")
def site_k() -> Knowledge:
    return load_knowledge(SITE)


def record_of(bundle: dict[str, Any], k: Knowledge) -> PatientRecord:
    parsed = split_bundle(bundle)
    assert len(parsed.patients) == 1
    return extract_patient(parsed.patients[0], parsed.medications, k)


def findings_of(bundle: dict[str, Any], k: Knowledge, equation: str | None = None) -> Findings:
    record = record_of(bundle, k)
    assert not record.problems, record.problems
    return interpret(record, k, NOW, equation)
