"""Reading and writing cohorts: FHIR Bundle (JSON) or NDJSON files, or every Patient of a FHIR server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from labinterp.errors import InputError
from labinterp.fhir.client import FhirClient
from labinterp.fhir.search import as_collection
from labinterp.knowledge import Knowledge


def read_cohort_file(path: Path) -> dict[str, Any]:
    """A Bundle as it is, or NDJSON (one resource per line) as a collection Bundle."""
    text = path.read_text(encoding="utf-8")
    stripped = text.lstrip()
    if stripped.startswith("{") and "\n{" not in stripped.rstrip():
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(str(path), f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    resources = []
    for i, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                resources.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise InputError(f"{path} line {i}", f"not JSON: {exc.msg}") from exc
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}


def read_cohort_server(client: FhirClient, k: Knowledge) -> dict[str, Any]:
    """Every Patient of the server with what labinterp reads about each (one batch request per patient)."""
    resources: list[dict[str, Any]] = []
    for patient in client.search("Patient?_count=500&_elements=id"):
        data = client.fetch_patient(str(patient["id"]), k.output.systems["series_identifier"])
        resources += [e["resource"] for e in data.bundle["entry"]]
    return as_collection(resources)


def write_cohort(patients: list[Any], k: Knowledge, path: Path, fmt: str, progress: bool = False) -> int:
    from labinterp.cohort.synth import resources

    items = patients
    if progress:
        from tqdm import tqdm

        items = tqdm(patients, desc="patients", unit="pt")
    rows = [r for p in items for r in resources(p, k)]
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        if fmt == "ndjson":
            for r in rows:
                fh.write(json.dumps(r, separators=(",", ":")) + "\n")
        else:
            json.dump({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in rows]}, fh)
    tmp.replace(path)
    return len(rows)
