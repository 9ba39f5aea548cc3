"""fetch → extract → interpret → compose → (write): the only module that joins the layers.

For files: `interpret_bundle` takes a parsed Bundle and returns the transaction Bundle to write.

Bad input (SPEC section 7): input that is not a Bundle raises. A resource that cannot be used is, by
default, left out, listed in the report's "Not used" section and returned as a Problem (the CLI prints a
warning line, the service an OperationOutcome of warnings); the patient's other reports are written.
`strict=True` makes any such Problem an error, raised before anything is returned (validating a feed).
A patient's results are all or nothing either way: composed whole, or not at all."""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from labinterp.compose import Context, Written, compose_patient, device, transaction
from labinterp.compose.ids import series_uuid
from labinterp.compose.qc import KIND as QC_KIND
from labinterp.compose.qc import compose_batch
from labinterp.errors import FhirConflict, FhirError, FhirNotFound, ResourceError
from labinterp.extract import extract_patient, split_bundle
from labinterp.extract.batch import extract_batch, split_batches
from labinterp.extract.facts import PatientRecord, Problem
from labinterp.fhir.client import FhirClient
from labinterp.fhir.search import is_fhir_id, reference
from labinterp.knowledge import Knowledge
from labinterp.render.report import render_reports
from labinterp.rules import Findings, interpret
from labinterp.rules.qc import BatchFinding, interpret_batch
from labinterp.validate import validate_bundle
from labinterp.writeback import Plan, device_on_server, plan_writeback

log = logging.getLogger("labinterp.pipeline")
T = TypeVar("T")


@dataclass
class PatientResult:
    findings: Findings
    written: list[Written]


@dataclass
class BatchResult:
    finding: BatchFinding
    written: list[Written]


@dataclass
class RunResult:
    bundle: dict[str, Any]
    patients: list[PatientResult]
    problems: list[Problem] = field(default_factory=list)  # everything left out: the Bundle's, then each patient's
    batches: list[BatchResult] = field(default_factory=list)  # formulation batches (SPEC section 5)


def raise_first(problems: list[Problem]) -> None:
    """Strict mode: the first problem as the error, with how many more there were."""
    if problems:
        first = problems[0]
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise ResourceError(first.where, first.what + more)


def records_of(data: Any, k: Knowledge) -> Iterator[PatientRecord]:
    """What labinterp reads about each patient of a Bundle (the pipeline's extract step, lenient: broken
    resources are listed in each record's problems): the one way the dashboard and the cohort analytics read
    FHIR data too."""
    parsed = split_bundle(data)
    for pinput in parsed.patients:
        yield extract_patient(pinput, parsed.medications, k)


