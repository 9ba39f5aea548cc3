"""Population runs: many patients per read, many patients per transaction.

A run selects patients (`Selection`: every Patient of the server, a Group's members, or those with something
changed since an instant), reads them in chunks (one batch request of searches across a chunk's patients, plus one
request per extra page), interprets each patient as the per-patient path does, plans each patient's write against
what labinterp wrote before (a replay writes nothing), and writes the chunk's plans as transactions of
`transaction_size` patients. A transaction the server refuses is retried patient by patient, so one patient's
conflict or bad resource never blocks the others.

`run_chunk` is what a queue's chunk job calls; `run_population` is the CLI's loop with a checkpoint (resume) and a
progress bar."""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from labinterp.compose import Context, Written, compose_patient, device, entry
from labinterp.compose.common import deterministic_id
from labinterp.errors import (
    FhirAuthError,
    FhirConflict,
    FhirError,
    FhirTemporaryError,
    FhirWritesRefused,
    InputError,
    LabinterpError,
    MappingsError,
    ResourceError,
    is_temporary,
)
from labinterp.extract import extract_patient, split_bundle
from labinterp.extract.facts import PatientRecord
from labinterp.extract.fhirtime import parse_fhir_time
from labinterp.fhir.client import FhirClient
from labinterp.fhir.search import checked_id, is_fhir_id, query
from labinterp.knowledge import Knowledge
from labinterp.render.report import render_reports
from labinterp.rules import interpret
from labinterp.validate import validate_bundle
from labinterp.writeback import Plan, WriteMode, device_on_server, plan_writeback, put_entry, rewrite_references

log = logging.getLogger("labinterp.population")
PAGE_SIZE = 1000  # results per search page when reading a chunk (a server may cap it lower: `next` links are followed)


@dataclass(frozen=True)
class Selection:
    """Which patients a run takes: `all` of the server's, or a `group`'s members; `since` (a FHIR instant) narrows
    either to patients with something labinterp reads changed at or after it."""

    all: bool = False
    group: str | None = None
    since: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Selection:
        data = json.loads(text)
        return cls(all=bool(data.get("all")), group=data.get("group"), since=data.get("since"))


