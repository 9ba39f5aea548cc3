"""When to draw the first linezolid trough (rules.first_trough): the trough-timing rule run on the planned schedule.
Seed 000 section 2.1: troughs at steady state (>= 72 h of therapy), one dosing interval +/- 20 min after a dose."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

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
    """A course running for days (doses recorded): the next valid trough from now, not one already missed."""
    p = P("ft3", "male", "1960-01-01", "")
    p.doses("2026-01-10T08:00:00+00:00", 20)  # every 12 h up to 2026-01-19 20:00
    record, order = _order(p, k, "2026-01-10T08:00:00Z", 12)
    now = datetime(2026, 1, 20, 9, 0, tzinfo=UTC)
    ft = first_trough(record, k, order, now)
    assert ft is not None and ft.at >= now and ft.at == datetime(2026, 1, 20, 20, 0, tzinfo=UTC)
    assert "the first recorded dose of the current course" in ft.text


def _odd_order(p: P, k: Knowledge, when: str, period: float, unit: str = "h") -> tuple:
    p.med("MedicationRequest", LZD, when=when, dose_mg=600, every_h=12)
    repeat = p.resources[-1]["dosageInstruction"][0]["timing"]["repeat"]
    repeat.update(period=period, periodUnit=unit)
    record = record_of(p.bundle(), k)
    return record, next(m for m in record.medications if "linezolid" in m.drugs)


@pytest.mark.parametrize(("period", "unit"), [(1e-9, "h"), (1e-6, "h"), (1, "s"), (1, "min"), (30, "d")])
def test_an_interval_no_trough_rule_reads_is_not_planned_and_costs_nothing(k: Knowledge, period: float, unit: str) -> None:
    """A hostile or garbled interval (a dose every nanosecond, every 30 days) must neither exhaust the host (the
    planned doses once grew without bound) nor produce a time: None, and the card says it cannot be planned."""
    record, order = _odd_order(P("ft4", "male", "1960-01-01", ""), k, "2026-01-20T08:00:00Z", period, unit)
    started = time.perf_counter()
    assert first_trough(record, k, order, datetime(2026, 1, 21, 6, 0, tzinfo=UTC)) is None
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize("start", ["0001-01-01T00:00:00Z", "9999-12-31T23:00:00+14:00", "2025-03-01T08:00:00Z"])
def test_a_start_long_past_counts_from_now_and_a_far_future_one_is_not_planned(k: Knowledge, start: str) -> None:
    record, order = _order(P("ft5", "male", "1960-01-01", ""), k, start, 12)
    now = datetime(2026, 1, 21, 6, 0, tzinfo=UTC)
    ft = first_trough(record, k, order, now)
    if start.startswith("9999"):
        assert ft is None
    else:  # no dose of that order is recorded: steady state is counted from now, not from a date long gone
        assert ft is not None and ft.dose == 7 and ft.at == datetime(2026, 1, 24, 6, 0, tzinfo=UTC) and "now" in ft.text
