"""Issue 7 point 8: renal gating on the safe side (seed 001 Treatment / Management: "creatinine clearance
less than 30 mL/min/1.73 m2"). The gate is met when the eGFR (reported or computed) or, with a weight, the
Cockcroft-Gault clearance is below the threshold; unknown sex computes both sexes; old creatinine is stale."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from labinterp.knowledge import Knowledge
from labinterp.pipeline import interpret_bundle
from labinterp.rules.renal import RenalFinding, ckd_epi_2021, cockcroft_gault, renal_gate
from tests.builders import MG, SCR, P, loinc
from tests.conftest import NOW, findings_of

WHEN = "2026-01-15T09:00:00+01:00"
SAMPLE = datetime(2026, 1, 15, 8, 0, tzinfo=UTC)
WEIGHT = loinc("29463-7", "Body weight")
EGFR = loinc("98979-8", "eGFR")


def patient(gender: str | None, birth: str | None, scr: float, kg: float | None = None, scr_when: str = WHEN) -> P:
    p = P("g", gender, birth, "")
    p.lab(MG, 1.3, "mg/dL", WHEN)
    p.lab(SCR, scr, "mg/dL", scr_when)
    if kg is not None:
        p.lab(WEIGHT, kg, "kg", "2026-01-10T08:00:00+01:00")
    return p


def renal_of(p: P, k: Knowledge) -> RenalFinding:
    f = findings_of(p.bundle(), k)
    assert f.renal is not None
    return f.renal


def test_no_renal_result_is_not_assessable() -> None:
    gate = renal_gate(None, 30.0)
    assert gate.met is None and gate.text.startswith("not assessable") and not gate.stale


# (sex, birth, creatinine, weight) -> which measures fall below 30. Ages at the sample: 1950 -> 76, 1941 -> 85.
CASES = [
    # eGFR alone below 30 (no weight): female 76 y, creatinine 1.9 mg/dL -> CKD-EPI 2021 about 27
    ("female", "1950-01-01", 1.9, None, True, ["eGFR"], []),
    # neighbour: creatinine 1.6 -> eGFR about 33, no weight: not met
    ("female", "1950-01-01", 1.6, None, False, [], ["eGFR"]),
    # Cockcroft-Gault alone below 30: female 85 y, 40 kg, creatinine 1.2 -> eGFR about 44, CG about 22
    ("female", "1941-01-01", 1.2, 40, True, ["Cockcroft-Gault"], ["eGFR"]),
    # neighbour: 70 kg -> CG about 38: not met
    ("female", "1941-01-01", 1.2, 70, False, [], ["eGFR", "Cockcroft-Gault"]),
    # both below
    ("male", "1941-01-01", 3.0, 60, True, ["eGFR", "Cockcroft-Gault"], []),
]


@pytest.mark.parametrize(("sex", "birth", "scr", "kg", "met", "below", "above"), CASES)
def test_gate_met_by_egfr_or_cockcroft_gault(
    k: Knowledge, sex: str, birth: str, scr: float, kg: float | None, met: bool, below: list[str], above: list[str]
) -> None:
    renal = renal_of(patient(sex, birth, scr, kg), k)
    gate = renal_gate(renal, k.magnesium.renal.threshold, SAMPLE)
    assert gate.met is met
    yes, _, no = gate.text.partition("not below")
    if met:
        for name in below:
            assert name in yes, gate.text
        for name in above:
            assert name in no, gate.text
    else:
        assert gate.text.startswith("not met") and all(name in gate.text for name in above)
    # the figures are the equations' own
    age = 2026 - int(birth[:4])  # birthdays on 1 January, sample on 15 January 2026: completed years
    assert renal.egfr == pytest.approx(ckd_epi_2021(scr, age, sex, k.renal))
    if kg is not None:
        assert renal.crcl == pytest.approx(cockcroft_gault(scr, age, kg, sex, k.renal))


def test_magnesium_dose_reduced_when_only_cockcroft_gault_is_below_30(k: Knowledge) -> None:
    f = findings_of(patient("female", "1941-01-01", 1.2, 40).bundle(), k)
    assert f.renal is not None and f.renal.egfr is not None and f.renal.egfr >= 30
    mg = f.magnesium
    assert mg is not None and mg.renal_reduction and mg.renal_gate is not None and mg.renal_gate.met
    assert "reduce the magnesium dose by 50 %" in mg.guidance[0] and "Cockcroft-Gault" in mg.guidance[0]
    g = findings_of(patient("female", "1941-01-01", 1.2, 70).bundle(), k)
    assert g.magnesium is not None and not g.magnesium.renal_reduction


@pytest.mark.parametrize("gender", [None, "unknown", "other"])
def test_unknown_sex_computes_both_and_gates_on_either(k: Knowledge, gender: str | None) -> None:
    # 76 y, creatinine 1.9: female about 27, male about 36 -> met by the female estimate, both stated
    renal = renal_of(patient(gender, "1950-01-01", 1.9), k)
    assert renal.egfr is None and renal.computed and "sex" in renal.why_not
    by = {e.sex: e for e in renal.by_sex}
    assert by["female"].egfr == pytest.approx(ckd_epi_2021(1.9, 76, "female", k.renal))
    assert by["male"].egfr == pytest.approx(ckd_epi_2021(1.9, 76, "male", k.renal))
    assert by["female"].egfr < 30 <= by["male"].egfr  # type: ignore[operator]
    gate = renal_gate(renal, 30.0, SAMPLE)
    assert gate.met is True and "if female" in gate.text and "if male" in gate.text
    assert f"{by['female'].egfr:.1f}" in gate.text and f"{by['male'].egfr:.1f}" in gate.text
    assert renal.function_value == pytest.approx(by["female"].egfr)
    # neighbour: creatinine 1.4 -> both sexes at or above 30: not met, both stated
    other = renal_of(patient(gender, "1950-01-01", 1.4), k)
    gate = renal_gate(other, 30.0, SAMPLE)
    assert gate.met is False and "if female" in gate.text and "if male" in gate.text


def test_unknown_sex_with_weight_computes_cockcroft_gault_for_both(k: Knowledge) -> None:
    renal = renal_of(patient(None, "1950-01-01", 1.3, 50), k)
    by = {e.sex: e for e in renal.by_sex}
    assert by["female"].crcl == pytest.approx(cockcroft_gault(1.3, 76, 50, "female", k.renal))
    assert by["male"].crcl == pytest.approx(cockcroft_gault(1.3, 76, 50, "male", k.renal))
    gate = renal_gate(renal, 30.0, SAMPLE)
    assert gate.met is True and "Cockcroft-Gault" in gate.text.partition("not below")[0]


def test_unknown_sex_derived_egfr_is_a_range_not_a_single_sex_value(k: Knowledge) -> None:
    run = interpret_bundle(patient(None, "1950-01-01", 1.9).bundle(), k, NOW, render=False)
    obs = [e["resource"] for e in run.bundle["entry"] if e["resource"]["resourceType"] == "Observation"]
    assert len(obs) == 1 and "valueQuantity" not in obs[0]
    low, high = obs[0]["valueRange"]["low"]["value"], obs[0]["valueRange"]["high"]["value"]
    assert low == pytest.approx(ckd_epi_2021(1.9, 76, "female", k.renal), abs=0.05)
    assert high == pytest.approx(ckd_epi_2021(1.9, 76, "male", k.renal), abs=0.05)
    assert "no single eGFR" in obs[0]["note"][0]["text"]
    reports = [e["resource"] for e in run.bundle["entry"] if e["resource"]["resourceType"] == "DiagnosticReport"]
    renal_report = next(r for r in reports if "if female" in r["conclusion"] and "if male" in r["conclusion"])
    assert "no single eGFR" in renal_report["conclusion"]


def test_reported_egfr_gates_with_unknown_sex(k: Knowledge) -> None:
    p = P("r", None, "1950-01-01", "")
    p.lab(MG, 1.3, "mg/dL", WHEN)
    p.lab(SCR, 1.9, "mg/dL", WHEN, specimen="Specimen/s1")
    p.lab(EGFR, 25, "mL/min/1.73m2", WHEN, ucum="mL/min/{1.73_m2}", specimen="Specimen/s1")
    renal = renal_of(p, k)
    assert renal.equation == "reported" and renal.egfr == 25
    gate = renal_gate(renal, 30.0, SAMPLE)
    assert gate.met is True and "reported by the laboratory" in gate.text


@pytest.mark.parametrize(
    ("days_before", "stale"),
    [(0, False), (6, False), (7, False), (8, True), (30, True), (-2, False)],  # -2: creatinine after the sample
)
def test_old_creatinine_is_stale(k: Knowledge, days_before: int, stale: bool) -> None:
    at = datetime(2026, 1, 15, 8, 0, tzinfo=UTC)
    when = (at - timedelta(days=days_before)).isoformat()
    p = P("s", "female", "1960-01-01", "")
    p.lab(MG, 1.3, "mg/dL", at.isoformat())
    p.lab(SCR, 1.0, "mg/dL", when)
    f = findings_of(p.bundle(), k)
    gate = renal_gate(f.renal, 30.0, at)
    assert gate.stale is stale and ("stale" in gate.text) is stale
    mg = f.magnesium
    assert mg is not None and mg.renal_gate is not None and mg.renal_gate.stale is stale
    assert any("stale" in g for g in mg.guidance) is stale
    assert k.renal.settings.creatinine_max_age_days == 7


def test_gate_not_assessable_for_a_child_without_reported_egfr(k: Knowledge) -> None:
    renal = renal_of(patient("male", "2014-01-01", 0.5), k)
    gate = renal_gate(renal, 30.0, SAMPLE)
    assert gate.met is None and "12 years old" in gate.text


def test_no_birth_date_gives_no_estimates(k: Knowledge) -> None:
    renal = renal_of(patient(None, None, 1.9), k)
    assert renal.egfr is None and renal.by_sex == () and "no birth date" in renal.why_not
    assert renal_gate(renal, 30.0).met is None


def test_magnesium_report_is_based_on_the_renal_inputs_it_used(k: Knowledge) -> None:
    p = patient("female", "1941-01-01", 1.2, 40)
    run = interpret_bundle(p.bundle(), k, NOW, render=False)
    report = next(
        e["resource"]
        for e in run.bundle["entry"]
        if e["resource"]["resourceType"] == "DiagnosticReport" and "magnesium" in e["resource"]["conclusion"].lower()
    )
    refs = " ".join(r["reference"] for r in report["result"])
    assert "g-lab2" in refs and "g-lab3" in refs  # the creatinine and the weight behind the renal gate
    assert "Renal gate (below 30): met" in report["text"]["div"]
