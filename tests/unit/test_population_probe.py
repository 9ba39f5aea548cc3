"""Hostile probes of population runs (labinterp.population, labinterp.population_run, labinterp.cli.population and
POST /$interpret): odd Group members, ids that try to smuggle search parameters, `next` links elsewhere or in a
cycle, odd counts, batch answers of the wrong shape, a subject mismatch, the checkpoint, and what reaches the logs.
Each test states the safe behaviour."""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import stat
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest
import responses
from click.testing import CliRunner

from labinterp.errors import FhirError, FhirLinkError, InputError, LabinterpError
from labinterp.fhir.client import FhirClient
from labinterp.fhir.retry import RetryPolicy
from labinterp.population import ChunkOptions, Selection, group_members, run_chunk, select_patients
from labinterp.population_run import Checkpoint, run_population
from scripts.bench import synthetic
from tests.conftest import SITE
from tests.fakefhir import BASE, FakeFhir

NOW = datetime(2026, 1, 20, 12, tzinfo=UTC)
SERIES = "urn:labinterp:series"
TOKEN = "tok-SECRET-0123456789abcdef"


@pytest.fixture(scope="module")
def k() -> Any:
    from labinterp.knowledge import load_knowledge

    return load_knowledge(SITE)


@pytest.fixture
def rsps() -> Any:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as r:
        yield r


class ProbeFhir(FakeFhir):
    """The fake server with its handlers looked up at each request, so a test can wrap `_get`, `_post` or `_read`
    of one instance (responses' own registry answers a URL two patterns match with the first one only once)."""

    def __init__(self, rsps: Any) -> None:
        super().__init__(responses.RequestsMock())  # registered on a mock that never starts
        pattern = re.compile(re.escape(BASE) + r".*")
        rsps.add_callback(responses.GET, pattern, callback=lambda request: self._get(request))
        rsps.add_callback(responses.POST, pattern, callback=lambda request: self._post(request))


@pytest.fixture
def server(rsps: Any) -> ProbeFhir:
    fake = ProbeFhir(rsps)
    fake.load([e["resource"] for e in synthetic(6, 11)["entry"]])
    return fake


def client(token: str | None = None) -> FhirClient:
    return FhirClient(BASE, token=token, retry=RetryPolicy(attempts=1, base_delay=0))


def run(k: Any, selection: Selection, tmp: Path | None = None, **opts: Any) -> Any:
    chunk = opts.pop("chunk", 100)
    checkpoint = Checkpoint(tmp / "run.sqlite3") if tmp else None
    return run_population(client, selection, k, NOW, ChunkOptions(**opts), chunk_size=chunk, workers=1, checkpoint=checkpoint)


def searchset(resources: list[dict[str, Any]], next_url: str | None = None, **extra: Any) -> dict[str, Any]:
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}
    if next_url:
        bundle["link"] = [{"relation": "next", "url": next_url}]
    return {**bundle, **extra}


def urls_sent(fake: FakeFhir) -> list[str]:
    return [unquote(u) for _, u in fake.requests]


# --- Group members --------------------------------------------------------------------------------------------


def member(ref: Any, **more: Any) -> dict[str, Any]:
    return {"entity": {"reference": ref}, **more}


HOSTILE_IDS = [
    "a,Patient/b",  # would split into two subjects in subject=Patient/a,Patient/b
    "a|b",
    "a&_id=b",  # would smuggle a search parameter
    "a/../b",
    "..",
    ".",
    "a b",
    "a%2Cb",
    "x" * 65,
    "a?_count=1",
    "a#b",
    "",
]


def test_a_group_never_selects_a_member_that_is_not_a_local_patient_with_a_fhir_id() -> None:
    members = [member(f"Patient/{bad}") for bad in HOSTILE_IDS]
    members += [
        member("http://evil.test/fhir/Patient/x1"),  # another host
        member("#contained"),  # a contained resource
        member("Practitioner/p1"),
        member("Group/g2"),
        member("Patient?identifier=urn:x|1"),  # a conditional reference
        member("Patient/ok1", inactive=True),
        member("Patient/ok2"),
        member("Patient/ok2"),  # a duplicate
        member("Patient/ok3"),
    ]
    ids, bad = group_members({"resourceType": "Group", "member": members}, "g1")
    assert ids == ["ok2", "ok3"]
    # every hostile Patient id, and the Patient named by a URL, is named as a member that cannot be read, by its place
    # only (never its text); other resources and contained ones are not Patients of the server: not interpreted
    assert len(bad) == len(HOSTILE_IDS) + 1
    assert bad[-1] == (f"Group/g1 member[{len(HOSTILE_IDS)}].entity.reference", bad[-1][1]) and "absolute" in bad[-1][1]
    assert all(re.fullmatch(r"Group/g1 member\[\d+\]\.entity\.reference", where) for where, _ in bad)
    assert not any(h and h in why for _, why in bad for h in HOSTILE_IDS if len(h) > 2)


@pytest.mark.parametrize("members", [{}, "Patient/a", 7, {"entity": {"reference": "Patient/a"}}])
def test_a_group_whose_member_is_not_a_list_selects_nobody_and_says_so(members: Any) -> None:
    ids, bad = group_members({"resourceType": "Group", "member": members}, "g1")
    assert ids == [] and bad == [("Group/g1 member", "expected a list of members")]


@pytest.mark.parametrize("odd", [None, 7, "Patient/a", {"entity": "Patient/a"}, {"entity": {"reference": 7}}, {}])
def test_an_odd_member_is_named_and_the_others_are_kept(odd: Any) -> None:
    ids, bad = group_members({"resourceType": "Group", "member": [odd, member("Patient/a")]}, "g1")
    assert ids == ["a"] and len(bad) == 1 and bad[0][0].startswith("Group/g1 member[0]")


