"""Population runs (labinterp.population, labinterp.population_run) against an in-memory FHIR server: many patients
per read and per transaction, a replay that writes nothing, amendments, refusals and conflicts handled patient by
patient, PUT upserts, Group and --since selections, and a run that resumes where it stopped."""

from __future__ import annotations

import copy
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import responses

from labinterp.errors import FhirTemporaryError, FhirWritesRefused, InputError
from labinterp.fhir.client import FhirClient
from labinterp.fhir.retry import RetryPolicy
from labinterp.population import ChunkOptions, Selection, patient_of, run_chunk, select_patients
from labinterp.population_run import Checkpoint, run_population
from scripts.bench import synthetic
from tests.conftest import SITE
from tests.fakefhir import BASE, FakeFhir

NOW = datetime(2026, 1, 20, 12, tzinfo=UTC)
SERIES = "urn:labinterp:series"


@pytest.fixture(scope="module")
def k() -> Any:
    from labinterp.knowledge import load_knowledge

    return load_knowledge(SITE)


@pytest.fixture
def server() -> Any:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake = FakeFhir(rsps)
        fake.load([e["resource"] for e in synthetic(40, 11)["entry"]])
        yield fake


def client() -> FhirClient:
    return FhirClient(BASE, retry=RetryPolicy(attempts=1, base_delay=0))


ALL = Selection(all=True)


def run(k: Any, selection: Selection = ALL, tmp: Path | None = None, **opts: Any) -> Any:
    chunk = opts.pop("chunk", 100)
    checkpoint = Checkpoint(tmp / "run.sqlite3") if tmp else None
    return run_population(client, selection, k, NOW, ChunkOptions(**opts), chunk_size=chunk, workers=1, checkpoint=checkpoint)


def series_counts(fake: FakeFhir) -> Counter[str]:
    """Resources per series identifier: each must be exactly 1."""
    return Counter(
        i["value"]
        for t in ("DiagnosticReport", "RiskAssessment", "Observation")
        for r in fake.of_type(t)
        for i in r.get("identifier", [])
        if i.get("system") == SERIES
    )


def test_a_full_run_writes_every_report_once_in_few_requests(server: FakeFhir, k: Any) -> None:
    summary = run(k, transaction_size=20)
    assert summary.outcome.patients == 40 and not summary.outcome.failed
    counts = series_counts(server)
    assert counts and set(counts.values()) == {1}
    assert summary.outcome.created == sum(counts.values())
    # listing (count + one page), the Device looked for and written once, one batch read, two transactions
    assert summary.requests == 7 and summary.requests / 40 <= 0.18
    assert server.transactions == 3
    assert len(server.of_type("Device")) == 1  # written once, referenced by every Provenance
    assert len(server.of_type("Provenance")) == 40


def test_a_replay_reads_and_writes_nothing(server: FakeFhir, k: Any) -> None:
    run(k)
    before, transactions = copy.deepcopy(server.store), server.transactions
    summary = run(k)
    assert summary.outcome.created == summary.outcome.amended == 0 and summary.outcome.unchanged > 0
    assert server.store == before and server.transactions == transactions
    assert summary.requests == 4  # count, listing page, the Device found, one batch read: 0.1 for 40 patients


def test_a_changed_result_amends_only_that_patients_reports(server: FakeFhir, k: Any) -> None:
    run(k)
    mg = next(r for r in server.of_type("Observation") if r["subject"]["reference"] == "Patient/s3" and "lab" in r["id"])
    mg["valueQuantity"]["value"] = round(mg["valueQuantity"]["value"] + 0.5, 2)
    mg["meta"]["versionId"] = "2"
    summary = run(k)
    assert summary.outcome.amended >= 1 and summary.outcome.created == 0
    amended = [r for t in ("DiagnosticReport", "Observation") for r in server.of_type(t) if r.get("status") == "amended"]
    assert amended and {r["subject"]["reference"] for r in amended} == {"Patient/s3"}
    assert set(series_counts(server).values()) == {1}