@contextmanager
def batch_gc(young: int = 20_000) -> Iterator[None]:
    """For a single-threaded batch run (a CLI run over a file, a population chunk in a worker process, the
    benchmark): everything alive on entry (modules, the knowledge, a parsed input Bundle) is moved out of the
    cyclic garbage collector's scans (gc.freeze), and young collections run every `young` allocations instead of
    every 700; restored on exit. The collector's rescans of the parsed input cost a third of a large Bundle's
    interpretation; composing creates almost no reference cycles, so nothing piles up meanwhile. Process-wide
    settings: not for a threaded server's request path."""
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(young, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def _has_batch_data(data: dict[str, Any]) -> bool:
    """Whether a (readable) Bundle holds anything of a formulation batch: a Substance, or a result whose focus
    names one. A patients' Bundle (a population chunk) is not split a second time."""
    for entry in data.get("entry") or ():
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            continue
        if resource.get("resourceType") == "Substance" or ("focus" in resource and "Substance/" in str(resource["focus"])):
            return True
    return False


def interpret_bundle(
    data: Any,
    k: Knowledge,
    now: datetime,
    *,
    strict: bool = False,
    equation: str | None = None,
    validate: bool = True,
    with_provenance: bool = True,
    render: bool = True,
    narrative: bool = True,
) -> RunResult:
    """Interpret every patient of an input Bundle. A resource that cannot be used is left out, listed in the
    report's "Not used" section and in `RunResult.problems`; in strict mode it is an error naming it.

    `render` adds each report's HTML page and PDF (presentedForm); `narrative=False` composes without any rendering:
    the DiagnosticReports get neither Resource.text nor presentedForm, whatever `render` says (the other resources'
    short narratives are part of composing them). No identifier depends on what is rendered, so a caller can plan
    its write first and then render only what it will write, with labinterp.render.report.render_reports(written,
    forms=...) on any subset of the composed Written objects (each carries its view)."""
    parsed = split_bundle(data)
    records = [extract_patient(pinput, parsed.medications, k, now) for pinput in parsed.patients]
    batch_inputs, batch_problems = split_batches(data) if _has_batch_data(data) else ([], [])
    batch_records = [extract_batch(binput, k) for binput in batch_inputs]
    batch_findings = [interpret_batch(record, k, now) for record in batch_records]  # problems found computing too
    problems = list(parsed.problems) + [p for record in records for p in record.problems] + list(batch_problems)
    problems += [p for record in batch_records for p in record.problems]
    if strict:  # every patient's and batch's problems counted, before anything is composed
        raise_first(problems)
    dev = device(k)
    results: list[PatientResult] = []
    written: list[Written] = [dev]
    batches: list[BatchResult] = []
    for finding in batch_findings:
        out = compose_batch(finding, k, now, dev, with_provenance)
        if narrative:
            render_reports(out, forms=render)
        batches.append(BatchResult(finding, out))
        written += out
    for record in records:
        findings = interpret(record, k, now, equation)
        out = compose_patient(findings, k, now, dev, with_provenance)
        if narrative:  # every report's narrative from its view; with render, its HTML page and PDF as presentedForm too
            render_reports(out, forms=render)
        results.append(PatientResult(findings, out))
        written += out
        log.debug("patient interpreted: %d resources composed, %d problems", len(out), len(record.problems))
    if len(written) == 1:
        written = []  # nothing to write: no Device either
    bundle = transaction(written)
    if validate:
        validate_bundle(bundle)
    return RunResult(bundle, results, problems, batches)


@dataclass
class LiveResult:
    patient_id: str
    plan: Plan
    response: dict[str, Any] | None  # the server's transaction-response; None in a dry run or with nothing to write
    findings: Findings | None
    requests: int  # HTTP requests this patient took
    seconds_waiting: float  # time spent waiting on the FHIR server
    problems: list[Problem] = field(default_factory=list)  # resources left out (never in strict mode: that raises)


def interpret_patient(
    client: FhirClient,
    patient_id: str,
    k: Knowledge,
    now: datetime,
    *,
    dry_run: bool = False,
    strict: bool = False,
    equation: str | None = None,
    render: bool = True,
) -> LiveResult:
    """Read one patient (one batch request), interpret, and write the results (one transaction), or, in a
    dry run, return the transaction that would be sent. Replays write nothing; changed inputs amend.

    A version conflict on write (someone amended the same report meanwhile, or a retried transaction had
    in fact been applied) makes it read and plan once more: the second plan sees what is now stored."""
    before = client.stats.snapshot()
    read_device = False  # the first plan writes the Device by conditional create, as it always did

    def plan_once() -> tuple[tuple[Findings, list[Problem]], Plan]:
        nonlocal read_device
        findings, plan, problems = _plan(client, patient_id, k, now, strict, equation, render, read_device)
        # a plan after a conflict reads labinterp's Device with the patient's data and references it: the conflict
        # may be that conditional create matching two Devices (one planted beside labinterp's own, say: HTTP 412)
        read_device = True
        return (findings, problems), plan

    (findings, problems), plan, response = _plan_and_write(client, plan_once, dry_run, "a patient")
    after = client.stats.snapshot()
    log.info(
        "patient done: %d created, %d amended, %d unchanged, %d requests, %d resources left out",
        len(plan.created),
        len(plan.amended),
        len(plan.unchanged),
        after[0] - before[0],
        len(problems),
    )
    return LiveResult(patient_id, plan, response, findings, after[0] - before[0], after[2] - before[2], problems)


def _plan_and_write(
    client: FhirClient, plan_once: Callable[[], tuple[T, Plan]], dry_run: bool, what: str
) -> tuple[T, Plan, dict[str, Any] | None]:
    """Read and plan (`plan_once`), then write the plan in one transaction (nothing in a dry run or with nothing to
    write). A version conflict on write (someone amended the same report meanwhile, or a retried transaction had in
    fact been applied) makes it read and plan once more: the second plan sees what is now stored."""
    for attempt in (1, 2):
        extra, plan = plan_once()
        if not plan.writes or dry_run:
            return extra, plan, None
        try:
            return extra, plan, client.transaction(plan.bundle)
        except FhirConflict:
            if attempt == 2:
                raise
            log.info("version conflict on %s's write: reading and planning again", what)
    raise AssertionError("unreachable")  # pragma: no cover


def _plan(
    client: FhirClient,
    patient_id: str,
    k: Knowledge,
    now: datetime,
    strict: bool,
    equation: str | None,
    render: bool,
    read_device: bool = False,
) -> tuple[Findings, Plan, list[Problem]]:
    """Read one patient and plan its write. With `read_device`, labinterp's Device is read in the same batch and,
    when the server has it, referenced rather than created again (labinterp.writeback.device_on_server)."""
    dev = device(k)
    ident = dev.resource["identifier"][0]
    wanted = (ident["system"], ident["value"]) if read_device else None
    data = client.fetch_patient(patient_id, k.output.systems["series_identifier"], wanted)
    device_id = device_on_server(data.devices, ident)
    if data.unreadable and strict:  # the server's data, not the caller's request, is at fault: 502, not 422
        raise FhirError(
            "POST",
            client.base_url,
            None,
            f"the server returned a search result that is not a FHIR resource ({data.unreadable[0]})",
        )
    # validated once, below: the plan is what is sent
    run = interpret_bundle(
        data.bundle, k, now, strict=strict, equation=equation, validate=False, with_provenance=False, render=render
    )
    server_problems = [Problem(where, "has no resourceType: not a FHIR resource, left out") for where in data.unreadable]
    if not run.patients:
        raise FhirError("GET", client.url(f"Patient/{patient_id}"), None, "the server returned no Patient")
    result = run.patients[0]
    ctx = Context(k, now, result.findings.record.patient.source)
    plan = plan_writeback(result.written, data.written, ctx, dev, device_id=device_id)
    validate_bundle(plan.bundle)
    return result.findings, plan, server_problems + run.problems


def batch_series(substance_id: str) -> str:
    """The series identifier value of a batch's QC report (what `Context.new` stamps on it)."""
    return f"{QC_KIND}:{series_uuid(QC_KIND, reference('Substance', substance_id))}"


@dataclass
class BatchLiveResult:
    batch_id: str
    finding: BatchFinding | None  # None when the server holds no usable result for the batch
    plan: Plan
    response: dict[str, Any] | None
    requests: int
    problems: list[Problem] = field(default_factory=list)


def interpret_batch_live(
    client: FhirClient,
    substance_id: str,
    k: Knowledge,
    now: datetime,
    *,
    dry_run: bool = False,
    strict: bool = False,
    render: bool = True,
) -> BatchLiveResult:
    """Read one formulation batch (one batch request), interpret it, and write its QC report (one transaction), or,
    in a dry run, return the transaction that would be sent. A replay writes nothing; changed inputs amend."""
    before = client.stats.snapshot()
    series_sys = k.output.systems["series_identifier"]

    def plan_once() -> tuple[tuple[BatchFinding | None, list[Problem]], Plan]:
        data = client.fetch_batches([substance_id], series_sys, [batch_series(substance_id)])
        resources = [e["resource"] for e in data.bundle.get("entry", [])]
        if not any(r.get("resourceType") == "Substance" and r.get("id") == substance_id for r in resources):
            raise FhirNotFound("GET", client.url(f"Substance/{substance_id}"), 404, "the server has no such batch (Substance)")
        run = interpret_bundle(data.bundle, k, now, strict=strict, validate=False, with_provenance=False, render=render)
        result = next((b for b in run.batches if b.finding.record.batch.id == substance_id), None)
        plan = Plan({"resourceType": "Bundle", "type": "transaction"})  # nothing to write without a usable result
        if result is not None:
            plan = plan_writeback(result.written, data.written, Context(k, now, result.finding.record.batch), device(k))
        if plan.writes:
            validate_bundle(plan.bundle)
        return (result.finding if result is not None else None, run.problems), plan

    (finding, problems), plan, response = _plan_and_write(client, plan_once, dry_run, "a batch")
    after = client.stats.snapshot()
    return BatchLiveResult(substance_id, finding, plan, response, after[0] - before[0], problems)


def recent_batches(client: FhirClient, k: Knowledge, now: datetime, count: int = 20) -> list[BatchFinding]:
    """The most recently updated formulation batches of the server, interpreted now (for the dashboard's batch
    comparison): one search for the Substances, one batch request for their samples and results."""
    listing = client.search_page("Substance", [("_sort", "-_lastUpdated"), ("_count", str(count)), ("_elements", "id")])
    ids = [r["id"] for r in listing if isinstance(r.get("id"), str) and is_fhir_id(r["id"])][:count]
    if not ids:
        return []
    data = client.fetch_batches(ids, k.output.systems["series_identifier"], [batch_series(i) for i in ids])
    run = interpret_bundle(data.bundle, k, now, validate=False, with_provenance=False, narrative=False)
    order = {rid: n for n, rid in enumerate(ids)}
    return sorted((b.finding for b in run.batches), key=lambda f: order.get(f.record.batch.id, len(order)))
