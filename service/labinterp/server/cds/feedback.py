"""CDS Hooks feedback (`POST /cds-services/{id}/feedback`): validated and stored durably in SQLite
(WORKDIR/cds_feedback.sqlite3), without anything about the patient.

Stored per card issued: its uuid, the service, the card's kind (linezolid-tdm, magnesium-order, ...), its indicator
and when it was issued; per feedback item: the card, the outcome (accepted | overridden), the override reason's
system and code, the ids of the accepted suggestions, the outcome's timestamp, when it was received, and whether
the user left a comment. The comment itself is free text that may name the patient: it is never stored.

Bounded: at most MAX_ITEMS feedback items per call, MAX_ACCEPTED accepted suggestions per item, override reason
codes and systems of a bounded length (a 400 beyond); the request body is bounded by the app's MAX_CONTENT_LENGTH
(413)."""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from labinterp.server.cds.call import CallError
from labinterp.server.cds.cards import OVERRIDE_REASONS, OVERRIDE_SYSTEM

OUTCOMES = ("accepted", "overridden")
MAX_ITEMS = 100  # feedback items per call
MAX_ACCEPTED = 10  # accepted suggestions per item (a card carries one or two)
MAX_SYSTEM_CHARS, MAX_CODE_CHARS = 1024, 256
SCHEMA = """
CREATE TABLE IF NOT EXISTS cards (
    uuid TEXT PRIMARY KEY, service TEXT NOT NULL, kind TEXT NOT NULL, indicator TEXT NOT NULL, issued_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT, card TEXT NOT NULL, service TEXT NOT NULL, kind TEXT, outcome TEXT NOT NULL,
    override_system TEXT, override_code TEXT, accepted_suggestions TEXT NOT NULL, has_comment INTEGER NOT NULL,
    outcome_timestamp TEXT NOT NULL, received_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_card ON feedback (card);
"""


@dataclass(frozen=True)
class Feedback:
    card: str
    outcome: str
    outcome_timestamp: str
    accepted: tuple[str, ...] = ()
    override_system: str | None = None
    override_code: str | None = None
    has_comment: bool = False