def test_a_refused_transaction_is_written_patient_by_patient(server: FakeFhir, k: Any) -> None:
    server.refuse = [422, 422]  # the 20-patient transaction, then the first patient alone
    summary = run(k, transaction_size=20)
    failed = [pid for pid, _ in summary.outcome.failed]
    assert len(failed) == 1 and "refused" in summary.outcome.failed[0][1]
    written = {patient_of(r["subject"]["reference"]) for r in server.of_type("DiagnosticReport")}
    assert len(written) == 39 and failed[0] not in written
    assert set(series_counts(server).values()) == {1}


def test_a_version_conflict_reads_the_patient_again(server: FakeFhir, k: Any) -> None:
    server.refuse = [412, 412]  # someone wrote meanwhile: the chunk's transaction, then the first patient's
    summary = run(k, transaction_size=40)
    assert not summary.outcome.failed
    assert set(series_counts(server).values()) == {1}
    assert len({patient_of(r["subject"]["reference"]) for r in server.of_type("DiagnosticReport")}) == 40


def test_put_mode_upserts_at_deterministic_ids_and_replays_nothing(server: FakeFhir, k: Any) -> None:
    run(k, write="put")
    reports = server.of_type("DiagnosticReport")
    assert reports and all(r["id"].startswith("labinterp-") for r in reports)
    assert all(d["id"].startswith("labinterp-") for d in server.of_type("Device"))
    again = run(k, write="put")
    assert again.outcome.created == again.outcome.amended == 0
    conditional = run(k)  # a conditional run after a put run finds the same series: nothing new
    assert conditional.outcome.created == 0 and set(series_counts(server).values()) == {1}
    assert len(server.of_type("Device")) == 1


@pytest.mark.parametrize("mode", ["put", "conditional"])
def test_a_run_on_a_server_refusing_client_ids_stops_saying_why(server: FakeFhir, k: Any, tmp_path: Path, mode: str) -> None:
    """Many servers refuse client-assigned ids, which labinterp's Provenance (at deterministic ids, in either mode)
    and PUT-mode reports need. A run there must not name every patient of the population as failed, two requests
    each: once a whole transaction's patients are each refused on their own, the run stops (resumable), naming the
    server's message id and the likely cause."""
    run(k, transaction_size=40)  # labinterp's Device exists (the common case: conditional runs came first)
    server.load([e["resource"] for e in synthetic(30, 12, "new")["entry"]])  # new patients: series to create
    server.client_ids = False
    before = len(server.requests)
    with pytest.raises(FhirWritesRefused) as err:
        run(k, ALL, tmp_path, write=mode, transaction_size=10)
    said = str(err.value)
    assert "client-assigned ids" in said and "HAPI-0959" in said and said.count("POST") == 1
    assert len(server.requests) - before < 40  # stopped at the first refused transaction, not a request per patient
    assert not [r for r in server.of_type("DiagnosticReport") if r["subject"]["reference"].startswith("Patient/new")]
    assert (tmp_path / "run.sqlite3").exists()  # kept: the same command resumes once the server takes the writes
    server.client_ids = True
    summary = run(k, ALL, tmp_path, write=mode, transaction_size=10)
    assert summary.resumed and not summary.outcome.failed and set(series_counts(server).values()) == {1}


def test_a_resumed_run_gets_past_a_transaction_refused_again_naming_its_patients(
    server: FakeFhir, k: Any, tmp_path: Path
) -> None:
    """Someone who can write to the server could plant data whose reports it refuses for every patient of one
    transaction. That stops the run once; the same command then names those patients as failed should the server
    refuse them again, and writes everyone else: a stop never blocks a run for good."""
    server.refuse = [422] * 4  # the first 3-patient transaction, then each of its patients alone
    with pytest.raises(FhirWritesRefused) as err:
        run(k, ALL, tmp_path, transaction_size=3)
    stopped = set(err.value.patients)
    assert len(stopped) == 3
    server.refuse = [422] * 4  # refused again, the same way
    summary = run(k, ALL, tmp_path, transaction_size=3)
    assert summary.resumed and {pid for pid, _ in summary.outcome.failed} == stopped
    written = {patient_of(r["subject"]["reference"]) for r in server.of_type("DiagnosticReport")}
    assert len(written) == 40 - 3 and not written & stopped
    assert not (tmp_path / "run.sqlite3").exists()  # the run completed


