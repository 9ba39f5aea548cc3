"""The service on odd input (issue 7 point 5, prober's findings): never a 500. Odd fields of one resource give 200
with warnings; request bodies of the wrong shape or no readable JSON give 400/422 naming what is wrong; a FHIR
server's garbage gives 502; no warning, queue line or log repeats a patient's name, identifier or request ids."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import responses

from labinterp.server.api.outcome import fhirpath
from labinterp.server.app import create_app
from labinterp.server.worker import Worker
from tests.conftest import SITE
from tests.contract.test_api import BASE, EXAMPLES, READ, batch_response_for, tx_response
from tests.unit.test_odd_shapes import MRN, NAME, _identity_everywhere


def located(issue: dict[str, Any], where: str) -> bool:
    """An issue names its resource and element: `expression` in FHIRPath (when there is one), the resource's
    reference in the diagnostics."""
    path = fhirpath(where)
    return issue.get("expression") == ([path] if path else None) and where in issue["diagnostics"]


@pytest.fixture
def app(tmp_path: Path) -> Any:
    return create_app({"FHIR_BASE_URL": BASE, "MAPPINGS_DIR": str(SITE), "QUEUE_PATH": str(tmp_path / "q.db"), "WORKER": False})


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


def p08() -> dict[str, Any]:
    return json.loads((EXAMPLES / "p08.json").read_text())


def res(bundle: dict[str, Any], rid: str) -> dict[str, Any]:
    return next(e["resource"] for e in bundle["entry"] if e["resource"].get("id") == rid)


def serve(read: dict[str, Any]) -> None:
    READ[:] = [read]
    responses.add_callback(responses.POST, BASE, callback=tx_response)


def _no_identity(text: str) -> None:
    for word in (NAME, "Zebulon", "Quixotic", MRN, "99887766"):
        assert word.lower() not in text.lower(), f"{word!r} in {text}"


# --- 1. one odd field: 200 with warnings, never a 500 ---------------------------------------------------------


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda b: res(b, "p08").__setitem__("name", 5), "Patient/p08 name"),
        (lambda b: res(b, "p08").__setitem__("identifier", 5), "Patient/p08 identifier"),
        (lambda b: res(b, "p08-lab1")["valueQuantity"].__setitem__("value", 10**400), "Observation/p08-lab1 valueQuantity.value"),
        (lambda b: res(b, "p08-stat6").__setitem__("status", ["active"]), "MedicationStatement/p08-stat6 status"),
    ],
)
@responses.activate
def test_one_odd_field_is_a_warning_not_a_500(client: Any, mutate: Any, where: str) -> None:
    bundle = p08()
    mutate(bundle)
    serve(batch_response_for(bundle))
    r = client.post("/Patient/p08/$interpret?dry-run&now=2026-01-20T12:00:00Z")
    assert r.status_code == 200 and r.json["resourceType"] == "Parameters", r.json
    issues = r.json["parameter"][1]["resource"]["issue"]
    assert len(issues) == 1 and located(issues[0], where) and r.headers["X-Labinterp-Warnings"] == "1"


@responses.activate
def test_meta_list_is_read(client: Any) -> None:
    bundle = p08()
    res(bundle, "p08")["meta"] = ["x"]
    res(bundle, "p08-lab1")["meta"] = ["x"]
    serve(batch_response_for(bundle))
    r = client.post("/Patient/p08/$interpret?dry-run&now=2026-01-20T12:00:00Z")
    assert r.status_code == 200 and r.json["type"] == "transaction"


# --- 2. no identity in the OperationOutcome or the queue ------------------------------------------------------


@responses.activate
def test_no_identity_in_warnings_over_http_and_in_the_queue(app: Any, client: Any) -> None:
    serve(batch_response_for(_identity_everywhere()))
    r = client.post("/Patient/z1/$interpret?dry-run&now=2026-01-20T12:00:00Z")
    assert r.status_code == 200 and r.json["resourceType"] == "Parameters"
    outcome = r.json["parameter"][1]["resource"]
    assert len(outcome["issue"]) >= 15
    _no_identity(json.dumps(outcome))
    s = app.extensions["labinterp"]
    s.queue.enqueue("z1", "test")
    Worker(s.queue, s.process, threads=1, attempts=2).run_one()
    assert s.queue.counts()["done"] == 1
    warned = json.dumps(s.queue.warned())
    assert "subject.reference" in warned
    _no_identity(warned)


# --- 3 and 4. request bodies ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/$interpret", "/hook"])
@pytest.mark.parametrize(
    "body", ["[" * 100_000 + "]" * 100_000, "{oops"]
)  # a 5000-digit number is read (as a float): one odd value
def test_unreadable_json_body_is_400(client: Any, path: str, body: str) -> None:
    """Before: RecursionError → 500 (a deeply nested body)."""
    r = client.post(path, data=body, content_type="application/fhir+json")
    assert r.status_code == 400 and r.json["resourceType"] == "OperationOutcome"
    assert "request body" in r.json["issue"][0]["diagnostics"]


@pytest.mark.parametrize(
    "body",
    [
        {"resourceType": "Parameters", "parameter": "patient"},
        {"resourceType": "Parameters", "parameter": [None]},
        {"resourceType": "Parameters", "parameter": ["patient"]},
        {"resourceType": "Parameters", "parameter": {"name": "patient"}},
        {"resourceType": "Parameters", "parameter": [{"name": "patient", "valueReference": "Patient/p08"}]},
        {"resourceType": "Parameters", "parameter": [{"name": "group", "valueReference": {"reference": "Group/../../metadata"}}]},
        {"resourceType": "Parameters", "parameter": [{"name": "patient", "valueReference": {"reference": "Patient/p08\n"}}]},
        ["patient"],
    ],
)
def test_parameters_of_the_wrong_shape_are_400(client: Any, body: Any) -> None:
    """Before: AttributeError → 500."""
    r = client.post("/$interpret", json=body)
    assert r.status_code == 400 and r.json["resourceType"] == "OperationOutcome", r.json
    assert "Internal" not in r.json["issue"][0]["diagnostics"]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"resourceType": "Bundle", "entry": [1]}, "Bundle.entry[0]"),
        ({"resourceType": "Bundle", "entry": {"a": 1}}, "Bundle.entry"),
        ({"resourceType": "Bundle", "entry": [{"resource": "Observation/x"}]}, "Bundle.entry[0].resource"),
        ({"resourceType": "Observation", "subject": "Patient/x"}, "Observation.subject"),
        ({"resourceType": "Observation", "subject": {"reference": 5}}, "Observation.subject.reference"),
        ({"resourceType": "Observation", "subject": {"reference": "Patient/../metadata"}}, "Observation.subject.reference"),
    ],
)
def test_notifications_of_the_wrong_shape_are_422(client: Any, body: Any, where: str) -> None:
    """Before: AttributeError → 500."""
    r = client.post("/hook", json=body)
    assert r.status_code == 422 and located(r.json["issue"][0], where), r.json


@pytest.mark.parametrize(
    ("member", "where"),
    [
        ([{"entity": "Patient/p08"}], "Group/g1 member[0].entity"),
        ([{"entity": {"reference": 8}}], "Group/g1 member[0].entity.reference"),
        ([None], "Group/g1 member[0]"),
        ([{"entity": {"reference": "Patient/../metadata"}}], "Group/g1 member[0].entity.reference"),
    ],
)
@responses.activate
def test_odd_group_members_are_named_and_the_others_interpreted(client: Any, member: list[Any], where: str) -> None:
    serve(batch_response_for(p08()))
    group = {"resourceType": "Group", "id": "g1", "type": "person", "actual": True, "member": member}
    group["member"] = [*member, {"entity": {"reference": "Patient/p08"}}]
    responses.get(f"{BASE}/Group/g1", json=group)
    r = client.post("/Group/g1/$interpret?dry-run")
    assert r.status_code == 200 and [e["response"]["status"] for e in r.json["entry"]] == ["422", "200"]
    assert located(r.json["entry"][0]["response"]["outcome"]["issue"][0], where)


@responses.activate
def test_a_group_body_that_is_not_a_group_is_502(client: Any) -> None:
    responses.get(f"{BASE}/Group/g1", json=[{"entity": {"reference": "Patient/p08"}}])
    r = client.post("/Group/g1/$interpret?dry-run")
    assert r.status_code == 502 and r.json["resourceType"] == "OperationOutcome"


# --- 5 and 6. a FHIR server's odd answers ----------------------------------------------------------------------


def _mutated_read(mutate: Any) -> dict[str, Any]:
    read = copy.deepcopy(batch_response_for(p08()))
    mutate(read)
    return read


@pytest.mark.parametrize(
    ("mutate", "status"),
    [
        (lambda x: x["entry"].__setitem__(1, None), 502),
        (lambda x: x["entry"][1].__setitem__("response", "200 OK"), 502),
        (lambda x: x.__setitem__("entry", {"a": 1}), 502),
        (lambda x: x["entry"][1]["resource"].__setitem__("link", ["next"]), 200),
        (lambda x: x["entry"][1]["resource"].__setitem__("entry", {"resource": {}}), 200),  # read as no results
        (lambda x: x["entry"][1]["resource"]["entry"].append(None), 200),
        (lambda x: x["entry"][1]["resource"]["entry"][0]["resource"].__setitem__("identifier", ["x"]), 200),
        (lambda x: x["entry"][1]["resource"]["entry"][0]["resource"].__setitem__("identifier", {"system": "x"}), 200),
    ],
)
@responses.activate
def test_server_garbage_is_502_and_odd_resources_do_not_crash(client: Any, mutate: Any, status: int) -> None:
    """Before: AttributeError / TypeError → 500."""
    serve(_mutated_read(mutate))
    r = client.post("/Patient/p08/$interpret?dry-run&now=2026-01-20T12:00:00Z")
    assert r.status_code == status, r.json
    if status == 502:
        assert r.json["resourceType"] == "OperationOutcome"


@responses.activate
def test_a_server_result_without_resource_type_is_left_out(app: Any, client: Any) -> None:
    """Before: 422 even in lenient mode (the caller is not at fault), and the queued job failed for good."""
    serve(_mutated_read(lambda x: x["entry"][1]["resource"]["entry"].append({"resource": {"id": "q"}})))
    r = client.post("/Patient/p08/$interpret?dry-run&now=2026-01-20T12:00:00Z")
    assert r.status_code == 200 and r.json["resourceType"] == "Parameters"
    issues = r.json["parameter"][1]["resource"]["issue"]
    assert len(issues) == 1 and located(issues[0], "Observation search: entry[4].resource")
    r = client.post("/Patient/p08/$interpret?dry-run&strict&now=2026-01-20T12:00:00Z")
    assert r.status_code == 502 and "not a FHIR resource" in r.json["issue"][0]["diagnostics"]
    s = app.extensions["labinterp"]
    s.queue.enqueue("p08", "test")
    Worker(s.queue, s.process, threads=1, attempts=2).run_one()
    assert s.queue.counts()["done"] == 1 and len(s.queue.warned()) == 1


# --- 12. an unexpected exception ------------------------------------------------------------------------------


def test_unexpected_error_is_a_500_outcome_logged_without_ids(
    app: Any, client: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(patient_id: str, **_k: Any) -> Any:
        raise KeyError(patient_id)  # the exception's text carries the id: it must not reach the log

    monkeypatch.setattr(app.extensions["labinterp"], "interpret", boom)
    with caplog.at_level(logging.DEBUG):
        r = client.post("/Patient/p08/$interpret")
    assert r.status_code == 500 and r.json["resourceType"] == "OperationOutcome"
    assert "p08" not in json.dumps(r.json)
    logged = "\n".join(rec.getMessage() for rec in caplog.records)
    assert "/Patient/<pid>/$interpret" in logged and "KeyError" in logged
    assert "p08" not in logged
