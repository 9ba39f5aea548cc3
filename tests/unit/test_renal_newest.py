"""Issue 7, clinical review of the renal rules: the newest renal result decides and the older one is stated
(never dropped silently); a reported eGFR given as a bound (">90", "<15", "<60") is judged by the side it
surely lies on; a creatinine on record that gives no estimate is named in the renal gate."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from labinterp.compose.renal import renal_line
from labinterp.knowledge import Knowledge
from labinterp.pipeline import interpret_bundle
from labinterp.rules.renal import RenalFinding, ckd_epi_2021, renal_gate, surely_below
from tests.builders import MG, SCR, P, loinc
from tests.conftest import NOW, findings_of

SAMPLE = "2026-01-16T09:00:00+01:00"
AT = datetime(2026, 1, 16, 8, 0, tzinfo=UTC)
EGFR = loinc("98979-8", "eGFR")
UCUM_GFR = "mL/min/{1.73_m2}"


def patient(scr: tuple[float, str] | None, egfr: tuple[float, str, str | None] | None, birth: str = "1960-01-01") -> P:
    """A 66-year-old woman with magnesium 1.3 mg/dL at SAMPLE, a creatinine (value, when) and a reported
    eGFR (value, when, comparator)."""
    p = P("n", "female", birth, "")
    p.lab(MG, 1.3, "mg/dL", SAMPLE)
    if scr is not None:
        p.lab(SCR, scr[0], "mg/dL", scr[1])
    if egfr is not None:
        p.lab(EGFR, egfr[0], "mL/min/1.73m2", egfr[1], ucum=UCUM_GFR, comparator=egfr[2])
    return p


def renal_of(p: P, k: Knowledge) -> RenalFinding:
    f = findings_of(p.bundle(), k)
    assert f.renal is not None
    return f.renal


def test_the_reviewers_case_a_newer_reported_egfr_wins_and_the_creatinine_is_stated(k: Knowledge) -> None:
    p = patient((3.0, "2026-01-02T09:00:00+01:00"), (90, SAMPLE, ">"))
    renal = renal_of(p, k)
    assert renal.equation == "reported" and renal.egfr == 90 and renal.egfr_comparator == ">" and not renal.computed
    assert renal.stage is not None and renal.stage.name == "G1"
    assert renal.creatinine is not None and renal.creatinine.value == 3.0
    assert "older creatinine 3 mg/dL (2026-01-02) is not used" in renal.superseded
    gate = renal_gate(renal, k.magnesium.renal.threshold, AT)
    assert gate.met is False and not gate.stale
    assert "eGFR >90 mL/min/1.73 m2 (reported by the laboratory, 2026-01-16)" in gate.text
    assert "older creatinine 3 mg/dL" in gate.text
    line = renal_line(renal, AT)
    assert "eGFR >90" in line and "KDIGO G1" in line and "not used" in line
    f = findings_of(p.bundle(), k)
    assert f.magnesium is not None and not f.magnesium.renal_reduction
    assert any(">90" in g and "older creatinine" in g for g in f.magnesium.guidance)  # said where the doses are


def test_the_reviewers_case_in_the_report(k: Knowledge) -> None:
    p = patient((3.0, "2026-01-02T09:00:00+01:00"), (90, SAMPLE, ">"))
    run = interpret_bundle(p.bundle(), k, NOW, render=False)
    report = next(
        e["resource"]
        for e in run.bundle["entry"]
        if e["resource"]["resourceType"] == "DiagnosticReport" and e["resource"]["conclusion"].startswith("Serum magnesium")
    )
    assert "eGFR >90" in report["conclusion"] and "2026-01-02" in report["conclusion"]
    assert "Renal gate met" not in report["conclusion"] and "20.9" not in report["text"]["div"]
    # no eGFR is derived from the superseded creatinine
    assert not any(e["resource"]["resourceType"] == "Observation" for e in run.bundle["entry"])


def test_neighbour_a_newer_creatinine_wins_and_the_older_egfr_is_stated(k: Knowledge) -> None:
    renal = renal_of(patient((3.0, SAMPLE), (90, "2026-01-02T09:00:00+01:00", ">")), k)
    assert renal.computed and renal.equation == "ckd_epi_2021"
    assert renal.egfr == pytest.approx(ckd_epi_2021(3.0, 66, "female", k.renal))
    assert "older reported eGFR >90" in renal.superseded and "(2026-01-02)" in renal.superseded
    gate = renal_gate(renal, 30.0, AT)
    assert gate.met is True and "older reported eGFR" in gate.text
    assert "not used" in renal_line(renal, AT)


def test_neighbour_the_same_specimen_uses_the_reported_egfr_and_says_nothing_superseded(k: Knowledge) -> None:
    renal = renal_of(patient((3.0, SAMPLE), (18, SAMPLE, None)), k)
    assert renal.equation == "reported" and renal.egfr == 18 and renal.superseded == ""
    assert renal_gate(renal, 30.0, AT).met is True


def test_a_newer_reported_egfr_alone_can_be_stale(k: Knowledge) -> None:
    renal = renal_of(patient((1.0, "2025-12-01T09:00:00+01:00"), (25, "2026-01-02T09:00:00+01:00", None)), k)
    gate = renal_gate(renal, 30.0, AT)
    assert gate.met is True and gate.stale and "the eGFR of 2026-01-02" in gate.text and "older creatinine" in gate.text


BOUNDS = [
    # (reported eGFR, comparator, gate met at 30, KDIGO stage or None)
    (90, ">", False, "G1"),
    (60, ">=", False, None),  # G2 or G1: no single stage, but surely not below 30
    (15, "<", True, "G5"),
    (30, "<", True, None),  # below 30: G4 or G5
    (60, "<", None, None),  # may lie on either side of 30
    (29, ">", None, None),
]


@pytest.mark.parametrize(("value", "comparator", "met", "stage"), BOUNDS)
def test_reported_bounds_judged_by_the_side_they_surely_lie_on(
    k: Knowledge, value: float, comparator: str, met: bool | None, stage: str | None
) -> None:
    renal = renal_of(patient(None, (value, SAMPLE, comparator)), k)
    assert renal.egfr == value and renal.egfr_comparator == comparator
    assert (renal.stage.name if renal.stage else None) == stage
    gate = renal_gate(renal, 30.0, AT)
    assert gate.met is met, gate.text
    assert f"eGFR {comparator}{value:g} " in gate.text
    line = renal_line(renal, AT)
    assert f"eGFR {comparator}{value:g} " in line and ("KDIGO stage not determinable" in line) is (stage is None)


def test_a_bound_that_may_be_below_30_asks_for_a_number_not_for_a_creatinine_on_record(k: Knowledge) -> None:
    f = findings_of(patient(None, (60, SAMPLE, "<")).bundle(), k)
    assert f.magnesium is not None
    first = f.magnesium.guidance[0]
    assert first.startswith("Renal function not assessable (may or may not be below 30 (a bound): eGFR <60")
    assert "numeric eGFR" in first and "check creatinine before" not in first


@pytest.mark.parametrize(
    ("value", "comparator", "below"),
    [
        (29, "", True),
        (30, "", False),
        (30, "<", True),
        (30, "<=", None),
        (29.9, "<=", True),
        (60, "<", None),
        (90, ">", False),
        (30, ">=", False),
        (29, ">", None),
        (29, ">=", None),
    ],
)
def test_surely_below(value: float, comparator: str, below: bool | None) -> None:
    assert surely_below(value, comparator, 30.0) is below


@pytest.mark.parametrize(
    ("value", "comparator", "state"), [(45, ">", "unknown"), (60, "<", "reduced"), (90, ">", None), (60, ">=", None)]
)
def test_femg_normal_renal_function_needs_a_measure_surely_at_or_above_60(
    k: Knowledge, value: float, comparator: str, state: str | None
) -> None:
    urine_mg, urine_cr = (
        loinc("19124-7", "Magnesium [Mass/volume] in Urine"),
        loinc("2161-8", "Creatinine [Mass/volume] in Urine"),
    )
    p = patient(None, (value, SAMPLE, comparator))
    p.lab(SCR, 0.8, "mg/dL", "2026-01-10T09:00:00+01:00")  # older: the reported bound decides renal function
    p.lab(urine_mg, 10, "mg/dL", SAMPLE)
    p.lab(urine_cr, 100, "mg/dL", SAMPLE)
    f = findings_of(p.bundle(), k)
    assert f.magnesium is not None and f.magnesium.femg is not None
    femg = f.magnesium.femg
    if state is None:  # normal renal function: FEMg 8.8 % read as renal wasting
        assert femg.renal_wasting is True
    else:
        assert femg.renal_wasting is None and f"renal function is {state}" in femg.text


def test_same_time_another_specimen_computes_and_states_the_reported_egfr(k: Knowledge) -> None:
    p = P("s", "female", "1960-01-01", "")
    p.lab(MG, 1.3, "mg/dL", SAMPLE)
    p.lab(SCR, 1.0, "mg/dL", SAMPLE, specimen="Specimen/a")
    p.lab(EGFR, 90, "mL/min/1.73m2", SAMPLE, ucum=UCUM_GFR, comparator=">", specimen="Specimen/b")
    renal = renal_of(p, k)
    assert renal.computed and "reported eGFR >90 mL/min/1.73 m2 (2026-01-16) from another specimen" in renal.superseded
    assert "{" not in renal.superseded  # the UCUM code's braces are not a reader's words