def _uuid(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise CallError(where, "expected a UUID")
    try:
        return str(uuid.UUID(value.removeprefix("urn:uuid:")))
    except ValueError:
        raise CallError(where, "expected a UUID") from None


def _timestamp(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise CallError(where, "required: an ISO 8601 date and time with a time zone")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise CallError(where, "expected an ISO 8601 date and time with a time zone, e.g. 2026-01-20T12:00:00Z") from None
    if parsed.tzinfo is None:
        raise CallError(where, "the time zone is missing (e.g. Z or +01:00)")
    return parsed.isoformat()


def _override(value: Any, where: str) -> tuple[str | None, str | None, bool]:
    if not isinstance(value, dict):
        raise CallError(where, "expected an object with reason (a Coding) and/or userComment")
    reason, comment = value.get("reason"), value.get("userComment")
    if comment is not None and not isinstance(comment, str):
        raise CallError(f"{where}.userComment", "expected a text")
    if reason is None:
        if not comment:
            raise CallError(where, "give a reason (a Coding of the card's overrideReasons) or a userComment")
        return None, None, True
    if not isinstance(reason, dict) or not isinstance(reason.get("code"), str) or not isinstance(reason.get("system"), str):
        raise CallError(f"{where}.reason", "expected a Coding with system and code")
    if not reason["code"] or len(reason["code"]) > MAX_CODE_CHARS:
        raise CallError(f"{where}.reason.code", f"expected a code of 1 to {MAX_CODE_CHARS} characters")
    if not reason["system"] or len(reason["system"]) > MAX_SYSTEM_CHARS:
        raise CallError(f"{where}.reason.system", f"expected a system URI of 1 to {MAX_SYSTEM_CHARS} characters")
    if reason["system"] == OVERRIDE_SYSTEM and reason["code"] not in {c for c, _ in OVERRIDE_REASONS}:
        raise CallError(f"{where}.reason.code", "not one of the override reasons the cards offer")
    return reason["system"], reason["code"], bool(comment)


def parse_feedback(body: Any) -> list[Feedback]:
    """The feedback items of a request; CallError (400) naming the element when one has the wrong shape."""
    items = body.get("feedback") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise CallError("feedback", "required: a list of feedback items (card, outcome, outcomeTimestamp)")
    if len(items) > MAX_ITEMS:
        raise CallError("feedback", f"{len(items)} items: at most {MAX_ITEMS} per call; send the rest in another call")
    out = []
    for n, item in enumerate(items):
        where = f"feedback[{n}]"
        if not isinstance(item, dict):
            raise CallError(where, "expected an object")
        card = _uuid(item.get("card"), f"{where}.card")
        outcome = item.get("outcome")
        if outcome not in OUTCOMES:
            raise CallError(f"{where}.outcome", "expected accepted or overridden")
        stamp = _timestamp(item.get("outcomeTimestamp"), f"{where}.outcomeTimestamp")
        accepted: tuple[str, ...] = ()
        if item.get("acceptedSuggestions") is not None:
            given = item["acceptedSuggestions"]
            if outcome != "accepted":
                raise CallError(f"{where}.acceptedSuggestions", "only with the outcome accepted")
            if not isinstance(given, list) or not all(isinstance(s, dict) for s in given):
                raise CallError(f"{where}.acceptedSuggestions", 'expected a list of objects such as {"id": "<suggestion uuid>"}')
            if len(given) > MAX_ACCEPTED:
                raise CallError(f"{where}.acceptedSuggestions", f"at most {MAX_ACCEPTED} accepted suggestions per card")
            accepted = tuple(_uuid(s.get("id"), f"{where}.acceptedSuggestions[{i}].id") for i, s in enumerate(given))
        system = code = None
        comment = False
        if item.get("overrideReason") is not None:
            if outcome != "overridden":
                raise CallError(f"{where}.overrideReason", "only with the outcome overridden")
            system, code, comment = _override(item["overrideReason"], f"{where}.overrideReason")
        out.append(Feedback(card, outcome, stamp, accepted, system, code, comment))
    return out


class FeedbackStore:
    """The SQLite store, opened on first use (a service that never serves CDS Hooks creates no file)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._ready = False
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        with self._lock:
            if not self._ready:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with sqlite3.connect(self.path, timeout=10) as db:
                    db.execute("PRAGMA journal_mode=WAL")
                    db.executescript(SCHEMA)
                self._ready = True
        return sqlite3.connect(self.path, timeout=10)

    def issued(self, service: str, cards: list[tuple[str, str, str]], at: datetime) -> None:
        """Cards given out: (uuid, kind, indicator) each."""
        if not cards:
            return
        db = self._connect()
        try:
            with db:
                db.executemany(
                    "INSERT OR IGNORE INTO cards (uuid, service, kind, indicator, issued_at) VALUES (?, ?, ?, ?, ?)",
                    [(u, service, kind, indicator, at.isoformat()) for u, kind, indicator in cards],
                )
        finally:
            db.close()

    def record(self, service: str, items: list[Feedback], at: datetime) -> None:
        """Store the items, all or none; CallError when a card was issued by another service."""
        db = self._connect()
        try:
            with db:
                for n, item in enumerate(items):
                    row = db.execute("SELECT service, kind FROM cards WHERE uuid = ?", (item.card,)).fetchone()
                    if row is not None and row[0] != service:
                        raise CallError(f"feedback[{n}].card", "this card was issued by another CDS service")
                    db.execute(
                        "INSERT INTO feedback (card, service, kind, outcome, override_system, override_code, "
                        "accepted_suggestions, has_comment, outcome_timestamp, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            item.card,
                            service,
                            row[1] if row else None,
                            item.outcome,
                            item.override_system,
                            item.override_code,
                            json.dumps(list(item.accepted)),
                            int(item.has_comment),
                            item.outcome_timestamp,
                            at.isoformat(),
                        ),
                    )
        finally:
            db.close()

    def rows(self) -> list[dict[str, Any]]:
        """Every feedback row (for tests and a site's own analysis)."""
        db = self._connect()
        try:
            db.row_factory = sqlite3.Row
            return [dict(r) for r in db.execute("SELECT * FROM feedback ORDER BY id")]
        finally:
            db.close()
