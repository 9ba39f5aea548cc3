"""The Flask API against a FHIR server mocked with `responses`: one read and one write per patient,
dry-run, errors as OperationOutcome, bearer token, rest-hook enqueueing, Group and Parameters."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import responses

from labinterp.server.app import create_app
from tests.conftest import SITE

BASE = "http://fhir.test/fhir"
EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "patients"


def batch_response_for(bundle: dict[str, Any]) -> dict[str, Any]:
    """What a FHIR server answers to labinterp's read batch for the patient in `bundle`."""
    res = [e["resource"] for e in bundle["entry"]]
    patient = next(r for r in res if r["resourceType"] == "Patient")

    def ss(rtype: str) -> dict[str, Any]:
        return {
            "resource": {
                "resourceType": "Bundle",
                "type": "searchset",
                "entry": [{"resource": r} for r in res if r["resourceType"] == rtype],
            },
            "response": {"status": "200 OK"},
        }

    entries = [
        {"resource": patient, "response": {"status": "200 OK"}},
        ss("Observation"),
        ss("MedicationRequest"),
        ss("MedicationStatement"),
        ss("MedicationAdministration"),
        ss("_none"),
        ss("_none"),
    ]
    return {"resourceType": "Bundle", "type": "batch-response", "entry": entries}