def test_an_empty_group_is_a_run_of_nobody_that_writes_nothing(server: FakeFhir, k: Any, tmp_path: Path) -> None:
    server.load([{"resourceType": "Group", "id": "empty", "type": "person", "actual": True}])
    summary = run(k, Selection(group="empty"), tmp_path)
    assert summary.outcome.patients == 0 and not summary.outcome.failed
    assert not server.of_type("DiagnosticReport") and server.transactions <= 1  # at most the Device
    assert not (tmp_path / "run.sqlite3").exists()


def test_a_missing_group_stops_the_run_with_an_error_and_writes_nothing(rsps: Any, k: Any, tmp_path: Path) -> None:
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-found"}]}
    rsps.add(responses.GET, f"{BASE}/Group/nope", json=outcome, status=404)
    with pytest.raises(LabinterpError) as err:
        run(k, Selection(group="nope"), tmp_path)
    assert not isinstance(err.value, InputError) or "Group" in str(err.value)
    assert [c.request.method for c in rsps.calls] == ["GET"]  # nothing else was sent, nothing written


def test_a_group_read_answered_with_another_resource_is_an_error(rsps: Any) -> None:
    rsps.add(responses.GET, f"{BASE}/Group/g1", json={"resourceType": "Patient", "id": "g1"})
    with pytest.raises(FhirError):
        select_patients(client(), Selection(group="g1"))


@pytest.mark.parametrize("gid", ["../metadata", "a,b", "Group/x", "x" * 65, "a b", ""])
def test_a_group_id_that_is_not_a_fhir_id_reaches_no_url(rsps: Any, gid: str) -> None:
    with pytest.raises(InputError):
        select_patients(client(), Selection(group=gid))
    assert not rsps.calls


# --- ids into search URLs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", HOSTILE_IDS)
def test_a_chunk_with_an_id_that_is_not_a_fhir_id_sends_nothing(rsps: Any, k: Any, bad: str) -> None:
    with pytest.raises(InputError):
        run_chunk(client(), ["good", bad], k, NOW)
    assert not rsps.calls


def test_a_chunks_searches_keep_each_patient_one_subject(server: FakeFhir, k: Any, rsps: Any) -> None:
    run_chunk(client(), ["s1", "s2"], k, NOW, ChunkOptions(render=False))
    batch = next(json.loads(c.request.body) for c in rsps.calls if c.request.method == "POST")
    assert batch["type"] == "batch"
    for e in batch["entry"]:
        params = parse_qsl(urlsplit(e["request"]["url"]).query)
        names = [n for n, _ in params]
        assert len(names) == len(set(names))  # no parameter smuggled in twice
        for name, value in params:
            if name == "subject":
                assert value.split(",") == ["Patient/s1", "Patient/s2"]
            if name == "_id":
                assert value.split(",") == ["s1", "s2"]


def test_server_ids_that_are_not_fhir_ids_are_skipped_and_never_sent(server: FakeFhir, k: Any) -> None:
    hostile = ["a,Patient%2Fs1", "a&_id=s2", "x" * 65, "a b"]
    for hid in hostile:
        server.store[("Patient", hid)] = {"resourceType": "Patient", "id": hid, "meta": {"lastUpdated": "2026-01-01T00:00:00Z"}}
    server.store[("Patient", "notapatient")] = {"resourceType": "Observation", "id": "notapatient", "meta": {}}
    summary = run(k, Selection(all=True), render=False)
    assert summary.outcome.patients == 6 and not summary.outcome.failed
    assert len(summary.skipped) == 5 and all(w == "Patient search" for w, _ in summary.skipped)
    for url in urls_sent(server):
        assert not any(h in url for h in hostile) and "notapatient" not in url


# --- paging: next links --------------------------------------------------------------------------------------


def patients(*ids: str) -> list[dict[str, Any]]:
    return [{"resourceType": "Patient", "id": i} for i in ids]


@pytest.mark.parametrize(
    "link",
    [
        "http://evil.test/fhir/Patient?page=2",
        "https://fake.test/fhir/Patient?page=2",  # another scheme
        "http://fake.test:8080/fhir/Patient?page=2",  # another port
        "http://fake.test/other/Patient?page=2",  # another path
        "http://fake.test/fhir/../admin?page=2",
        "http://user:pw@fake.test/fhir/Patient?page=2",
        "//evil.test/fhir/Patient?page=2",
    ],
)
def test_a_listing_next_link_outside_the_base_is_not_followed_and_gets_no_token(rsps: Any, link: str) -> None:
    rsps.add(responses.GET, re.compile(re.escape(f"{BASE}/Patient?_summary")), json={"resourceType": "Bundle", "total": 3})
    rsps.add(responses.GET, re.compile(re.escape(f"{BASE}/Patient?_elements")), json=searchset(patients("a"), link))
    evil = rsps.add(responses.GET, re.compile(r"https?://evil\.test.*"), json=searchset(patients("b")))
    selected = select_patients(client(TOKEN), Selection(all=True))
    with pytest.raises(FhirLinkError):
        list(selected.ids)
    assert evil.call_count == 0 and len(rsps.calls) == 2  # the count and the first page: nothing sent elsewhere


def test_a_listing_next_link_cycle_ends(rsps: Any) -> None:
    """A server whose `next` link points back at a page already read (a cycle) must not make the run list the same
    patients for ever (the service's listing keeps every id in memory: it would grow without end)."""
    calls = {"n": 0}
    first = f"{BASE}/Patient?_elements=id&_count=1000"
    second = f"{BASE}/Patient?page=2"

    def page(request: Any) -> tuple[int, dict[str, str], str]:
        calls["n"] += 1
        if calls["n"] > 50:
            raise RuntimeError("still paging: a cycle not detected")
        if "page=2" in request.url:
            return 200, {}, json.dumps(searchset(patients("b"), first))
        return 200, {}, json.dumps(searchset(patients("a"), second))

    rsps.add(responses.GET, re.compile(re.escape(f"{BASE}/Patient?_summary")), json={"resourceType": "Bundle", "total": 2})
    rsps.add_callback(responses.GET, re.compile(re.escape(BASE) + r"/Patient\?(_elements|page).*"), callback=page)
    selected = select_patients(client(), Selection(all=True))
    try:
        ids = list(selected.ids)
    except FhirError:
        ids = None  # a cycle refused as the server's fault is as good
    assert calls["n"] <= 3
    assert ids is None or sorted(ids) == ["a", "b"]


