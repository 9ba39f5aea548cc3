"""When to draw the first linezolid trough (rules.first_trough): the trough-timing rule run on the planned schedule.
Seed 000 section 2.1: troughs at steady state (>= 72 h of therapy), one dosing interval +/- 20 min after a dose."""

from __future__ import annotations

from datetime import UTC, datetime

from labinterp.knowledge import Knowledge
from labinterp.rules.first_trough import first_trough
from tests.builders import LZD, P
from tests.conftest import record_of


def _order(p: P, k: Knowledge, when: str, every_h: float) -> tuple:
    p.med("MedicationRequest", LZD, when=when, dose_mg=600, every_h=every_h)
    record = record_of(p.bundle(), k)
    return record, next(m for m in record.medications if "linezolid" in m.drugs)


def test_q12h_order_first_trough_just_before_dose_7(k: Knowledge) -> None:
    record, order = _order(P("ft1", "male", "1960-01-01", ""), k, "2026-01-21T08:00:00+01:00", 12)
    ft = first_trough(record, k, order, datetime(2026, 1, 21, 6, 0, tzinfo=UTC))
    assert ft is not None and ft.dose == 7 and ft.therapy_h == 72
    assert ft.at == datetime(2026, 1, 24, 7, 0, tzinfo=UTC) and ft.when == "2026-01-24 08:00 (UTC+01:00)"


def test_q8h_order_first_trough_at_72_h(k: Knowledge) -> None:
    """Every 8 hours: 72 h of therapy is just before dose 10."""
    record, order = _order(P("ft2", "female", "1970-01-01", ""), k, "2026-01-21T06:00:00Z", 8)
    ft = first_trough(record, k, order, datetime(2026, 1, 21, 5, 0, tzinfo=UTC))
    assert ft is not None and ft.dose == 10 and ft.at == datetime(2026, 1, 24, 6, 0, tzinfo=UTC)
    assert "8 h +/- 20 min after dose 9" in ft.text


def test_never_in_the_past(k: Knowledge) -> None:
    """Ordered days ago and still running: the next valid trough from now, not one already missed."""
    record, order = _order(P("ft3", "male", "1960-01-01", ""), k, "2026-01-10T08:00:00Z", 12)
    now = datetime(2026, 1, 20, 9, 0, tzinfo=UTC)
    ft = first_trough(record, k, order, now)
    assert ft is not None and ft.at >= now and ft.at == datetime(2026, 1, 20, 20, 0, tzinfo=UTC)
