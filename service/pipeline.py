"""fetch → extract → interpret → compose → (write): the only module that joins the layers.

For files: `interpret_bundle` takes a parsed Bundle and returns the transaction Bundle to write.
A patient's results are all or nothing: broken input raises before anything is returned."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.compose import Written, compose_patient, device, transaction
from service.errors import ResourceError
from service.extract import extract_patient, split_bundle
from service.knowledge import Knowledge
from service.rules import Findings, interpret
from service.validate import validate_bundle

log = logging.getLogger("labinterp.pipeline")


@dataclass
class PatientResult:
    findings: Findings
    written: list[Written]


@dataclass
class RunResult:
    bundle: dict[str, Any]
    patients: list[PatientResult]


def interpret_bundle(
    data: Any, k: Knowledge, now: datetime, *, strict: bool = True, equation: str | None = None, validate: bool = True
) -> RunResult:
    """Interpret every patient of an input Bundle. In strict mode (the default) any broken resource is an
    error naming it; otherwise it is left out and listed in the report's "Not used" section."""
    parsed = split_bundle(data)
    dev = device(k)
    results: list[PatientResult] = []
    written: list[Written] = [dev]
    for pinput in parsed.patients:
        record = extract_patient(pinput, parsed.medications, k)
        if strict and record.problems:
            first = record.problems[0]
            more = f" (and {len(record.problems) - 1} more problems)" if len(record.problems) > 1 else ""
            raise ResourceError(first.where, first.what + more)
        findings = interpret(record, k, now, equation)
        out = compose_patient(findings, k, now, dev)
        results.append(PatientResult(findings, out))
        written += out
        log.debug("patient interpreted: %d resources composed, %d problems", len(out), len(record.problems))
    if len(written) == 1:
        written = []  # nothing to write: no Device either
    bundle = transaction(written)
    if validate:
        validate_bundle(bundle)
    return RunResult(bundle, results)