def test_a_listing_with_overlapping_pages_puts_each_patient_in_one_chunk(rsps: Any) -> None:
    """Offset paging over a table that changes while it is read repeats ids across pages; a patient in two chunks is
    interpreted twice at once (two chunk jobs may run in parallel on two workers) and counted twice."""
    pages = {
        "1": searchset(patients("a", "b"), f"{BASE}/Patient?page=2"),
        "2": searchset(patients("b", "c"), f"{BASE}/Patient?page=3"),
        "3": searchset(patients("c", "a", "d")),
    }

    def page(request: Any) -> tuple[int, dict[str, str], str]:
        n = dict(parse_qsl(urlsplit(request.url).query)).get("page", "1")
        return 200, {}, json.dumps(pages[n])

    rsps.add(responses.GET, re.compile(re.escape(f"{BASE}/Patient?_summary")), json={"resourceType": "Bundle", "total": 4})
    rsps.add_callback(responses.GET, re.compile(re.escape(BASE) + r"/Patient\?(_elements|page).*"), callback=page)
    assert list(select_patients(client(), Selection(all=True)).ids) == ["a", "b", "c", "d"]


def test_a_since_search_next_link_elsewhere_is_not_followed(rsps: Any) -> None:
    evil = rsps.add(responses.GET, re.compile(r"http://evil\.test.*"), json=searchset([]))
    rsps.add(
        responses.GET,
        re.compile(re.escape(f"{BASE}/Patient?_lastUpdated")),
        json=searchset(patients("a"), "http://evil.test/fhir/Patient?page=2"),
    )
    with pytest.raises(FhirLinkError):
        select_patients(client(TOKEN), Selection(all=True, since="2026-01-01T00:00:00Z"))
    assert evil.call_count == 0


# --- the count for the progress bar ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "total"),
    [
        ({"resourceType": "Bundle", "total": 3}, 3),
        ({"resourceType": "Bundle", "total": -5}, None),
        ({"resourceType": "Bundle", "total": "3"}, None),
        ({"resourceType": "Bundle", "total": 2.5}, None),
        ({"resourceType": "Bundle", "total": True}, None),
        ({"resourceType": "Bundle", "total": None}, None),
        ({"resourceType": "Bundle"}, None),
        ([1, 2], None),
        ("garbage", None),
    ],
)
def test_an_odd_count_is_no_count(rsps: Any, body: Any, total: int | None) -> None:
    rsps.add(responses.GET, re.compile(re.escape(f"{BASE}/Patient?_summary")), json=body)
    rsps.add(responses.GET, re.compile(re.escape(f"{BASE}/Patient?_elements")), json=searchset(patients("a", "b", "c")))
    selected = select_patients(client(), Selection(all=True))
    assert selected.total == total and list(selected.ids) == ["a", "b", "c"]


@pytest.mark.parametrize("status", [400, 404, 422])
def test_a_server_that_refuses_summary_count_still_runs(rsps: Any, status: int) -> None:
    """The count only feeds the progress bar: a server that does not support `_summary=count` must not stop the run."""
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-supported"}]}
    rsps.add(responses.GET, re.compile(re.escape(f"{BASE}/Patient?_summary")), json=outcome, status=status)
    rsps.add(responses.GET, re.compile(re.escape(f"{BASE}/Patient?_elements")), json=searchset(patients("a", "b")))
    selected = select_patients(client(), Selection(all=True))
    assert selected.total is None and list(selected.ids) == ["a", "b"]


def test_a_huge_count_is_harmless(server: FakeFhir, k: Any) -> None:
    real = server._read
    server._read = lambda rel: {"resourceType": "Bundle", "total": 10**30} if "_summary" in rel else real(rel)  # type: ignore[method-assign]
    summary = run(k, Selection(all=True), render=False)
    assert summary.outcome.patients == 6


# --- since -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "since",
    [
        "2026-01-01T00:00:00Z&_id=victim",
        "2026-01-01T00:00:00Z&_include=*",
        "2026-01-01T00:00:00+01:00",
        "2026-01-01T00:00:00Z#frag",
        "2026-01-01T00:00:00Z/../../metadata",
    ],
)
def test_since_stays_one_value_of_one_parameter(rsps: Any, since: str) -> None:
    rsps.add(responses.GET, re.compile(re.escape(BASE) + r"/\w+\?.*"), json=searchset([]))
    select_patients(client(), Selection(all=True, since=since))
    assert len(rsps.calls) == 5
    for c in rsps.calls:
        parts = urlsplit(c.request.url)
        assert parts.hostname == "fake.test" and parts.path.count("/") == 2 and not parts.fragment
        params = parse_qsl(parts.query)
        assert [n for n, _ in params] in (["_lastUpdated", "_elements", "_count"],)
        assert dict(params)["_lastUpdated"] == f"ge{since}"


@pytest.mark.parametrize("since", ["yesterday", "2026-13-01T00:00:00Z", "2026-01-01T00:00:00Z&_id=x", "1e9", ""])
def test_the_cli_refuses_a_since_that_is_not_an_instant(since: str) -> None:
    from labinterp.cli.common import UsageFailure
    from labinterp.cli.population import PopulationArgs, selection_of

    with pytest.raises(UsageFailure) as err:
        selection_of(PopulationArgs(True, None, since, None, None, None, 1, False))
    assert since not in str(err.value) or not since