@dataclass
class ChunkOutcome:
    """What one chunk did: counts of patients and reports, the patients that failed (id, error: shown to the
    operator who started the run, never logged), HTTP requests made and resources left out."""

    patients: int = 0
    created: int = 0
    amended: int = 0
    unchanged: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    requests: int = 0
    transactions: int = 0
    left_out: int = 0

    def add(self, other: ChunkOutcome) -> None:
        for name in ("patients", "created", "amended", "unchanged", "requests", "transactions", "left_out"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.failed += other.failed

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "failed": [list(f) for f in self.failed]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChunkOutcome:
        out = cls(**{k: v for k, v in data.items() if k != "failed"})
        out.failed = [(str(a), str(b)) for a, b in data.get("failed", [])]
        return out


def chunked(ids: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for pid in ids:
        chunk.append(pid)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# --- selecting patients ------------------------------------------------------------------------

LISTING_PAGE = 1000  # Patient ids per listing page
SYSTEMIC_REFUSAL = 3  # a transaction of at least this many patients, each refused on its own: the server's cause
RECENT_PAGES = 8  # listing pages whose ids a listing remembers, to drop repeats
SINCE_TYPES = ("Patient", "Observation", "MedicationRequest", "MedicationStatement", "MedicationAdministration")


def _member_now(period: Any, now: datetime) -> bool:
    """Whether a Group member's `period` includes `now`, each bound compared at its own precision (a member "until
    2025-12-31" is one all that day). ResourceError for a period that cannot be read."""
    if period is None:
        return True
    if not isinstance(period, dict):
        raise ResourceError("period", "expected a Period object")
    for bound, ended in (("start", False), ("end", True)):
        if period.get(bound) is None:
            continue
        t = parse_fhir_time(period[bound], f"period.{bound}")
        mine, theirs = _at_precision(t.start, t.precision), _at_precision(now, t.precision)
        if (mine < theirs) if ended else (mine > theirs):
            return False
    return True


def group_members(group: Any, group_id: str, now: datetime | None = None) -> tuple[list[str], list[tuple[str, str]]]:
    """The current Patient members of a Group resource (not inactive, and `now` within the member's period), and the
    members that cannot be read, each (where, why): one odd member is named and the others are interpreted. Not a
    Group at all is the server's fault (FhirError: 502)."""
    now = now or datetime.now(UTC)
    if not isinstance(group, dict) or group.get("resourceType") != "Group":
        raise FhirError("GET", "Group", None, "the server answered the Group read with something that is not a Group")
    member_list = group.get("member")
    if member_list is not None and not isinstance(member_list, list):
        return [], [(f"Group/{group_id} member", "expected a list of members")]
    members: list[str] = []
    bad: list[tuple[str, str]] = []
    for i, m in enumerate(member_list or []):
        where = f"Group/{group_id} member[{i}]"
        entity = m.get("entity") if isinstance(m, dict) else None
        ref = entity.get("reference") if isinstance(entity, dict) else None
        if not isinstance(m, dict):
            bad.append((where, "expected a member object"))
        elif not isinstance(entity, dict):
            bad.append((f"{where}.entity", 'expected a Reference object, e.g. {"reference": "Patient/id"}'))
        elif not isinstance(ref, str):
            bad.append((f"{where}.entity.reference", 'expected a reference text, e.g. "Patient/id"'))
        elif m.get("inactive") is True:
            continue  # an inactive member: not interpreted
        elif not _period_ok(m, where, now, bad):
            continue  # a member whose period has ended (or not begun): not interpreted; an unreadable one is named
        elif "://" in ref and patient_of(ref) is not None:  # a Patient named by URL: maybe another server's, never read
            bad.append((f"{where}.entity.reference", "an absolute URL: give Patient/id, a Patient of this server"))
        elif not ref.startswith("Patient/"):
            continue  # a member that is not a Patient: not interpreted
        elif not is_fhir_id(ref.split("/", 1)[1]):
            bad.append((f"{where}.entity.reference", "is not Patient/ followed by a FHIR resource id"))
        else:
            members.append(ref.split("/", 1)[1])
    return list(dict.fromkeys(members)), bad


def _at_precision(t: datetime, precision: str) -> tuple[float, ...]:
    """An instant as a key compared at a FHIR date's precision: (year,), (year, month), (year, month, day), or the
    instant itself for a dateTime with a time."""
    at = t.astimezone(UTC)
    size = {"year": 1, "month": 2, "day": 3}.get(precision)
    return (at.year, at.month, at.day)[:size] if size else (at.timestamp(),)


def _period_ok(member: dict[str, Any], where: str, now: datetime, bad: list[tuple[str, str]]) -> bool:
    try:
        return _member_now(member.get("period"), now)
    except ResourceError as exc:
        bad.append((f"{where}.{exc.where}", exc.what))
        return False


def patient_of(reference: Any) -> str | None:
    """The Patient id of a reference `Patient/x` (or `[base]/Patient/x`, `Patient/x/_history/2`); None otherwise."""
    if not isinstance(reference, str):
        return None
    parts = reference.split("/")
    for i in range(len(parts) - 1):
        if parts[i] == "Patient" and is_fhir_id(parts[i + 1]):
            return parts[i + 1]
    return None


def subject_patient(resource: dict[str, Any]) -> str | None:
    """The Patient id of a resource's `subject` (None when it is no Patient reference, or of another shape)."""
    subject = resource.get("subject")
    return patient_of(subject.get("reference")) if isinstance(subject, dict) else None


def changed_since(client: FhirClient, since: str) -> set[str]:
    """Patients with a Patient, Observation or medication resource last updated at or after `since`: one search per
    type, ids only (`_elements`), paged."""
    found: set[str] = set()
    for rtype in SINCE_TYPES:
        elements = "id" if rtype == "Patient" else "subject"
        params: list[tuple[str, str | int]] = [("_lastUpdated", f"ge{since}"), ("_elements", elements), ("_count", LISTING_PAGE)]
        for page in client.search_pages(rtype, params):
            for r in page:
                pid = r.get("id") if rtype == "Patient" else subject_patient(r)
                if isinstance(pid, str) and is_fhir_id(pid) and (rtype != "Patient" or r.get("resourceType") == "Patient"):
                    found.add(pid)
    return found


@dataclass
class Selected:
    """The patient ids of a selection, with the ones left out (a Group member that cannot be read, a server id that
    is not a FHIR id) and, when the server says, how many there are."""

    ids: Iterator[str]
    total: int | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)


def select_patients(client: FhirClient, selection: Selection, now: datetime | None = None) -> Selected:
    """The patients a selection names, lazily where it can be (a whole server is listed page by page). A Group's
    members are those current at `now`, the run's evaluation time (default: the wall clock)."""
    if selection.all == bool(selection.group):
        raise InputError("selection", "give either all patients or a group, not both and not neither")
    since = changed_since(client, selection.since) if selection.since else None
    if selection.group:
        gid = checked_id("Group", selection.group)
        members, bad = group_members(client.read("Group", gid), gid, now)
        chosen = [m for m in members if since is None or m in since]
        return Selected(iter(chosen), len(chosen), bad)
    if since is not None:
        return Selected(iter(sorted(since)), len(since))
    total = _count(client)
    selected = Selected(iter(()), total)
    selected.ids = _all_patients(client, selected.skipped)
    return selected


def _count(client: FhirClient) -> int | None:
    """How many Patients the server has, for the progress bar only: None when it will not say (a server without
    `_summary=count` answers 4xx: the run goes on without a total)."""
    try:
        body = client.request("GET", query("Patient", [("_summary", "count")]))[1]
    except FhirTemporaryError:
        raise
    except FhirError:
        return None
    total = body.get("total") if isinstance(body, dict) else None
    return total if isinstance(total, int) and not isinstance(total, bool) and total >= 0 else None


def _all_patients(client: FhirClient, skipped: list[tuple[str, str]]) -> Iterator[str]:
    """Every Patient id once: offset paging over a table that changes while it is read repeats ids of the pages just
    before (a patient in two chunks would be interpreted twice at once). The ids of the last RECENT_PAGES pages are
    kept, not every id, so that memory stays flat on any server; HAPI pages a stored snapshot and repeats none."""
    recent: deque[set[str]] = deque(maxlen=RECENT_PAGES)
    for page in client.search_pages("Patient", [("_elements", "id"), ("_count", LISTING_PAGE)]):
        mine: set[str] = set()
        for patient in page:
            pid = patient.get("id")
            if isinstance(pid, str) and is_fhir_id(pid) and patient.get("resourceType") == "Patient":
                if pid not in mine and not any(pid in ids for ids in recent):
                    mine.add(pid)
                    yield pid
            else:  # never put into a URL; one odd id stops nothing
                skipped.append(("Patient search", "a Patient whose id is not a FHIR id"))
        recent.append(mine)


# --- one chunk: read, plan, write --------------------------------------------------------------


@dataclass
class _Planned:
    patient: str
    plan: Plan
    created: int
    amended: int
    unchanged: int


@dataclass
class ChunkOptions:
    write: WriteMode = "conditional"
    render: bool = True
    validate: bool = True
    strict: bool = False
    equation: str | None = None
    transaction_size: int = 50
    # patients whose whole transaction, refused patient by patient, stopped this run before (FhirWritesRefused): if the
    # server refuses them again they are named as failed and the run goes on, so a resumed run always gets past them
    tolerated: frozenset[str] = frozenset()


def run_chunk(
    client: FhirClient, ids: list[str], k: Knowledge, now: datetime, options: ChunkOptions | None = None
) -> ChunkOutcome:
    """Read a chunk of patients in one batch request, interpret each, and write what changed as transactions of
    `transaction_size` patients. A transaction the server refuses (a conflict, a resource it will not take) is
    written patient by patient instead, a conflict after reading that patient again; the patients it still fails
    for are listed in the outcome. A temporary error (the server down after the client's retries) propagates: the
    chunk is redone later, and what it already wrote is then unchanged."""
    opts = options or ChunkOptions()
    before = client.stats.snapshot()[0]
    outcome = ChunkOutcome()
    planned, device_id = _plan_chunk(client, ids, k, now, opts, outcome)
    writer = _Writer(client, device(k), device_id, k, now, opts, outcome)
    for group in chunked_plans(planned, opts.transaction_size):
        writes = [p for p in group if p.plan.writes]
        if writes:
            writer.write(writes)
        for p in group:
            if p.patient not in {f[0] for f in outcome.failed}:
                outcome.created += p.created
                outcome.amended += p.amended
                outcome.unchanged += p.unchanged
    outcome.requests = client.stats.snapshot()[0] - before
    log.info(
        "chunk done: %d patients, %d created, %d amended, %d unchanged, %d failed, %d requests",
        outcome.patients,
        outcome.created,
        outcome.amended,
        outcome.unchanged,
        len(outcome.failed),
        outcome.requests,
    )
    return outcome


def run_chunk_isolated(
    client: FhirClient, ids: list[str], k: Knowledge, now: datetime, options: ChunkOptions | None = None
) -> ChunkOutcome:
    """`run_chunk`; when the chunk fails for good (anything but a temporary error: a batch answer that cannot be
    read, a search the server refuses for one patient, an unexpected error on one patient's data), each patient
    again on its own, so that one patient never fails the others (SPEC section 7). A patient that fails alone is
    named in the outcome. What the failed chunk wrote before it failed is found unchanged by the second pass (every
    write is idempotent), so it is counted as unchanged there."""
    try:
        return run_chunk(client, ids, k, now, options)
    except Exception as exc:
        if _stops_the_run(exc):
            raise
        if len(ids) == 1:
            return _failed_alone(ids[0], exc)
        log.warning("a chunk of %d patients failed (%s): each patient again on its own", len(ids), type(exc).__name__)
    total = ChunkOutcome()
    for pid in ids:
        try:
            total.add(run_chunk(client, [pid], k, now, options))
        except Exception as exc:
            if _stops_the_run(exc):
                raise
            total.add(_failed_alone(pid, exc))
    return total


def _stops_the_run(exc: Exception) -> bool:
    """Errors that are no one patient's: the server down or overloaded, or a write conflict after retries (the chunk
    is redone later), refused credentials, broken mappings: every patient would fail the same way."""
    return is_temporary(exc) or isinstance(exc, FhirAuthError | FhirWritesRefused | MappingsError)


def _failed_alone(pid: str, exc: Exception) -> ChunkOutcome:
    """A patient that failed on its own: named in the outcome with why (shown to whoever started the run, never
    logged: the log has the error's kind only)."""
    log.warning("a patient of a population run failed on its own (%s)", type(exc).__name__)
    why = str(exc) if isinstance(exc, LabinterpError) else f"unexpected internal error ({type(exc).__name__}): please report it"
    return ChunkOutcome(patients=1, failed=[(pid, why)])


def chunked_plans(planned: list[_Planned], size: int) -> Iterator[list[_Planned]]:
    for i in range(0, len(planned), size):
        yield planned[i : i + size]


def _plan_chunk(
    client: FhirClient, ids: list[str], k: Knowledge, now: datetime, opts: ChunkOptions, outcome: ChunkOutcome
) -> tuple[list[_Planned], str | None]:
    series_sys = k.output.systems["series_identifier"]
    dev = device(k)
    dev_ident = dev.resource["identifier"][0]
    data = client.fetch_patients(ids, series_sys, PAGE_SIZE, (dev_ident["system"], dev_ident["value"]))
    device_id = device_on_server(data.devices, dev_ident)
    parsed = split_bundle(data.bundle)
    written: dict[str, list[dict[str, Any]]] = {}
    for r in data.written:
        pid = subject_patient(r)
        if pid:
            written.setdefault(pid, []).append(r)
    wanted = set(ids)
    seen: set[str] = set()
    planned: list[_Planned] = []
    for pinput in parsed.patients:
        record = extract_patient(pinput, parsed.medications, k, now)
        pid = record.patient.source.reference.split("/", 1)[-1]
        if pid not in wanted or pid in seen:
            continue
        seen.add(pid)
        outcome.patients += 1
        outcome.left_out += len(record.problems)
        if opts.strict and record.problems:
            first = record.problems[0]
            outcome.failed.append((pid, f"{first.where}: {first.what}"))
            continue
        try:
            planned.append(_plan_one(record, written.get(pid, []), k, now, opts, dev, device_id))
        except LabinterpError as exc:  # this patient's results cannot be composed or validated: named, others go on
            outcome.failed.append((pid, str(exc)))
    for pid in ids:
        if pid not in seen:
            outcome.patients += 1
            outcome.failed.append((pid, "the server returned no such Patient"))
    return planned, device_id


def _plan_one(
    record: PatientRecord,
    existing: list[dict[str, Any]],
    k: Knowledge,
    now: datetime,
    opts: ChunkOptions,
    dev: Written,
    device_id: str | None,
) -> _Planned:
    findings = interpret(record, k, now, opts.equation)
    composed = compose_patient(findings, k, now, dev, with_provenance=False)
    ctx = Context(k, now, record.patient.source)
    plan = plan_writeback(
        composed,
        existing,
        ctx,
        dev,
        mode=opts.write,
        device_id=device_id,
        prepare=lambda ws: render_reports(ws, forms=opts.render),
    )
    pid = record.patient.source.reference.split("/", 1)[-1]
    return _Planned(pid, plan, len(plan.created), len(plan.amended), len(plan.unchanged))


def merge(plans: list[Plan], dev: Written, device_id: str | None) -> dict[str, Any]:
    """One transaction of several patients' plans: the Device written once (or, known, only referenced)."""
    entries: list[dict[str, Any]] = []
    device_entry: dict[str, Any] | None = None
    for plan in plans:
        for e in plan.bundle["entry"]:
            if e["resource"].get("resourceType") == "Device":
                device_entry = device_entry or e
            else:
                entries.append(e)
    if device_id:
        entries = [rewrite_references(e, {dev.full_url: f"Device/{device_id}"}) for e in entries]
    elif device_entry is not None:
        entries.insert(0, device_entry)
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


@dataclass
class _Writer:
    """Writes a chunk's plans: many patients per transaction, patient by patient when the server refuses one."""

    client: FhirClient
    dev: Written
    device_id: str | None  # the Device's id on the server, once known
    k: Knowledge
    now: datetime
    opts: ChunkOptions
    outcome: ChunkOutcome

    def send(self, plans: list[Plan], bundle: dict[str, Any] | None = None) -> None:
        """One transaction of the plans (`bundle`, when given, is that transaction already merged)."""
        bundle = bundle if bundle is not None else merge(plans, self.dev, self.device_id)
        response = self.client.transaction(bundle)
        self.outcome.transactions += 1
        self.device_id = self.device_id or _device_location(bundle, response)

    def write(self, group: list[_Planned]) -> None:
        """One transaction for the group; on a refusal (a 4xx) or a conflict, each patient on its own."""
        plans = [p.plan for p in group]
        bundle = merge(plans, self.dev, self.device_id)
        if self.opts.validate:
            validate_bundle(bundle)
        try:
            self.send(plans, bundle)
            return
        except FhirTemporaryError as exc:
            if not isinstance(exc, FhirConflict):
                raise  # the server is down or overloaded: the chunk is redone later
            log.info("version conflict in a population transaction: writing its %d patients one by one", len(group))
        except FhirError as exc:
            if exc.status is None or exc.status >= 500:
                raise
            log.warning("a population transaction was refused (%s): writing its %d patients one by one", exc.status, len(group))
        refused = [self.write_alone(p) for p in group]
        patients = [p.patient for p in group]
        if len(group) >= SYSTEMIC_REFUSAL and all(refused) and not set(patients) <= self.opts.tolerated:
            first = refused[0]
            assert first is not None
            raise FhirWritesRefused(
                first.method,
                first.url,
                first.status,
                f"all {len(group)} patients of a transaction were refused, each on its own: not one patient's doing, "
                "so the run stops (the same command resumes, and names them as failed should the server refuse them "
                "again). A server that does not accept client-assigned ids refuses labinterp's Provenance (written at "
                f"deterministic ids) and, with --write put, every report; it said: {first.detail}",
                first.issues,
                patients,
            )

    def write_alone(self, p: _Planned) -> FhirError | None:
        """One patient's plan; after a version conflict, read that patient again and plan once more. The server's
        refusal when it refused this patient's write (the patient is named as failed), else None."""
        for attempt in (1, 2):
            try:
                self.send([p.plan])
                return None
            except FhirConflict:
                if attempt == 2:
                    self.outcome.failed.append(
                        (p.patient, "version conflict on write, twice: someone else is writing this patient")
                    )
                    return None
                replanned = _replan(self.client, p.patient, self.k, self.now, self.opts)
                if replanned is None:
                    self.outcome.failed.append((p.patient, "the patient could not be read again after a version conflict"))
                    return None
                p.plan, p.created, p.amended, p.unchanged = (
                    replanned.plan,
                    replanned.created,
                    replanned.amended,
                    replanned.unchanged,
                )
                if not p.plan.writes:
                    return None
            except FhirTemporaryError:
                raise
            except FhirError as exc:
                self.outcome.failed.append((p.patient, f"the server refused the write: {exc}"))
                return exc
        return None


def _replan(client: FhirClient, pid: str, k: Knowledge, now: datetime, opts: ChunkOptions) -> _Planned | None:
    scratch = ChunkOutcome()
    planned, _ = _plan_chunk(client, [pid], k, now, opts, scratch)
    return planned[0] if planned else None


def ensure_device(client: FhirClient, k: Knowledge, mode: WriteMode = "conditional") -> str | None:
    """The Device that stands for labinterp, found or written on its own before a run's chunks (chunks written at
    once would race to create it, and a server answers the loser with a conflict). Found by its identifier first, so
    that a PUT-mode run never adds a second Device beside one a conditional create made (a second one would make
    every later conditional create of it ambiguous: HTTP 412). Returns its id on the server."""
    dev = device(k)
    ident = dev.resource["identifier"][0]
    found = client.search_page("Device", [("identifier", f"{ident['system']}|{ident['value']}"), ("_elements", "identifier")])
    existing = device_on_server(found, ident)
    if existing:
        return existing
    one = put_entry(dev, deterministic_id(dev.uuid)) if mode == "put" else entry(dev)
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [one]}
    return _device_location(bundle, client.transaction(bundle))


def _device_location(bundle: dict[str, Any], response: dict[str, Any]) -> str | None:
    """The Device's id from a transaction-response (its entry's `location`, `Device/123/_history/1`)."""
    entries = response.get("entry")
    if not isinstance(entries, list):
        return None
    for sent, got in zip(bundle["entry"], entries, strict=False):
        if sent["resource"].get("resourceType") == "Device" and isinstance(got, dict):
            location = (got.get("response") or {}).get("location")
            parts = location.split("/") if isinstance(location, str) else []
            if len(parts) >= 2 and parts[0] == "Device" and is_fhir_id(parts[1]):
                return parts[1]
    return None