def answering(sent: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    """A read batch's answer, with no Device found when the batch also searched for labinterp's Device (the read
    after a conflict does)."""
    asks_device = any(e["request"]["url"].startswith("Device?") for e in sent["entry"])
    if asks_device and len(answer["entry"]) == len(sent["entry"]) - 1:
        empty = {"resource": {"resourceType": "Bundle", "type": "searchset"}, "response": {"status": "200 OK"}}
        return {**answer, "entry": [*answer["entry"], empty]}
    return answer


def tx_response(request: Any) -> tuple[int, dict[str, str], str]:
    sent = json.loads(request.body)
    if sent["type"] == "batch":
        return 200, {}, json.dumps(answering(sent, READ[0]))
    entries = [
        {"response": {"status": "201 Created", "location": f"{e['resource']['resourceType']}/{i}/_history/1"}}
        for i, e in enumerate(sent["entry"])
    ]
    return 200, {}, json.dumps({"resourceType": "Bundle", "type": "transaction-response", "entry": entries})


READ: list[dict[str, Any]] = []


@pytest.fixture
def app(tmp_path: Path) -> Any:
    return create_app({"FHIR_BASE_URL": BASE, "MAPPINGS_DIR": str(SITE), "QUEUE_PATH": str(tmp_path / "q.db"), "WORKER": False})


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


def serve(patient_file: str) -> None:
    READ[:] = [batch_response_for(json.loads((EXAMPLES / patient_file).read_text()))]
    responses.add_callback(responses.POST, BASE, callback=tx_response)


@responses.activate
def test_interpret_one_read_one_write(client: Any) -> None:
    serve("p01.json")
    r = client.post("/Patient/p01/$interpret")  # a write is stamped with the time it is written: no ?now=
    assert r.status_code == 200 and r.mimetype == "application/fhir+json"
    assert r.json["type"] == "transaction-response"
    assert len(responses.calls) == 2 and r.headers["X-Labinterp-Requests"] == "2"
    assert r.headers["X-Labinterp-Created"] == "linezolid,genotype,exposure-risk,egfr,renal"
    assert [json.loads(c.request.body)["type"] for c in responses.calls] == ["batch", "transaction"]


@responses.activate
def test_dry_run_reads_only(client: Any) -> None:
    serve("p08.json")
    r = client.post("/Patient/p08/$interpret?dry-run")
    assert r.status_code == 200 and r.json["type"] == "transaction" and len(responses.calls) == 1
    kinds = [e["resource"]["resourceType"] for e in r.json["entry"]]
    assert kinds[0] == "Device" and kinds[-1] == "Provenance" and "RiskAssessment" in kinds


@responses.activate
def test_errors_are_operation_outcomes(client: Any) -> None:
    responses.post(
        BASE,
        json={
            "resourceType": "Bundle",
            "type": "batch-response",
            "entry": [
                {
                    "response": {
                        "status": "404 Not Found",
                        "outcome": {
                            "resourceType": "OperationOutcome",
                            "issue": [
                                {"severity": "error", "code": "not-found", "diagnostics": "Resource Patient/zz is not known"}
                            ],
                        },
                    }
                }
            ]
            + [{"response": {"status": "200 OK"}}] * 6,
        },
    )
    r = client.post("/Patient/zz/$interpret")
    assert r.status_code == 404 and r.json["resourceType"] == "OperationOutcome"
    # the server's issue code, not its free text (which may quote a patient's data)
    assert "Patient/zz: HTTP 404: not-found" in r.json["issue"][0]["diagnostics"]
    r = client.post("/Patient/bad%20id/$interpret")
    assert r.status_code == 400 and "is not a FHIR resource id" in r.json["issue"][0]["diagnostics"]
    r = client.get("/nowhere")
    assert r.status_code == 404 and r.json["issue"][0]["code"] == "not-found"
    r = client.get("/Patient/p1/$interpret")
    assert r.status_code == 405 and r.json["resourceType"] == "OperationOutcome"


def serve_with_bad_unit() -> dict[str, Any]:
    """p08 with its first Observation in furlongs; returns that Observation."""
    bundle = json.loads((EXAMPLES / "p08.json").read_text())
    obs = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation")
    obs["valueQuantity"]["code"] = obs["valueQuantity"]["unit"] = "furlongs"
    READ[:] = [batch_response_for(bundle)]
    responses.add_callback(responses.POST, BASE, callback=tx_response)
    return obs


@responses.activate
@pytest.mark.parametrize("query", ["?strict", "?strict=true"])
def test_strict_broken_input_is_422_naming_the_observation(client: Any, query: str) -> None:
    obs = serve_with_bad_unit()
    r = client.post(f"/Patient/p08/$interpret{query}")
    issue = r.json["issue"][0]
    assert r.status_code == 422 and issue["expression"] == ["Observation.valueQuantity.unit"]  # FHIRPath
    assert f"Observation/{obs['id']} valueQuantity.unit" in issue["diagnostics"]
    assert len(responses.calls) == 1  # nothing written


@responses.activate
@pytest.mark.parametrize("query", ["", "?strict=false"])
def test_broken_resource_is_left_out_with_warnings(client: Any, query: str) -> None:
    """Before: 422 and nothing written. Now: the other reports written; a Parameters with the server's
    transaction-response (`return`) and an OperationOutcome of warnings (`outcome`)."""
    obs = serve_with_bad_unit()
    r = client.post(f"/Patient/p08/$interpret{query}")
    assert r.status_code == 200 and r.mimetype == "application/fhir+json" and r.headers["X-Labinterp-Warnings"] == "1"
    assert len(responses.calls) == 2  # one read, one write
    assert r.json["resourceType"] == "Parameters"
    params = {p["name"]: p["resource"] for p in r.json["parameter"]}
    assert params["return"]["type"] == "transaction-response"
    (issue,) = params["outcome"]["issue"]
    assert issue["severity"] == "warning" and issue["code"] == "processing"
    assert issue["expression"] == ["Observation.valueQuantity.unit"] and "furlongs" in issue["diagnostics"]
    assert f"Observation/{obs['id']} valueQuantity.unit" in issue["diagnostics"]


@responses.activate
def test_no_warnings_keeps_the_bare_bundle(client: Any) -> None:
    serve("p08.json")
    r = client.post("/Patient/p08/$interpret?dry-run")
    assert r.json["resourceType"] == "Bundle" and r.headers["X-Labinterp-Warnings"] == "0"


@responses.activate
@pytest.mark.parametrize(
    ("config", "status"),
    [
        ({}, 200),
        ({"STRICT": True}, 422),
        ({"STRICT": "true"}, 422),
        ({"STRICT": False}, 200),
        ({"LENIENT": True}, 200),  # deprecated, the default
        ({"LENIENT": False}, 422),  # an explicit old setting keeps its meaning
        ({"STRICT": False, "LENIENT": False}, 200),  # STRICT decides
    ],
)
def test_service_strict_setting(tmp_path: Path, config: dict[str, Any], status: int) -> None:
    app = create_app({"FHIR_BASE_URL": BASE, "MAPPINGS_DIR": str(SITE), "QUEUE_PATH": str(tmp_path / "q.db")} | config)
    serve_with_bad_unit()
    r = app.test_client().post("/Patient/p08/$interpret?dry-run")
    assert r.status_code == status


@responses.activate
def test_batch_entries_carry_warnings(client: Any) -> None:
    obs = serve_with_bad_unit()
    params = {"resourceType": "Parameters", "parameter": [{"name": "patient", "valueReference": {"reference": "Patient/p08"}}]}
    r = client.post("/$interpret?dry-run", json=params)
    assert r.status_code == 200
    issues = r.json["entry"][0]["response"]["outcome"]["issue"]
    assert [i["severity"] for i in issues] == ["information", "warning"]
    assert (
        issues[1]["expression"] == ["Observation.valueQuantity.unit"] and f"Observation/{obs['id']}" in issues[1]["diagnostics"]
    )
    r = client.post("/$interpret?dry-run&strict", json=params)
    assert r.json["entry"][0]["response"]["status"] == "422"


@responses.activate
def test_fhir_server_down_is_upstream_error(tmp_path: Path) -> None:
    import requests as rq

    app = create_app({"FHIR_BASE_URL": BASE, "QUEUE_PATH": str(tmp_path / "q.db"), "FHIR_RETRIES": 3, "FHIR_RETRY_DELAY": 0.0})
    responses.post(BASE, body=rq.ConnectionError("refused"))
    r = app.test_client().post("/Patient/p01/$interpret")
    assert r.status_code == 504 and r.json["issue"][0]["code"] == "transient" and len(responses.calls) == 3


@responses.activate
def test_bearer_token(tmp_path: Path) -> None:
    app = create_app({"FHIR_BASE_URL": BASE, "QUEUE_PATH": str(tmp_path / "q.db"), "API_TOKEN": "t0ken-t0ken-t0ken"})
    c = app.test_client()
    assert c.get("/healthz").status_code == 200
    r = c.post("/Patient/p01/$interpret")
    assert r.status_code == 401 and r.json["issue"][0]["code"] == "login"
    assert c.get("/queue", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert c.get("/queue", headers={"Authorization": "Bearer t0ken-t0ken-t0ken"}).status_code == 200


def test_hook_enqueues_the_patient(client: Any, app: Any) -> None:
    obs = {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "subject": {"reference": "Patient/p01"},
        "code": {"text": "x"},
    }
    assert client.put("/hook/Observation/o1", json=obs).status_code == 200
    assert client.put("/hook/Observation/o1", json=obs).status_code == 200
    assert (
        client.post("/hook", json={"resourceType": "Bundle", "type": "history", "entry": [{"resource": obs}]}).status_code == 200
    )
    assert app.extensions["labinterp"].queue.counts()["pending"] == 1  # coalesced


@responses.activate
def test_many_patients_and_groups(client: Any) -> None:
    serve("p10.json")
    responses.get(
        f"{BASE}/Group/g1",
        json={
            "resourceType": "Group",
            "id": "g1",
            "type": "person",
            "actual": True,
            "member": [{"entity": {"reference": "Patient/p10"}}, {"entity": {"reference": "Patient/p10"}}],
        },
    )
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "patient", "valueReference": {"reference": "Patient/p10"}},
            {"name": "group", "valueReference": {"reference": "Group/g1"}},
        ],
    }
    r = client.post("/$interpret?dry-run", json=params)
    assert r.status_code == 200 and r.json["type"] == "batch-response" and len(r.json["entry"]) == 1  # deduplicated
    assert r.json["entry"][0]["response"]["outcome"]["issue"][0]["diagnostics"].startswith("created magnesium")
    r = client.post("/Group/g1/$interpret?dry-run")
    assert r.status_code == 200 and len(r.json["entry"]) == 1
    r = client.post("/$interpret", json={"resourceType": "Parameters", "parameter": [{"name": "nonsense"}]})
    assert r.status_code == 400 and r.json["resourceType"] == "OperationOutcome"