def test_since_keeps_only_patients_referenced_as_patients(rsps: Any) -> None:
    obs = [
        {"resourceType": "Observation", "subject": {"reference": "Patient/p1"}},
        {"resourceType": "Observation", "subject": {"reference": "Group/g1"}},
        {"resourceType": "Observation", "subject": {"reference": "Patient/a,Patient/b"}},
        {"resourceType": "Observation", "subject": {"reference": "#c1"}},
        {"resourceType": "Observation", "subject": "Patient/p2"},
        {"resourceType": "Observation"},
    ]
    rsps.add(responses.GET, re.compile(re.escape(f"{BASE}/Observation?")), json=searchset(obs))
    rsps.add(responses.GET, re.compile(re.escape(BASE) + r"/\w+\?.*"), json=searchset([]))
    assert list(select_patients(client(), Selection(all=True, since="2026-01-01T00:00:00Z")).ids) == ["p1"]


# --- batch answers of the wrong shape --------------------------------------------------------------------------


def batch_answer(rsps: Any, make: Any) -> None:
    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        sent = json.loads(request.body)
        return 200, {}, json.dumps(make(sent["entry"]))

    rsps.add_callback(responses.POST, BASE, callback=answer)


@pytest.mark.parametrize("delta", [-1, +1])
def test_a_batch_answer_with_fewer_or_more_entries_is_an_error_and_writes_nothing(rsps: Any, k: Any, delta: int) -> None:
    def make(entries: list[Any]) -> dict[str, Any]:
        got = [{"resource": searchset([]), "response": {"status": "200"}} for _ in range(len(entries) + delta)]
        return {"resourceType": "Bundle", "type": "batch-response", "entry": got}

    batch_answer(rsps, make)
    with pytest.raises(FhirError):
        run_chunk(client(), ["a", "b"], k, NOW)
    assert len(rsps.calls) == 1  # the read only: no transaction


@pytest.mark.parametrize("answer", [{"resourceType": "OperationOutcome"}, {"resourceType": "Bundle", "type": "searchset"}, []])
def test_a_batch_not_answered_with_a_batch_response_is_an_error(rsps: Any, k: Any, answer: Any) -> None:
    rsps.add(responses.POST, BASE, json=answer)
    with pytest.raises(FhirError):
        run_chunk(client(), ["a"], k, NOW)
    assert len(rsps.calls) == 1


def test_batch_entries_out_of_order_change_nothing(server: FakeFhir, k: Any, rsps: Any) -> None:
    """The chunk's resources are attributed by their subject, not by which search they came in: a server that
    answers the batch's entries in another order interprets the same."""
    expected = run_chunk(client(), ["s1", "s2"], k, NOW, ChunkOptions(render=False))
    reports = copy.deepcopy(server.of_type("DiagnosticReport"))
    real = server._post

    def reversed_batch(request: Any) -> tuple[int, dict[str, str], str]:
        status, headers, body = real(request)
        data = json.loads(body)
        if data.get("type") == "batch-response":
            data["entry"].reverse()
        return status, headers, json.dumps(data)

    server._post = reversed_batch  # type: ignore[method-assign]
    again = run_chunk(client(), ["s1", "s2"], k, NOW, ChunkOptions(render=False))
    assert again.patients == expected.patients == 2 and again.created == again.amended == 0
    assert server.of_type("DiagnosticReport") == reports


def test_a_search_entry_answered_200_with_an_operationoutcome_is_not_read_as_no_results(
    server: FakeFhir, k: Any, rsps: Any
) -> None:
    def failed_med_search(answer: dict[str, Any], url: str) -> None:
        if url.startswith("Medication"):
            answer["resource"] = {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "exception", "diagnostics": "search failed"}],
            }

    _rewrite_batch_answers(server, failed_med_search)
    with pytest.raises(FhirError):
        run_chunk(client(), ["s1"], k, NOW, ChunkOptions(render=False))
    assert not server.of_type("DiagnosticReport")


# --- subject mismatch ------------------------------------------------------------------------------------------


def test_a_resource_of_another_patient_never_ends_up_in_a_chunk_patients_report(server: FakeFhir, k: Any, rsps: Any) -> None:
    """The server answers chunk [s1]'s searches with s2's Patient, Observations and medications too (a server that
    ignores `subject`, or an attacker's resource with an odd subject): s1's reports cite only s1's resources, and s2
    is not interpreted by a chunk that did not ask for it."""
    theirs = {
        (t, i)
        for (t, i), r in server.store.items()
        if (r.get("subject") or {}).get("reference") == "Patient/s2" or (t, i) == ("Patient", "s2")
    }
    # and one of s2's results written with an absolute reference to another host's Patient/s1
    spoof = copy.deepcopy(next(r for (t, i), r in server.store.items() if t == "Observation" and (t, i) in theirs))
    spoof["id"] = "spoof-1"
    spoof["subject"] = {"reference": "http://evil.test/fhir/Patient/s2"}
    server.store[("Observation", "spoof-1")] = spoof
    real = server._read

    def leaky(rel: str) -> dict[str, Any]:
        body = real(rel)
        if "?" in rel and body.get("type") == "searchset":
            rtype = rel.split("?")[0]
            body["entry"] += [{"resource": copy.deepcopy(server.store[key])} for key in sorted(theirs) if key[0] == rtype]
            if rtype == "Observation":
                body["entry"].append({"resource": copy.deepcopy(spoof)})
        return body

    server._read = leaky  # type: ignore[method-assign]
    outcome = run_chunk(client(), ["s1"], k, NOW, ChunkOptions(render=False))
    assert outcome.patients == 1 and not outcome.failed
    written = [r for t in ("DiagnosticReport", "RiskAssessment", "Provenance") for r in server.of_type(t)]
    assert written
    foreign = {f"{t}/{i}" for t, i in theirs} | {"Observation/spoof-1"}
    for r in written:
        text = json.dumps({k_: v for k_, v in r.items() if k_ not in ("text", "presentedForm")})
        assert "Patient/s2" not in text
        assert not any(f'"{f}"' in text or f'"{f}/_history' in text for f in foreign)
    assert {(r.get("subject") or {}).get("reference") for r in server.of_type("DiagnosticReport")} == {"Patient/s1"}


