"""Reading and writing cohorts: FHIR Bundle (JSON) or NDJSON files, or every Patient of a FHIR server.

NDJSON is also read as a stream (`ndjson_patients`): one small collection Bundle per patient, never the whole
file in memory, so a cohort of any size is read in flat memory. A first pass reads every line (each checked as
`read_cohort_file` checks it, so a broken line fails before anything is yielded) and notes whose each line is:
a Patient's own id, or the Patient its `subject` (a MedicationStatement's `patient`) references. When each
patient's lines are contiguous (as `labinterp cohort synth` writes them, and as a per-patient export does), a
second pass yields one group at a time. When they are not (a Bulk Data export writes one resource type after
another), the lines' byte offsets are indexed by patient in a temporary SQLite file beside nothing else (in the
system's temporary directory, removed when the reading ends) and each patient's lines are read back by offset:
disk, not memory, holds the index. Medication resources (referenced, not about a patient) are kept in memory,
once, and added to the group of every patient that references them; any other resource about no patient is
left out, as `split_bundle` leaves it out of every patient's input. Groups come in the order their first line
appears."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from labinterp.cli.common import OutputFailure, parse_json, read_text
from labinterp.errors import InputError
from labinterp.extract.bundle import normalize_reference
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
    resources = [_resource(line, where, i) for i, line in enumerate(text.splitlines(), start=1) if line.strip()]
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}


def is_ndjson(path: Path) -> bool:
    """True when the file is NDJSON of resources: its first non-blank line is a JSON object of its own, a FHIR
    resource that is not a Bundle (a Bundle on one line is read whole by `read_cohort_file`, as it always was)."""
    try:
        with path.open("rb") as fh:
            for raw in fh:
                if raw.strip():
                    first = json.loads(raw.decode("utf-8-sig"))
                    return isinstance(first, dict) and first.get("resourceType") not in (None, "Bundle")
    except (OSError, ValueError, RecursionError):
        return False  # read_cohort_file names what is wrong
    return False


SHARED = ("Medication",)  # referenced by patients' resources, about no patient: kept once, added where referenced


def _owner(resource: dict[str, Any]) -> str | None:
    """Whose line this is: "Patient/<id>" for a Patient and for what it is about; None for anything else."""
    rtype = resource["resourceType"]
    if rtype == "Patient":
        rid = resource.get("id")
        return f"Patient/{rid}" if isinstance(rid, str) and rid else None
    subject = resource.get("subject")
    if subject is None and rtype == "MedicationStatement":
        subject = resource.get("patient")
    if isinstance(subject, dict) and isinstance(subject.get("reference"), str):
        return normalize_reference(subject["reference"])
    return None


def _lines(fh: IO[bytes], where: str) -> Iterator[tuple[int, int, int, dict[str, Any]]]:
    """(line number, byte offset, length, resource) of every non-blank line; InputError naming the line for one
    that is not a FHIR resource (as read_cohort_file says it)."""
    offset = 0
    for i, raw in enumerate(fh, start=1):
        length = len(raw)
        text = raw[3:] if i == 1 and raw.startswith(b"\xef\xbb\xbf") else raw
        if text.strip():
            resource = _resource(text, where, i)
            yield i, offset, length, resource
        offset += length


def _resource(text: bytes | str, where: str, line: int) -> dict[str, Any]:
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(where, f"not UTF-8 text ({exc.reason} at line {line})") from None
    resource = parse_json(text, where, line=line)
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        found = f"a JSON {_json_type(resource)}" if not isinstance(resource, dict) else "an object with no resourceType"
        raise InputError(f"{where} line {line}", f"expected a FHIR resource (an object with a resourceType), found {found}")
    return resource


def _medication_refs(resource: dict[str, Any]) -> list[str]:
    ref = resource.get("medicationReference")
    if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
        return [normalize_reference(ref["reference"])]
    return []


def _group_bundle(resources: list[dict[str, Any]], shared: dict[str, dict[str, Any]]) -> dict[str, Any]:
    extra = {key: shared[key] for r in resources for key in _medication_refs(r) if key in shared}
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in [*resources, *extra.values()]]}


def ndjson_patients(path: Path, *, index_dir: str | None = None) -> Iterator[dict[str, Any]]:
    """One collection Bundle per patient of an NDJSON file (the Patient and what is about it, with the
    Medications it references), in flat memory whatever the file's size (see the module's note). Resources about
    no Patient of the file come as a group of their own (split_bundle then says they cannot be attributed)."""
    where = str(path)
    try:
        fh = path.open("rb")
    except FileNotFoundError as exc:
        raise InputError(where, "no such file") from exc
    except OSError as exc:
        raise InputError(where, f"cannot be read: {exc.strerror or exc}") from exc
    with fh:
        shared, grouped, any_line = _first_pass(fh, where)
        if not any_line:
            raise InputError(where, "empty: neither a FHIR Bundle (JSON) nor NDJSON")
        fh.seek(0)
        if grouped:
            yield from _contiguous_groups(fh, where, shared)
        else:
            log.info("%s: resources not grouped by patient: indexing them on disk", where)
            yield from _indexed_groups(fh, where, shared, index_dir)


def _first_pass(fh: IO[bytes], where: str) -> tuple[dict[str, dict[str, Any]], bool, bool]:
    """The shared resources (Medications) by reference; whether every patient's lines are contiguous; whether
    there is any resource at all. Holds the set of patients seen (their references), not their resources."""
    shared: dict[str, dict[str, Any]] = {}
    done: set[str] = set()
    current: str | None = None
    grouped, any_line = True, False
    for _i, _offset, _length, resource in _lines(fh, where):
        any_line = True
        if resource["resourceType"] in SHARED:
            rid = resource.get("id")
            if isinstance(rid, str) and rid:
                shared[f"{resource['resourceType']}/{rid}"] = resource
            continue
        owner = _owner(resource)
        if owner is None or owner == current or not grouped:
            continue
        if owner in done:
            grouped = False  # a patient's lines resume after another patient's: not grouped
        if current is not None:
            done.add(current)
        current = owner
    return shared, grouped, any_line


def _contiguous_groups(fh: IO[bytes], where: str, shared: dict[str, dict[str, Any]]) -> Iterator[dict[str, Any]]:
    group: list[dict[str, Any]] = []
    current: str | None = None
    for _i, _offset, _length, resource in _lines(fh, where):
        if resource["resourceType"] in SHARED:
            continue
        owner = _owner(resource)
        if owner is None:
            continue  # about no patient: no patient's input (as split_bundle reads it)
        if owner != current and group:
            yield _group_bundle(group, shared)
            group = []
        current = owner
        group.append(resource)
    if group:
        yield _group_bundle(group, shared)


def _indexed_groups(
    fh: IO[bytes], where: str, shared: dict[str, dict[str, Any]], index_dir: str | None
) -> Iterator[dict[str, Any]]:
    """Each patient's lines read back by their offsets from an on-disk SQLite index (removed afterwards)."""
    fd, db_path = tempfile.mkstemp(prefix="labinterp-ndjson-", suffix=".sqlite", dir=index_dir)
    os.close(fd)
    db = sqlite3.connect(db_path)
    try:
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.execute(
            "CREATE TABLE line (owner TEXT NOT NULL, seq INTEGER NOT NULL, offset INTEGER, length INTEGER, number INTEGER)"
        )
        batch: list[tuple[str, int, int, int, int]] = []
        for seq, (i, offset, length, resource) in enumerate(_lines(fh, where)):
            if resource["resourceType"] in SHARED:
                continue
            owner = _owner(resource)
            if owner is None:
                continue
            batch.append((owner, seq, offset, length, i))
            if len(batch) >= 10_000:
                db.executemany("INSERT INTO line VALUES (?, ?, ?, ?, ?)", batch)
                batch = []
        db.executemany("INSERT INTO line VALUES (?, ?, ?, ?, ?)", batch)
        db.execute("CREATE INDEX line_owner ON line (owner, seq)")
        db.commit()
        owners = db.execute("SELECT owner FROM line GROUP BY owner ORDER BY min(seq)")
        reader = db.cursor()
        for (owner,) in owners:
            group = []
            for offset, length, number in reader.execute(
                "SELECT offset, length, number FROM line WHERE owner = ? ORDER BY seq", (owner,)
            ):
                fh.seek(offset)
                raw = fh.read(length)
                group.append(_resource(raw[3:] if offset == 0 and raw.startswith(b"\xef\xbb\xbf") else raw, where, number))
            yield _group_bundle(group, shared)
    finally:
        db.close()
        with contextlib.suppress(OSError):
            os.unlink(db_path)


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
    count = 0
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            if fmt == "ndjson":  # written as made: one patient's resources in memory at a time
                for p in items:
                    for r in resources(p, k):
                        fh.write(json.dumps(r, separators=(",", ":")) + "\n")
                        count += 1
            else:
                rows = [r for p in items for r in resources(p, k)]
                count = len(rows)
                json.dump({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in rows]}, fh)
        tmp.replace(path)
    except OSError as exc:  # no such directory, no permission, a directory at `path`: one line naming it
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise OutputFailure(f"{path}: cannot be written: {exc.strerror or exc}") from None
    return count
