"""Deterministic identifiers: the same inputs and rule set give the same ids, run after run."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

# A fixed namespace for labinterp's uuid5 identifiers (itself uuid5 of the DNS namespace and the project name).
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_DNS, "labinterp.fhir")


def content_uuid(kind: str, subject: str, inputs: Iterable[str], ruleset_version: str) -> str:
    """Identifies one written resource by what it was derived from: its kind, subject, the inputs'
    references with versions, and the rule set's version."""
    key = "\n".join([kind, subject, *sorted(set(inputs)), f"ruleset={ruleset_version}"])
    return str(uuid.uuid5(NAMESPACE, key))


def series_uuid(kind: str, subject: str) -> str:
    """Identifies the report slot a later report on changed inputs replaces (patient + kind)."""
    return str(uuid.uuid5(NAMESPACE, f"series\n{kind}\n{subject}"))