def test_a_report_of_another_patient_is_never_taken_as_a_chunk_patients_earlier_report(server: FakeFhir, k: Any) -> None:
    run_chunk(client(), ["s2"], k, NOW, ChunkOptions(render=False))
    s2_reports = copy.deepcopy(server.of_type("DiagnosticReport"))
    real = server._read

    def leaky(rel: str) -> dict[str, Any]:
        body = real(rel)
        if rel.startswith("DiagnosticReport?"):
            body["entry"] += [{"resource": copy.deepcopy(r)} for r in s2_reports]
        return body

    server._read = leaky  # type: ignore[method-assign]
    outcome = run_chunk(client(), ["s1"], k, NOW, ChunkOptions(render=False))
    assert outcome.amended == 0 and outcome.created > 0
    for r in s2_reports:
        assert server.store[("DiagnosticReport", r["id"])] == r  # s2's reports untouched


# --- the checkpoint --------------------------------------------------------------------------------------------


def test_the_checkpoint_is_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o000)
    try:
        cp = Checkpoint(tmp_path / "runs" / "x.sqlite3")
        cp.started_at(NOW)
        cp.record(["p1"], run_chunk_outcome())
    finally:
        os.umask(old)
    for f in (tmp_path / "runs").iterdir():
        assert stat.S_IMODE(f.stat().st_mode) & 0o077 == 0, f


def run_chunk_outcome() -> Any:
    from labinterp.population import ChunkOutcome

    return ChunkOutcome(patients=1)


def test_a_run_of_another_server_selection_mode_or_ruleset_never_reuses_a_checkpoint(tmp_path: Path) -> None:
    opts = ChunkOptions()
    base = Checkpoint.for_run(tmp_path, BASE, Selection(all=True), opts, "1.0").path
    others = [
        Checkpoint.for_run(tmp_path, "http://other.test/fhir", Selection(all=True), opts, "1.0").path,
        Checkpoint.for_run(tmp_path, BASE, Selection(group="g1"), opts, "1.0").path,
        Checkpoint.for_run(tmp_path, BASE, Selection(group="g2"), opts, "1.0").path,
        Checkpoint.for_run(tmp_path, BASE, Selection(all=True, since="2026-01-01T00:00:00+00:00"), opts, "1.0").path,
        Checkpoint.for_run(tmp_path, BASE, Selection(all=True), ChunkOptions(write="put"), "1.0").path,
        Checkpoint.for_run(tmp_path, BASE, Selection(all=True), ChunkOptions(strict=True), "1.0").path,
        Checkpoint.for_run(tmp_path, BASE, Selection(all=True), opts, "1.1").path,
    ]
    assert len({base, *others}) == len(others) + 1
    assert all(p.parent == tmp_path / "runs" and re.fullmatch(r"[0-9a-f]{20}\.sqlite3", p.name) for p in others)


def cli_env(tmp_path: Path) -> dict[str, str]:
    return {
        "LABINTERP_WORKDIR": str(tmp_path),
        "LABINTERP_MAPPINGS_DIR": str(SITE),
        "LABINTERP_RENDER": "false",
        "LABINTERP_FHIR_RETRIES": "1",
        "LABINTERP_FHIR_RETRY_DELAY": "0",
    }


def cli_run(tmp_path: Path, *more: str) -> Any:
    from labinterp.cli.main import cli

    return CliRunner().invoke(cli, ["interpret", "--fhir-url", BASE, "--all", "--workers", "1", *more], env=cli_env(tmp_path))


def only_checkpoint(tmp_path: Path) -> Path:
    (path,) = (tmp_path / "runs").glob("*.sqlite3")
    return path


@pytest.mark.parametrize("garbage", [b"not a database at all" * 100, b""])
def test_a_corrupt_checkpoint_is_one_line_and_restart_gets_past_it(
    server: FakeFhir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, garbage: bytes
) -> None:
    for name in [n for n in os.environ if n.startswith("LABINTERP_")]:
        monkeypatch.delenv(name)
    server.refuse = [503] * 50  # the first run stops with its checkpoint kept
    first = cli_run(tmp_path)
    assert first.exit_code != 0
    path = only_checkpoint(tmp_path)
    path.write_bytes(garbage + b"\0" * 2048 if garbage else b"SQLite format 3\0" + b"\xff" * 200)
    server.refuse = []
    again = cli_run(tmp_path)
    assert again.exit_code == 2, again.output
    assert "internal error" not in again.output and "--restart" in again.output
    fresh = cli_run(tmp_path, "--restart")
    assert fresh.exit_code == 0, fresh.output
    assert not path.exists()


def test_a_checkpoint_with_an_unreadable_evaluation_time_is_one_line(tmp_path: Path) -> None:
    cp = Checkpoint(tmp_path / "runs" / "x.sqlite3")
    cp.started_at(NOW)
    import sqlite3

    with sqlite3.connect(cp.path) as db:
        db.execute("UPDATE meta SET value = 'garbage' WHERE key = 'now'")
    with pytest.raises(LabinterpError) as err:
        cp.started_at(NOW)
    assert "--restart" in str(err.value)


