"""POST /$interpret with `all` or `group` (and `since`): a population run in the background, 202 with its status URL;
GET /$interpret/runs/{id}: its status; bad parameters are 4xx OperationOutcomes, never 500."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from labinterp import population
from labinterp.population import ChunkOutcome, Selection
from labinterp.server.app import create_app
from labinterp.server.worker import Worker
from tests.conftest import SITE

BASE = "http://fhir.test/fhir"
TOKEN = "a-long-enough-api-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def app(tmp_path: Path) -> Any:
    return create_app(
        {"FHIR_BASE_URL": BASE, "MAPPINGS_DIR": str(SITE), "QUEUE_PATH": str(tmp_path / "q.db"), "API_TOKEN": TOKEN}
    )


def params(*parameter: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": list(parameter)}


def test_a_run_starts_with_202_and_its_status_url(app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    c = app.test_client()
    r = c.post("/$interpret", json=params({"name": "all", "valueBoolean": True}), headers=AUTH)
    assert r.status_code == 202, r.json
    url = r.headers["Content-Location"]
    run_id = url.rsplit("/", 1)[1]
    assert url.endswith(f"/$interpret/runs/{run_id}") and r.json["resourceType"] == "Parameters"
    assert {p["name"]: next(v for k, v in p.items() if k != "name") for p in r.json["parameter"]} == {
        "run": run_id,
        "status": url,
        "state": "listing",
    }
    status = c.get(f"/$interpret/runs/{run_id}", headers=AUTH)
    assert status.status_code == 200 and status.json["state"] == "listing" and status.json["selection"] == {"all": True}
    assert status.json["finished"] is None and status.json["started"].endswith("Z")

    # a worker runs it: listing, then chunks (the FHIR side faked)
    picked: list[list[str]] = []

    def select(client: Any, selection: Selection, now: Any = None) -> Any:
        assert selection == Selection(all=True)
        return population.Selected(iter(["a", "b", "c"]), 3)

    def run_chunk(client: Any, ids: list[str], k: Any, now: datetime, options: Any = None) -> ChunkOutcome:
        picked.append(ids)
        return ChunkOutcome(patients=len(ids), created=len(ids), unchanged=1)

    monkeypatch.setattr(population, "select_patients", select)
    monkeypatch.setattr(population, "run_chunk", run_chunk)
    monkeypatch.setattr(population, "ensure_device", lambda *args, **kwargs: None)  # no FHIR server here
    s = app.extensions["labinterp"]
    s.chunk_size = 2
    Worker(s.queue, s.process, jobs=s.run_job, threads=1).drain(10)
    done = c.get(f"/$interpret/runs/{run_id}", headers=AUTH).json
    assert picked == [["a", "b"], ["c"]]
    assert done["state"] == "done" and done["chunks"] == {"total": 2, "done": 2, "failed": 0}
    assert (done["patients"], done["created"], done["unchanged"], done["amended"]) == (3, 3, 2, 0)
    assert done["failed"]["count"] == 0 and done["finished"] is not None


def test_group_and_since_start_a_run(app: Any) -> None:
    c = app.test_client()
    r = c.post(
        "/$interpret",
        json=params(
            {"name": "group", "valueReference": {"reference": "Group/ward-7"}},
            {"name": "since", "valueInstant": "2026-01-31T12:00:00+01:00"},
        ),
        headers=AUTH,
    )
    assert r.status_code == 202
    run = c.get(r.headers["Content-Location"].split("localhost", 1)[1], headers=AUTH).json
    assert run["selection"] == {"group": "ward-7", "since": "2026-01-31T12:00:00+01:00"}
    r = c.post("/$interpret", json=params({"name": "group", "valueString": "ward-8"}), headers=AUTH)
    assert r.status_code == 202


@pytest.mark.parametrize(
    ("body", "query", "says"),
    [
        (params({"name": "all", "valueBoolean": True}, {"name": "group", "valueString": "g1"}), "", "all and group"),
        (params({"name": "group", "valueString": "../metadata"}), "", "group"),
        (params({"name": "group", "valueReference": {"reference": "Group/a b"}}), "", "group"),
        (params({"name": "all", "valueBoolean": True}, {"name": "since", "valueInstant": "yesterday"}), "", "since"),
        (params({"name": "all", "valueBoolean": True}, {"name": "since", "valueDateTime": "2026-01-31"}), "", "since"),
        (params({"name": "all", "valueBoolean": True}, {"name": "since", "valueInstant": "2026-13-31T00:00:00Z"}), "", "since"),
        (params({"name": "all", "valueString": "yes"}), "", "valueBoolean"),
        (params({"name": "all", "valueBoolean": False}), "", "no patients selected"),
        (params({"name": "since", "valueInstant": "2026-01-31T12:00:00Z"}), "", "no patients selected"),
        (params({"name": "all", "valueBoolean": True}, {"name": "patient", "valueString": "p1"}), "", "patient"),
        (params({"name": "all", "valueBoolean": True}), "?dry-run", "dry-run"),
        (params({"name": "all", "valueBoolean": True}), "?strict", "strict"),
        (params({"name": "all", "valueBoolean": True}, {"name": "all", "valueBoolean": True}), "", "all"),
        (params({"name": "all", "valueBoolean": True}, None), "", "parameter"),  # type: ignore[arg-type]
    ],
)
def test_bad_run_parameters_are_400(app: Any, body: dict[str, Any], query: str, says: str) -> None:
    r = app.test_client().post(f"/$interpret{query}", json=body, headers=AUTH)
    assert r.status_code == 400 and r.json["resourceType"] == "OperationOutcome", r.json
    assert says in r.json["issue"][0]["diagnostics"], r.json


def test_unknown_run_is_404_and_the_token_is_required(app: Any) -> None:
    c = app.test_client()
    for run_id in ("0123abc", "no%20such", "x" * 70):
        r = c.get(f"/$interpret/runs/{run_id}", headers=AUTH)
        assert r.status_code == 404 and r.json["resourceType"] == "OperationOutcome"
    assert c.get("/$interpret/runs/abc").status_code == 401
    assert c.post("/$interpret", json=params({"name": "all", "valueBoolean": True})).status_code == 401


def test_a_group_dry_run_stays_a_synchronous_batch(app: Any) -> None:
    """A dry run of a Group (or patients with a group) is the batch-response it was: a run would write."""
    import responses

    with responses.RequestsMock() as mock:
        mock.get(f"{BASE}/Group/g1", json={"resourceType": "Group", "id": "g1", "type": "person", "actual": True, "member": []})
        r = app.test_client().post("/$interpret?dry-run", json=params({"name": "group", "valueString": "g1"}), headers=AUTH)
    assert r.status_code == 200 and r.json["type"] == "batch-response"


def test_openapi_documents_runs(app: Any) -> None:
    doc = app.test_client().get("/openapi.json").json
    assert "202" in doc["paths"]["/$interpret"]["post"]["responses"]
    assert set(doc["paths"]["/$interpret/runs/{run_id}"]["get"]["responses"]) >= {"200", "404"}


def test_the_status_url_is_under_the_public_url_never_the_callers_host_header(tmp_path: Path) -> None:
    config = {"FHIR_BASE_URL": BASE, "MAPPINGS_DIR": str(SITE), "QUEUE_PATH": str(tmp_path / "q.db"), "API_TOKEN": TOKEN}
    body = params({"name": "all", "valueBoolean": True})
    evil = {**AUTH, "Host": "evil.example"}
    behind = create_app({**config, "PUBLIC_URL": "https://labinterp.hospital.example/api/"}).test_client()
    r = behind.post("/$interpret", json=body, headers=evil)
    assert r.status_code == 202
    assert r.headers["Content-Location"].startswith("https://labinterp.hospital.example/api/$interpret/runs/")
    assert "evil" not in r.get_data(as_text=True)
    plain = create_app({**config, "QUEUE_PATH": str(tmp_path / "q2.db")}).test_client()
    assert plain.post("/$interpret", json=body, headers=AUTH).headers["Content-Location"].startswith("http://localhost/")