@responses.activate
def test_readiness_and_openapi(client: Any) -> None:
    responses.get(f"{BASE}/metadata", json={"resourceType": "CapabilityStatement"})
    assert client.get("/readyz").status_code == 200
    doc = client.get("/openapi.json").json
    assert doc["openapi"].startswith("3.") and "/Patient/{id}/$interpret" in doc["paths"]
    op = doc["paths"]["/Patient/{id}/$interpret"]["post"]
    assert "strict" in [p["name"] for p in op["parameters"]] and "X-Labinterp-Warnings" in op["responses"]["200"]["headers"]
    assert "Parameters" in op["responses"]["200"]["description"]


def test_not_ready_without_fhir_server(tmp_path: Path) -> None:
    app = create_app({"FHIR_BASE_URL": "http://127.0.0.1:9/fhir", "QUEUE_PATH": str(tmp_path / "q.db"), "FHIR_RETRIES": 1})
    r = app.test_client().get("/readyz")
    assert r.status_code == 503 and "FHIR server not reachable" in r.json["issue"][0]["diagnostics"]


@responses.activate
def test_version_conflict_reads_and_plans_again() -> None:
    """A transaction answered 412 (e.g. a retried write that had in fact been applied): labinterp reads
    again, sees its reports stored, and writes nothing more."""
    from labinterp.fhir.client import FhirClient
    from labinterp.knowledge import load_knowledge
    from labinterp.pipeline import interpret_patient
    from tests.conftest import NOW

    k = load_knowledge(SITE)
    bundle = json.loads((EXAMPLES / "p10.json").read_text())
    first = batch_response_for(bundle)
    state: dict[str, Any] = {"calls": 0, "stored": []}

    def server(request: Any) -> tuple[int, dict[str, str], str]:
        state["calls"] += 1
        sent = json.loads(request.body)
        if sent["type"] == "batch":
            body = json.loads(json.dumps(first))
            body["entry"][5]["resource"]["entry"] = [
                {"resource": r} for r in state["stored"] if r["resourceType"] == "DiagnosticReport"
            ]
            return 200, {}, json.dumps(answering(sent, body))
        # the write "had been applied" before the client retried it
        state["stored"] = [dict(e["resource"], id=f"x{i}", meta={"versionId": "1"}) for i, e in enumerate(sent["entry"])]
        conflict = {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "conflict", "diagnostics": "version conflict"}],
        }
        return 412, {}, json.dumps(conflict)

    responses.add_callback(responses.POST, BASE, callback=server)
    result = interpret_patient(FhirClient(BASE), "p10", k, NOW)
    assert state["calls"] == 3 and not result.plan.writes and result.plan.unchanged == ["magnesium"]


