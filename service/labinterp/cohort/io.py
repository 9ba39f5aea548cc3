"""Reading and writing cohorts: FHIR Bundle (JSON) or NDJSON files, or every Patient of a FHIR server."""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any

from labinterp.cli.common import OutputFailure, parse_json, read_text
from labinterp.errors import InputError
from labinterp.fhir.client import FhirClient
from labinterp.fhir.search import as_collection, is_fhir_id
from labinterp.knowledge import Knowledge

log = logging.getLogger("labinterp.cohort")


def read_cohort_file(path: Path) -> dict[str, Any]:
    """A Bundle as it is, or NDJSON (one resource per line) as a collection Bundle. Read as `interpret` reads
    (UTF-8, a byte order mark accepted; InputError, one line, for anything unreadable). A file whose first
    non-blank character is `{` and that parses as one JSON document is JSON, however it is indented; one whose
    first non-blank line is a JSON document of its own is NDJSON, and its errors name the file and line."""
    where = str(path)
    text = read_text(where)
    if not text.strip():
        raise InputError(where, "empty: neither a FHIR Bundle (JSON) nor NDJSON")
    if text.lstrip().startswith("{"):
        try:
            data: dict[str, Any] = parse_json(text, where)
            return data
        except InputError as whole:
            first = next(line for line in text.splitlines() if line.strip())
            try:
                parse_json(first, where)
            except InputError:
                raise whole from None  # one JSON document, broken: its own error
    resources = []
    for i, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            resource = parse_json(line, where, line=i)
            if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
                found = f"a JSON {_json_type(resource)}" if not isinstance(resource, dict) else "an object with no resourceType"
                raise InputError(f"{where} line {i}", f"expected a FHIR resource (an object with a resourceType), found {found}")
            resources.append(resource)
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    return "number" if isinstance(value, int | float) else "null"


def read_cohort_server(client: FhirClient, k: Knowledge) -> dict[str, Any]:
    """Every Patient of the server with what labinterp reads about each (one batch request per patient)."""
    resources: list[dict[str, Any]] = []
    skipped = 0
    for patient in client.search("Patient", [("_count", "500"), ("_elements", "id")]):
        pid = patient.get("id")
        if not isinstance(pid, str) or not is_fhir_id(pid):  # never put into a URL; one odd id stops nothing
            skipped += 1
            continue
        data = client.fetch_patient(pid, k.output.systems["series_identifier"])
        resources += [e["resource"] for e in data.bundle["entry"]]
    if skipped:
        log.warning("%d Patient(s) whose id is not a FHIR id were left out of the cohort", skipped)
    return as_collection(resources)


def write_cohort(patients: list[Any], k: Knowledge, path: Path, fmt: str, progress: bool = False) -> int:
    from labinterp.cohort.synth import resources

    items = patients
    if progress:
        from tqdm import tqdm

        items = tqdm(patients, desc="patients", unit="pt")
    rows = [r for p in items for r in resources(p, k)]
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            if fmt == "ndjson":
                for r in rows:
                    fh.write(json.dumps(r, separators=(",", ":")) + "\n")
            else:
                json.dump({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in rows]}, fh)
        tmp.replace(path)
    except OSError as exc:  # no such directory, no permission, a directory at `path`: one line naming it
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise OutputFailure(f"{path}: cannot be written: {exc.strerror or exc}") from None
    return len(rows)