@pytest.mark.parametrize(("refusals", "size", "failed"), [([422, 422], 20, 1), ([422, 422, 422], 2, 2)])
def test_patients_refused_for_their_own_reasons_are_named_and_the_run_goes_on(
    server: FakeFhir, k: Any, refusals: list[int], size: int, failed: int
) -> None:
    """One refused patient, or a small transaction whose few patients are all refused (below SYSTEMIC_REFUSAL), is
    named, in PUT mode as in conditional: only a whole transaction of several patients refused stops a run."""
    server.refuse = refusals  # the transaction, then its patients alone
    summary = run(k, write="put", transaction_size=size)
    assert len(summary.outcome.failed) == failed and all("refused" in why for _, why in summary.outcome.failed)
    assert summary.outcome.created > 0


def test_a_put_run_after_a_conditional_one_reuses_its_device(server: FakeFhir, k: Any) -> None:
    """A second Device beside the conditionally created one would make every later conditional create of it
    ambiguous (HAPI answers 412): a PUT-mode run finds the Device by its identifier and references it."""
    run(k, transaction_size=20)
    (dev,) = server.of_type("Device")
    server.load([e["resource"] for e in synthetic(5, 12, "extra")["entry"]])  # new patients: reports to create
    summary = run(k, write="put")
    assert summary.outcome.created > 0 and server.of_type("Device") == [dev]
    assert run(k).outcome.created == 0  # and conditional creates still work


def test_a_group_selects_its_active_members_and_names_what_is_missing(server: FakeFhir, k: Any) -> None:
    members = [{"entity": {"reference": f"Patient/{p}"}} for p in ("s1", "s2", "gone")]
    members.append({"entity": {"reference": "Patient/s5"}, "inactive": True})
    members.append({"entity": {"reference": "Patient/bad id"}})
    server.load([{"resourceType": "Group", "id": "g1", "type": "person", "actual": True, "member": members}])
    summary = run(k, Selection(group="g1"))
    assert summary.outcome.patients == 3
    assert summary.outcome.failed == [("gone", "the server returned no such Patient")]
    assert {patient_of(r["subject"]["reference"]) for r in server.of_type("DiagnosticReport")} == {"s1", "s2"}
    assert summary.skipped and "member[4]" in summary.skipped[0][0]


def test_since_selects_patients_with_something_changed(server: FakeFhir, k: Any) -> None:
    for r in server.store.values():
        r["meta"]["lastUpdated"] = "2025-06-01T00:00:00Z"
    obs = next(r for r in server.of_type("Observation") if r["subject"]["reference"] == "Patient/s7")
    obs["meta"]["lastUpdated"] = "2026-01-10T00:00:00Z"
    selected = select_patients(client(), Selection(all=True, since="2026-01-01T00:00:00Z"))
    assert list(selected.ids) == ["s7"]


def test_a_selection_is_all_or_a_group(k: Any) -> None:
    with pytest.raises(InputError):
        select_patients(client(), Selection())
    with pytest.raises(InputError):
        select_patients(client(), Selection(all=True, group="g"))