@responses.activate
@pytest.mark.parametrize(
    ("env", "status"),
    [({"LABINTERP_STRICT": "true"}, 422), ({"LABINTERP_STRICT": "false"}, 200), ({"LABINTERP_LENIENT": "true"}, 200)],
)
def test_service_strict_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], status: int
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    app = create_app({"FHIR_BASE_URL": BASE, "MAPPINGS_DIR": str(SITE), "QUEUE_PATH": str(tmp_path / "q.db")})
    serve_with_bad_unit()
    assert app.test_client().post("/Patient/p08/$interpret?dry-run").status_code == status


def test_openapi_describes_every_route_of_the_service(app: Any, client: Any) -> None:
    """Each endpoint an integrator can call is in /openapi.json with its methods (the dashboard's pages aside)."""
    doc = client.get("/openapi.json").json["paths"]

    def openapi_path(rule: str) -> str:
        return re.sub(
            r"<(?:[a-z]+:)?(\w+)>",
            lambda m: (
                "{"
                + {"pid": "id", "gid": "id", "rtype": "type", "rid": "id", "service_id": "id"}.get(m.group(1), m.group(1))
                + "}"
            ),
            rule,
        )

    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.rule.startswith("/dashboard"):
            continue
        path = openapi_path(rule.rule)
        assert path in doc, path
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            assert method.lower() in doc[path], (path, method)


@responses.activate
def test_too_many_patients_in_one_request_is_a_413_before_any_read(tmp_path: Path) -> None:
    """One synchronous request holds a request thread per patient: a Group of 10,000 once kept the service busy for
    minutes and /healthz unanswered. Past LABINTERP_MAX_PATIENTS it is refused at once, naming the limit."""
    app = create_app({"FHIR_BASE_URL": BASE, "QUEUE_PATH": str(tmp_path / "q.db"), "MAX_PATIENTS": 3})
    c = app.test_client()
    members = [{"entity": {"reference": f"Patient/m{i}"}} for i in range(10_000)]
    responses.get(
        f"{BASE}/Group/big", json={"resourceType": "Group", "id": "big", "type": "person", "actual": True, "member": members}
    )
    r = c.post("/Group/big/$interpret?dry-run")
    assert (
        r.status_code == 413
        and r.json["resourceType"] == "OperationOutcome"
        and "LABINTERP_MAX_PATIENTS" in r.get_data(as_text=True)
    )
    assert len(responses.calls) == 1  # the Group read, and no patient
    params = {
        "resourceType": "Parameters",
        "parameter": [{"name": "patient", "valueReference": {"reference": f"Patient/x{i}"}} for i in range(4)],
    }
    assert c.post("/$interpret?dry-run", json=params).status_code == 413


def test_a_request_body_past_the_limit_is_a_413_outcome(tmp_path: Path) -> None:
    app = create_app(
        {"FHIR_BASE_URL": BASE, "QUEUE_PATH": str(tmp_path / "q.db"), "MAX_REQUEST_BYTES": 10_000, "HOOK_MAX_BYTES": 10_000}
    )
    r = app.test_client().post(
        "/$interpret", data=b'{"resourceType": "Parameters", "x": "' + b"a" * 20_000 + b'"}', content_type="application/json"
    )
    assert r.status_code == 413 and r.json["resourceType"] == "OperationOutcome"
