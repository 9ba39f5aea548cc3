"""CDS Hooks feedback: validated (card uuid, outcome, override reason, accepted suggestions, timestamp) and stored
durably in SQLite under LABINTERP_WORKDIR, without anything about the patient (not even the user's comment)."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest

from labinterp.server.app import create_app
from labinterp.server.cds import FEEDBACK_FILE
from tests.data.cds.cdskit import Signer, config, draft_orders, hook_body, prefetch_for, url

LZ_SIGN = "labinterp-linezolid-order-sign"
COMMENT = "Discussed with Mrs Example, MRN 99887766"


def post(client: Any, signer: Signer, path: str, body: Any) -> Any:
    return client.post(path, json=body, headers={"Authorization": f"Bearer {signer.token(url(path))}"})


def risk_card(app: Any, client: Any, signer: Signer) -> dict[str, Any]:
    """p14's linezolid order: the exposure risk card, with its trough suggestion."""
    prefetch = prefetch_for("p14", dict(app.extensions["labinterp.cds"].catalog[LZ_SIGN].prefetch))
    resp = post(client, signer, f"/cds-services/{LZ_SIGN}", hook_body("order-sign", "p14", prefetch, draft_orders("p14")[:1]))
    assert resp.status_code == 200
    return next(c for c in resp.get_json()["cards"] if "suggestions" in c)


def feedback(client: Any, signer: Signer, items: list[dict[str, Any]], service: str = LZ_SIGN) -> Any:
    return post(client, signer, f"/cds-services/{service}/feedback", {"feedback": items})


def rows(tmp_path: Path) -> list[sqlite3.Row]:
    db = sqlite3.connect(tmp_path / "work" / FEEDBACK_FILE)
    db.row_factory = sqlite3.Row
    try:
        return list(db.execute("SELECT * FROM feedback ORDER BY id"))
    finally:
        db.close()


def test_accepted_and_overridden_feedback_stored(app: Any, client: Any, signer: Signer, tmp_path: Path) -> None:
    card = risk_card(app, client, signer)
    suggestion = card["suggestions"][0]["uuid"]
    reason = card["overrideReasons"][0]
    accepted = {
        "card": card["uuid"],
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": suggestion}],
        "outcomeTimestamp": "2026-01-20T12:01:00Z",
    }
    overridden = {
        "card": card["uuid"],
        "outcome": "overridden",
        "overrideReason": {"reason": reason, "userComment": COMMENT},
        "outcomeTimestamp": "2026-01-20T13:01:00+01:00",
    }
    resp = feedback(client, signer, [accepted, overridden])
    assert resp.status_code == 200
    stored = rows(tmp_path)
    assert [r["outcome"] for r in stored] == ["accepted", "overridden"]
    assert stored[0]["kind"] == "linezolid-order-risk" and stored[0]["service"] == LZ_SIGN
    assert suggestion in stored[0]["accepted_suggestions"]
    assert (stored[1]["override_system"], stored[1]["override_code"]) == (reason["system"], reason["code"])
    assert stored[1]["has_comment"] == 1
    assert stored[1]["outcome_timestamp"] == "2026-01-20T13:01:00+01:00"
    # durable: a new app on the same WORKDIR reads the same file
    assert len(create_app(config(tmp_path, signer)).extensions["labinterp.cds"].store.rows()) == 2
    # nothing about the patient, not even the comment
    db_bytes = b"".join(p.read_bytes() for p in (tmp_path / "work").iterdir() if p.name.startswith(FEEDBACK_FILE))
    for secret in (b"p14", b"Patient/", b"Mrs Example", b"99887766", b"1952-02-29"):
        assert secret not in db_bytes


def test_feedback_on_an_unknown_card_is_stored_without_a_kind(client: Any, signer: Signer, tmp_path: Path) -> None:
    card = str(uuid.uuid4())
    resp = feedback(client, signer, [{"card": card, "outcome": "accepted", "outcomeTimestamp": "2026-01-20T12:00:00Z"}])
    assert resp.status_code == 200
    [row] = rows(tmp_path)
    assert row["card"] == card and row["kind"] is None


def test_card_of_another_service_refused(app: Any, client: Any, signer: Signer, tmp_path: Path) -> None:
    card = risk_card(app, client, signer)
    item = {"card": card["uuid"], "outcome": "accepted", "outcomeTimestamp": "2026-01-20T12:00:00Z"}
    resp = feedback(client, signer, [item], "labinterp-patient-view")
    assert resp.status_code == 400 and "another CDS service" in resp.get_json()["issue"][0]["diagnostics"]


