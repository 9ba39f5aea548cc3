"""Deterministic identifiers: the same inputs and rule set give the same ids, run after run."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable

# A fixed namespace for labinterp's uuid5 identifiers (itself uuid5 of the DNS namespace and the project name).
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_DNS, "labinterp.fhir")
_NAMESPACE_BYTES = NAMESPACE.bytes


# the RFC 4122 variant (10xx) of the hex digit at the start of the fourth group, by the digest's digit there
_VARIANT = {f"{n:x}": f"{(n & 0x3) | 0x8:x}" for n in range(16)}


def uuid5(name: str) -> str:
    """str(uuid.uuid5(NAMESPACE, name)) without the UUID object (the same digits: SHA-1 of the namespace and the
    name, version 5 and the RFC 4122 variant set), a few times faster: two are made for every written resource."""
    h = hashlib.sha1(_NAMESPACE_BYTES + name.encode("utf-8")).hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


def content_uuid(kind: str, subject: str, inputs: Iterable[str], ruleset_version: str) -> str:
    """Identifies one written resource by what it was derived from: its kind, subject, the inputs'
    references with versions, and the rule set's version."""
    key = "\n".join([kind, subject, *sorted(set(inputs)), f"ruleset={ruleset_version}"])
    return uuid5(key)


def series_uuid(kind: str, subject: str) -> str:
    """Identifies the report slot a later report on changed inputs replaces (patient + kind)."""
    return uuid5(f"series\n{kind}\n{subject}")