def test_a_resumed_run_does_not_count_a_patient_that_failed_before_and_now_succeeds(
    server: FakeFhir, k: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunk 1 refuses one patient (422), chunk 2 finds the server down: the run stops. Resumed, that patient is
    redone and written: the summary must not still name it as failed (exit 1) nor count it twice."""
    server.refuse = [422, 422]  # chunk 1's transaction, then its first patient alone
    calls = {"n": 0}
    real = FhirClient.fetch_patients

    def failing(self: FhirClient, *args: Any, **kw: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            from labinterp.errors import FhirTemporaryError

            raise FhirTemporaryError("POST", BASE, 503, "the server is down")
        return real(self, *args, **kw)

    monkeypatch.setattr(FhirClient, "fetch_patients", failing)
    from labinterp.errors import FhirTemporaryError

    with pytest.raises(FhirTemporaryError):
        run(k, Selection(all=True), tmp_path, chunk=3, transaction_size=3, render=False)
    checkpoint = Checkpoint(tmp_path / "run.sqlite3")
    assert len(checkpoint.done()) == 2
    later = run(k, Selection(all=True), tmp_path, chunk=3, transaction_size=3, render=False)
    assert later.resumed and not later.outcome.failed
    assert later.outcome.patients == 6


# --- POST /$interpret and the run's status --------------------------------------------------------------------

API_TOKEN = "a-long-enough-api-token-0123456789"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture
def app(tmp_path: Path) -> Any:
    from labinterp.server.app import create_app

    return create_app(
        {"FHIR_BASE_URL": BASE, "MAPPINGS_DIR": str(SITE), "QUEUE_PATH": str(tmp_path / "q.db"), "API_TOKEN": API_TOKEN}
    )


def params(*parameter: Any) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": list(parameter)}


@pytest.mark.parametrize(
    "body",
    [
        params({"name": "all", "valueBoolean": True}, {"name": "since", "valueInstant": 20260101}),
        params({"name": "all", "valueBoolean": True}, {"name": "since", "valueInstant": None}),
        params({"name": "all", "valueBoolean": True}, {"name": "since", "valueInstant": "2026-01-01T00:00:00Z&_id=x"}),
        params({"name": "all", "valueBoolean": True}, {"name": "since", "valueInstant": "2026-01-01T00:00:00Z\n"}),
        params({"name": "all", "valueBoolean": True}, {"name": "since", "valueInstant": "0000-01-01T00:00:00Z"}),
        params({"name": "all", "valueBoolean": True}, {"name": "since", "valueInstant": "2026-01-01T24:00:00Z"}),
        params({"name": "all", "valueBoolean": True}, {"name": "since", "valueInstant": "2026-01-01T00:00:00+99:00"}),
        params({"name": "all", "valueBoolean": True}, {"name": "since"}),
        params(
            {"name": "all", "valueBoolean": True},
            {"name": "since", "valueInstant": "2026-01-01T00:00:00Z"},
            {"name": "since", "valueInstant": "2026-01-02T00:00:00Z"},
        ),
        params({"name": "group", "valueReference": {"reference": "http://evil.test/fhir/Group/g1"}}),
        params({"name": "group", "valueReference": {"reference": "Group/../Patient/x"}}),
        params({"name": "group", "valueReference": {"reference": "Group/a,b"}}),
        params({"name": "group", "valueReference": {"reference": 7}}),
        params({"name": "group", "valueReference": "Group/g1"}),
        params({"name": "group", "valueReference": {"reference": "#g1"}}),
        params({"name": "group", "valueString": "g1"}, {"name": "group", "valueString": "g2"}),
        params({"name": "group", "valueString": "x" * 65}),
        params({"name": "all", "valueBoolean": "true"}),
        params({"name": "all", "valueBoolean": 1}),
        params({"name": "all", "valueBoolean": True}, "all"),
        params({"name": "all", "valueBoolean": True}, {"name": "all"}),
        {"resourceType": "Parameters", "parameter": {"name": "all", "valueBoolean": True}},
        {"resourceType": "Parameters", "parameter": "all"},
        {"resourceType": "Bundle", "parameter": [{"name": "all", "valueBoolean": True}]},
        [{"name": "all", "valueBoolean": True}],
        "all",
        None,
        params(),
    ],
)
def test_bad_run_parameters_are_a_4xx_operationoutcome_and_start_no_run(app: Any, body: Any) -> None:
    c = app.test_client()
    r = c.post("/$interpret", data=json.dumps(body), headers={**AUTH, "Content-Type": "application/fhir+json"})
    assert 400 <= r.status_code < 500, (r.status_code, r.data[:300])
    assert r.json["resourceType"] == "OperationOutcome"
    assert app.extensions["labinterp"].queue.counts()["pending"] == 0


@pytest.mark.parametrize(
    "body",
    [
        params({"name": "all", "valueBoolean": True}, {"name": ["all"]}),
        params({"name": {"all": True}, "valueBoolean": True}),
        params({"name": ["patient"], "valueString": "p1"}),
    ],
)
def test_a_parameter_name_that_is_not_text_is_a_400_not_a_500(app: Any, body: Any) -> None:
    r = app.test_client().post("/$interpret", json=body, headers=AUTH)
    assert r.status_code == 400 and r.json["resourceType"] == "OperationOutcome", r.data[:300]


@pytest.mark.parametrize(
    "run_id",
    ["..", "..%2F..%2Fqueue", "%2e%2e", "a%00b", "x" * 65, "run:abc", "chunk:abc:1", "'%20OR%201=1--", "%20"],
)
def test_an_odd_run_id_is_404(app: Any, run_id: str) -> None:
    app.extensions["labinterp"].start_run(Selection(all=True))
    r = app.test_client().get(f"/$interpret/runs/{run_id}", headers=AUTH)
    assert r.status_code == 404 and r.json["resourceType"] == "OperationOutcome", r.data[:300]


def test_a_runs_status_needs_the_api_token(app: Any) -> None:
    run_id = app.extensions["labinterp"].start_run(Selection(all=True))
    c = app.test_client()
    assert c.get(f"/$interpret/runs/{run_id}").status_code == 401
    assert c.get(f"/$interpret/runs/{run_id}", headers={"Authorization": "Bearer wrong"}).status_code in (401, 403)
    r = c.post("/$interpret", json=params({"name": "all", "valueBoolean": True}))
    assert r.status_code == 401 and app.extensions["labinterp"].queue.counts()["pending"] == 1


# --- logs ------------------------------------------------------------------------------------------------------

PID = "zq-patient-7731"
NAME = "Zebediah"


def test_no_patient_id_name_or_token_reaches_the_logs(
    rsps: Any, k: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake = ProbeFhir(rsps)
    data = synthetic(2, 11, "zq-patient-773")
    for e in data["entry"]:
        r = e["resource"]
        if r["resourceType"] == "Patient":
            r["name"] = [{"family": NAME, "given": ["Quixote"]}]
    fake.load([e["resource"] for e in data["entry"]])
    fake.load(
        [
            {
                "resourceType": "Group",
                "id": "g1",
                "type": "person",
                "actual": True,
                "member": [member(f"Patient/{PID}"), member("Patient/zq-patient-7730"), member("Patient/zq-gone-1")],
            }
        ]
    )
    fake.refuse = [422, 422]  # a refused transaction, then one patient refused alone
    caplog.set_level(logging.DEBUG)
    summary = run_population(
        lambda: client(TOKEN), Selection(group="g1"), k, NOW, ChunkOptions(render=False), chunk_size=10, workers=1
    )
    assert summary.outcome.failed  # the refused one and the missing one: named in the summary only
    # the same through the service's queue
    from labinterp.server.app import create_app
    from labinterp.server.worker import Worker

    settings = {"FHIR_BASE_URL": BASE, "MAPPINGS_DIR": str(SITE), "QUEUE_PATH": str(tmp_path / "q2.db")}
    s = create_app({**settings, "API_TOKEN": API_TOKEN, "FHIR_TOKEN": TOKEN, "FHIR_RETRIES": 1}).extensions["labinterp"]

    run_id = s.start_run(Selection(group="g1"))
    fake.refuse = [422, 422]
    Worker(s.queue, s.process, jobs=s.run_job, threads=1).drain(10)
    assert s.queue.runs.get(run_id)["state"] in ("done", "failed")
    text = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert text  # something was logged
    for secret in ("zq-patient", "zq-gone", NAME, "Quixote", TOKEN):
        assert secret not in text, secret


# --- more odd shapes ---------------------------------------------------------------------------------------------


def test_an_earlier_report_whose_subject_is_not_a_reference_object_spoils_nothing(server: FakeFhir, k: Any) -> None:
    """A resource with labinterp's series identifier whose `subject` is a string (a server that does not validate):
    it is nobody's earlier report, and the chunk goes on."""
    odd = {
        "resourceType": "DiagnosticReport",
        "id": "odd-1",
        "status": "final",
        "code": {"text": "x"},
        "subject": "Patient/s1",
        "identifier": [{"system": SERIES, "value": "whatever"}],
    }
    real = server._read

    def with_odd(rel: str) -> dict[str, Any]:
        body = real(rel)
        if rel.startswith("DiagnosticReport?"):
            body["entry"].append({"resource": copy.deepcopy(odd)})
        return body

    server._read = with_odd  # type: ignore[method-assign]
    outcome = run_chunk(client(), ["s1"], k, NOW, ChunkOptions(render=False))
    assert outcome.patients == 1 and not outcome.failed and outcome.created > 0


def test_a_patient_twice_in_a_chunk_is_interpreted_once(server: FakeFhir, k: Any) -> None:
    outcome = run_chunk(client(), ["s1", "s1"], k, NOW, ChunkOptions(render=False))
    assert outcome.patients == 1 and not outcome.failed
    assert len(server.of_type("Provenance")) == 1


def test_a_service_listing_whose_paging_cycles_fails_the_run_and_ends(app: Any, rsps: Any) -> None:
    """The service's listing keeps every id of the selection in memory: a `next` link cycle must end it."""
    calls = {"n": 0}

    def page(request: Any) -> tuple[int, dict[str, str], str]:
        calls["n"] += 1
        if calls["n"] > 50:
            raise RuntimeError("still paging: a cycle not detected")
        return 200, {}, json.dumps(searchset(patients(f"p{calls['n']}"), f"{BASE}/Patient?page=again"))

    rsps.add(responses.GET, re.compile(re.escape(f"{BASE}/Patient?_summary")), json={"resourceType": "Bundle", "total": 2})
    rsps.add_callback(responses.GET, re.compile(re.escape(BASE) + r"/Patient\?(_elements|page).*"), callback=page)
    rsps.add(responses.GET, re.compile(re.escape(f"{BASE}/Device?")), json=searchset([]))
    created = {"resourceType": "Bundle", "type": "transaction-response", "entry": [{"response": {"status": "201"}}]}
    rsps.add(responses.POST, BASE, json=created)
    s = app.extensions["labinterp"]
    from labinterp.server.worker import Worker

    run_id = s.start_run(Selection(all=True))
    Worker(s.queue, s.process, jobs=s.run_job, threads=1).drain(5)
    run = s.queue.runs.get(run_id)
    assert run is not None
    assert run["state"] == "failed" and "page already read" in run["error"] and calls["n"] <= 3


# --- lead's follow-ups ------------------------------------------------------------------------------------------

NOON = datetime(2026, 6, 15, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("period", "kept"),
    [
        ({"end": "2026-06-14"}, False),  # ended yesterday
        ({"end": "2026-06-15"}, True),  # ends today: a member all that day
        ({"end": "2026-05"}, False),
        ({"end": "2026-06"}, True),
        ({"end": "2025"}, False),
        ({"end": "2026-06-15T11:59:00Z"}, False),
        ({"end": "2026-06-15T14:00:00+01:00"}, True),  # 13:00 UTC
        ({"start": "2026-06-16"}, False),  # not yet a member
        ({"start": "2026-06-15"}, True),
        ({"start": "2020-01-01", "end": "2030"}, True),
        ({}, True),
    ],
)
def test_a_member_whose_period_has_ended_or_not_begun_is_not_selected(period: dict[str, str], kept: bool) -> None:
    ids, bad = group_members(
        {"resourceType": "Group", "member": [member("Patient/a", period=period), member("Patient/b")]}, "g1", NOON
    )
    assert ids == (["a", "b"] if kept else ["b"]) and not bad


@pytest.mark.parametrize("period", ["2026", {"end": "yesterday"}, {"start": 20260101}])
def test_a_member_period_that_cannot_be_read_is_named_and_the_others_kept(period: Any) -> None:
    ids, bad = group_members(
        {"resourceType": "Group", "member": [member("Patient/a", period=period), member("Patient/b")]}, "g1", NOON
    )
    assert ids == ["b"]
    assert len(bad) == 1 and bad[0][0].startswith("Group/g1 member[0].period")


def test_a_checkpoint_is_the_same_whatever_the_base_urls_trailing_slash(tmp_path: Path) -> None:
    sel, opts = Selection(all=True), ChunkOptions()
    one = Checkpoint.path_for(tmp_path, BASE, sel, opts, "r1")
    assert one == Checkpoint.path_for(tmp_path, BASE + "/", sel, opts, "r1")
    assert one != Checkpoint.path_for(tmp_path, BASE + "/other", sel, opts, "r1")


def test_two_groups_in_one_synchronous_interpret_are_a_400(app: Any) -> None:
    body = params(
        {"name": "group", "valueString": "Group/g1"},
        {"name": "group", "valueString": "Group/g2"},
        {"name": "patient", "valueString": "Patient/p1"},
    )
    r = app.test_client().post("/$interpret", json=body, headers=AUTH)
    assert r.status_code == 400 and r.json["resourceType"] == "OperationOutcome", r.data[:300]
    assert "one group only" in r.json["issue"][0]["diagnostics"]


def test_a_search_entry_answered_with_nothing_is_not_read_as_no_results() -> None:
    from labinterp.fhir.search import parse_batch_response

    body = {"resourceType": "Bundle", "type": "batch-response", "entry": [{"response": {"status": "200 OK"}}]}
    with pytest.raises(FhirError, match="not answered with a searchset"):
        parse_batch_response(body, ["MedicationRequest?subject=Patient/a"], BASE)
    # a read answered without a resource stays as it was: nothing read
    assert parse_batch_response(body, ["Patient/a"], BASE).resources == []


def _rewrite_batch_answers(server: ProbeFhir, change: Callable[[dict[str, Any], str], None]) -> None:
    """The server's batch answers passed through `change(answer entry, the URL it answers)` before they are sent."""
    real = server._post

    def post(request: Any) -> tuple[int, dict[str, str], str]:
        code, headers, body = real(request)
        data = json.loads(body)
        if data.get("type") == "batch-response":
            for answer, asked in zip(data["entry"], json.loads(request.body)["entry"], strict=True):
                change(answer, unquote(asked["request"]["url"]))
        return code, headers, json.dumps(data)

    server._post = post  # type: ignore[method-assign]


def _refusing_searches_about(server: ProbeFhir, bad: str, status: int) -> None:
    """The server answers any batch that asks about Patient/`bad` with that entry failed (`status`)."""

    def refuse(answer: dict[str, Any], url: str) -> None:
        if f"Patient/{bad}" in url and "?" in url:
            answer.pop("resource", None)
            answer["response"] = {"status": f"{status} Refused"}

    _rewrite_batch_answers(server, refuse)


def test_one_patient_the_server_refuses_to_search_fails_alone_and_the_run_goes_on(server: ProbeFhir, k: Any) -> None:
    ids = sorted(i for (t, i) in server.store if t == "Patient")
    _refusing_searches_about(server, ids[1], 400)
    summary = run(k, Selection(all=True), chunk=3, render=False)
    assert [pid for pid, _ in summary.outcome.failed] == [ids[1]]
    assert summary.outcome.patients == len(ids)
    reported = {r["subject"]["reference"] for r in server.of_type("DiagnosticReport")}
    assert reported == {f"Patient/{i}" for i in ids if i != ids[1]}


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_stop_the_run_rather_than_failing_each_patient(server: ProbeFhir, k: Any, status: int) -> None:
    ids = sorted(i for (t, i) in server.store if t == "Patient")
    _refusing_searches_about(server, ids[0], status)
    before = len(server.requests)
    with pytest.raises(LabinterpError):
        run(k, Selection(all=True), chunk=3, render=False)
    assert len(server.requests) - before < 8  # not one request per patient after the chunk failed
    assert not server.of_type("DiagnosticReport") or all(
        r["subject"]["reference"] != f"Patient/{ids[0]}" for r in server.of_type("DiagnosticReport")
    )


def test_a_groups_members_are_those_current_at_the_runs_evaluation_time(server: FakeFhir, k: Any, tmp_path: Path) -> None:
    """`--now` (or a resumed run's stored time) is the time a Group's membership is judged at, as the patients' data
    is: not the wall clock. At NOW s0 is still a member (until February), s1 not yet one (from June)."""
    server.load(
        [
            {
                "resourceType": "Group",
                "id": "ward",
                "type": "person",
                "actual": True,
                "member": [
                    member("Patient/s0", period={"end": "2026-02-01"}),
                    member("Patient/s1", period={"start": "2026-06-01"}),
                    member("Patient/s2"),
                ],
            }
        ]
    )
    summary = run(k, Selection(group="ward"), tmp_path)
    assert summary.outcome.patients == 2 and not summary.outcome.failed and not summary.skipped
    subjects = {r["subject"]["reference"] for r in server.of_type("DiagnosticReport")}
    assert subjects == {"Patient/s0", "Patient/s2"}