GOOD = {"card": "6f1c1e5a-0c8a-4c3e-9d55-6e2f1a7b9c10", "outcome": "accepted", "outcomeTimestamp": "2026-01-20T12:00:00Z"}
BAD: dict[str, Any] = {
    "no feedback list": None,
    "empty list": [],
    "item not an object": ["accepted"],
    "card not a uuid": [dict(GOOD, card="card-1")],
    "no card": [{k: v for k, v in GOOD.items() if k != "card"}],
    "unknown outcome": [dict(GOOD, outcome="ignored")],
    "no timestamp": [{k: v for k, v in GOOD.items() if k != "outcomeTimestamp"}],
    "timestamp without a zone": [dict(GOOD, outcomeTimestamp="2026-01-20T12:00:00")],
    "timestamp not a date": [dict(GOOD, outcomeTimestamp="yesterday")],
    "suggestions not a list": [dict(GOOD, acceptedSuggestions={"id": "x"})],
    "suggestion id not a uuid": [dict(GOOD, acceptedSuggestions=[{"id": "x"}])],
    "suggestions with overridden": [dict(GOOD, outcome="overridden", acceptedSuggestions=[{"id": GOOD["card"]}])],
    "override reason with accepted": [dict(GOOD, overrideReason={"userComment": "no"})],
    "override reason not a Coding": [dict(GOOD, outcome="overridden", overrideReason={"reason": "nope"})],
    "override code not offered": [
        dict(
            GOOD,
            outcome="overridden",
            overrideReason={"reason": {"system": "urn:labinterp:cds-override-reason", "code": "bored"}},
        )
    ],
    "empty override reason": [dict(GOOD, outcome="overridden", overrideReason={})],
}


@pytest.mark.parametrize("case", list(BAD))
def test_malformed_feedback_is_400(client: Any, signer: Signer, tmp_path: Path, case: str) -> None:
    body = {"feedback": BAD[case]} if BAD[case] is not None else {"cards": []}
    resp = post(client, signer, f"/cds-services/{LZ_SIGN}/feedback", body)
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert resp.get_json()["resourceType"] == "OperationOutcome"
    assert not (tmp_path / "work" / FEEDBACK_FILE).exists() or rows(tmp_path) == []


def test_feedback_for_an_unknown_service_is_404(client: Any, signer: Signer) -> None:
    resp = feedback(client, signer, [GOOD], "no-such-service")
    assert resp.status_code == 404


def test_a_bad_item_stores_nothing(client: Any, signer: Signer, tmp_path: Path) -> None:
    resp = feedback(client, signer, [GOOD, dict(GOOD, outcome="maybe")])
    assert resp.status_code == 400 and "feedback[1].outcome" in resp.get_json()["issue"][0]["diagnostics"]
    assert not (tmp_path / "work" / FEEDBACK_FILE).exists() or rows(tmp_path) == []


def test_at_most_100_items_per_call(client: Any, signer: Signer, tmp_path: Path) -> None:
    many = [dict(GOOD, card=str(uuid.uuid4())) for _ in range(101)]
    resp = feedback(client, signer, many)
    assert resp.status_code == 400 and "at most 100" in resp.get_json()["issue"][0]["diagnostics"]
    assert not (tmp_path / "work" / FEEDBACK_FILE).exists() or rows(tmp_path) == []
    assert feedback(client, signer, many[:100]).status_code == 200
    assert len(rows(tmp_path)) == 100


@pytest.mark.parametrize(
    "item",
    [
        dict(GOOD, card="not-a-uuid"),
        dict(GOOD, card=""),
        dict(GOOD, card=12345),
        dict(GOOD, acceptedSuggestions=[{"id": str(uuid.uuid4())} for _ in range(11)]),
        dict(
            GOOD,
            outcome="overridden",
            overrideReason={"reason": {"system": "urn:example:" + "x" * 2000, "code": "c"}},
        ),
        dict(GOOD, outcome="overridden", overrideReason={"reason": {"system": "urn:example:reasons", "code": "c" * 300}}),
    ],
)
def test_every_item_is_bounded(client: Any, signer: Signer, tmp_path: Path, item: dict[str, Any]) -> None:
    resp = feedback(client, signer, [GOOD, item])
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert resp.get_json()["issue"][0]["diagnostics"].startswith("feedback[1]")
    assert not (tmp_path / "work" / FEEDBACK_FILE).exists() or rows(tmp_path) == []


def test_a_body_over_the_apps_limit_is_a_413_operation_outcome(tmp_path: Path, signer: Signer) -> None:
    app = create_app(config(tmp_path, signer))
    app.config["MAX_CONTENT_LENGTH"] = 1000
    client = app.test_client()
    items = [dict(GOOD, card=str(uuid.uuid4())) for _ in range(20)]  # about 2 kB
    for path, body in (
        (f"/cds-services/{LZ_SIGN}/feedback", {"feedback": items}),
        (f"/cds-services/{LZ_SIGN}", {"hook": "order-sign", "padding": "x" * 2000}),
    ):
        resp = post(client, signer, path, body)
        assert resp.status_code == 413, resp.get_data(as_text=True)
        outcome = resp.get_json()
        assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["code"] == "too-costly"
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert not (tmp_path / "work" / FEEDBACK_FILE).exists() or rows(tmp_path) == []
    small = post(client, signer, f"/cds-services/{LZ_SIGN}/feedback", {"feedback": [GOOD]})
    assert small.status_code == 200