def test_an_interrupted_run_resumes_where_it_stopped(server: FakeFhir, k: Any, tmp_path: Path) -> None:
    calls = {"n": 0}
    real = FhirClient.fetch_patients

    def failing(self: FhirClient, *args: Any, **kw: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise FhirTemporaryError("POST", BASE, 503, "the server is down")
        return real(self, *args, **kw)

    FhirClient.fetch_patients = failing  # type: ignore[method-assign]
    try:
        with pytest.raises(FhirTemporaryError):
            run(k, tmp=tmp_path, chunk=10)
    finally:
        FhirClient.fetch_patients = real  # type: ignore[method-assign]
    checkpoint = Checkpoint(tmp_path / "run.sqlite3")
    assert len(checkpoint.done()) == 20
    server.requests.clear()
    later = run_population(
        client,
        Selection(all=True),
        k,
        datetime(2027, 1, 1, tzinfo=UTC),
        ChunkOptions(),
        chunk_size=10,
        workers=1,
        checkpoint=checkpoint,
    )
    assert later.resumed and later.now == NOW  # the run's own evaluation time, not the new one
    batches = [u for m, u in server.requests if m == "POST"]
    assert len(batches) == 2 + 2  # two chunks left: a batch read and a transaction each (the Device is found)
    assert later.outcome.patients == 40 and set(series_counts(server).values()) == {1}
    assert not checkpoint.path.exists()  # removed once the run is complete


def test_run_chunk_names_a_patient_the_server_does_not_have(server: FakeFhir, k: Any) -> None:
    outcome = run_chunk(client(), ["s1", "nobody"], k, NOW)
    assert outcome.patients == 2 and outcome.failed == [("nobody", "the server returned no such Patient")]
    assert outcome.requests == 2  # one batch read, one transaction


def test_patient_of_reads_only_patient_references() -> None:
    assert patient_of("Patient/a1") == "a1"
    assert patient_of("http://x/fhir/Patient/a1/_history/2") == "a1"
    assert patient_of("Group/a1") is None and patient_of("Patient/bad id") is None and patient_of(None) is None


def _plant_devices(server: FakeFhir, k: Any, stamped: dict[str, str]) -> None:
    """Devices with labinterp's identifier, each with the time the server stamped it."""
    from labinterp.compose import device

    ident = device(k).resource["identifier"][0]
    server.load([{"resourceType": "Device", "id": rid, "identifier": [dict(ident)]} for rid in stamped])
    for rid, when in stamped.items():
        server.store[("Device", rid)]["meta"]["lastUpdated"] = when


def _device_agents(server: FakeFhir) -> set[str]:
    return {a["who"]["reference"] for p in server.of_type("Provenance") for a in p["agent"] if "Device/" in a["who"]["reference"]}


def test_a_planted_second_device_blocks_no_patients_report(server: FakeFhir, k: Any) -> None:
    """Someone who can write to the server adds a Device with labinterp's identifier beside another: a conditional
    create of the Device would now match two and be refused (412), and with it every report of the transaction.
    Both paths read the Device with the patient's data (no extra request) and reference one of them, always the
    same one (the first the server stamped), instead of creating it."""
    from labinterp.pipeline import interpret_patient

    _plant_devices(server, k, {"zz-old": "2025-03-01T00:00:00Z", "a-new": "2026-01-01T00:00:00Z"})
    patients = sorted(i for (t, i) in server.store if t == "Patient")
    live = interpret_patient(client(), patients[0], k, NOW)
    # the first transaction's conditional create of the Device matched two (412): read again with the Device
    assert live.requests == 4 and live.plan.created and server.transactions == 1
    assert run(k, transaction_size=20).outcome.failed == []
    assert _device_agents(server) == {"Device/zz-old"} and len(server.of_type("Device")) == 2
    assert run(k).outcome.created == 0  # a replay finds everything, Device included


def test_a_device_planted_after_labinterps_own_is_never_referenced(server: FakeFhir, k: Any) -> None:
    """labinterp's own Device was stamped first; one planted later with an id that sorts first is never chosen."""
    from labinterp.pipeline import interpret_patient

    run(k, transaction_size=20)
    ((own,),) = [[d["id"] for d in server.of_type("Device")]]
    server.store[("Device", own)]["meta"]["lastUpdated"] = "2026-01-01T00:00:00Z"
    _plant_devices(server, k, {"0-planted": "2026-01-02T00:00:00Z"})
    server.load([e["resource"] for e in synthetic(3, 12, "extra")["entry"]])  # new patients: reports to create
    extra = sorted(i for (t, i) in server.store if t == "Patient" and i.startswith("extra"))
    interpret_patient(client(), extra[0], k, NOW)
    assert run(k, transaction_size=20).outcome.failed == []
    assert _device_agents(server) == {f"Device/{own}"}
