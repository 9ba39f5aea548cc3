"""Issue 7, clinical review of the magnesium rules: electrolytes matched in time to the magnesium sample,
reduced doses printed in each dose sentence, a child's creatinine named (never "check creatinine" when one
is on record), converted values shown at a precision that cannot contradict the band, and the laboratory's
own flag stated when it disagrees with the source's category. Numbers from StatPearls: Hypomagnesemia
(mappings/magnesium.toml) and their everyday neighbours."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from labinterp.errors import MappingsError
from labinterp.knowledge import Knowledge, load_knowledge
from labinterp.pipeline import interpret_bundle
from labinterp.rules.magnesium import MagnesiumFinding, dose_sentence
from tests.builders import MG, MG_MOL, SCR, P, loinc
from tests.conftest import NOW, findings_of

SAMPLE = "2026-01-16T09:00:00+01:00"  # the magnesium sample
K = loinc("2823-3", "Potassium [Moles/volume] in Serum or Plasma")
CA = loinc("17861-6", "Calcium [Mass/volume] in Serum or Plasma")
CA_ION = loinc("1995-0", "Calcium.ionized [Moles/volume] in Serum or Plasma")
WEIGHT = loinc("29463-7", "Body weight")
EGFR = loinc("98979-8", "eGFR")


def mg_of(p: P, k: Knowledge) -> MagnesiumFinding:
    f = findings_of(p.bundle(), k)
    assert f.magnesium is not None
    return f.magnesium


def conclusion(p: P, k: Knowledge) -> str:
    run = interpret_bundle(p.bundle(), k, NOW, render=False)
    return next(
        e["resource"]["conclusion"]
        for e in run.bundle["entry"]
        if e["resource"]["resourceType"] == "DiagnosticReport" and e["resource"]["conclusion"].startswith("Serum magnesium")
    )


def adult(mg: float = 1.3, scr: float | None = 0.8) -> P:
    p = P("a", "female", "1960-01-01", "")
    p.lab(MG, mg, "mg/dL", SAMPLE)
    if scr is not None:
        p.lab(SCR, scr, "mg/dL", SAMPLE)
    return p


# --- 1. potassium and calcium matched in time to the magnesium sample ------------------------------

POTASSIUM = [
    # (potassium results (value, when), hypokalemia, judged value or None, words expected, note)
    (
        [(3.0, "2025-10-16T09:00:00+01:00")],
        False,
        None,
        ["from 24 h before to 24 h after", "3 mmol/L (2025-10-16, 92 days before"],
        "3 months old",
    ),
    (
        [(4.2, SAMPLE), (3.1, "2026-01-19T09:00:00+01:00")],
        False,
        4.2,
        ["3.1 mmol/L (2026-01-19, 3 days after this sample)"],
        "the sample's own potassium is normal; a later low one is not this sample's",
    ),
    ([(3.0, "2026-01-15T10:00:00+01:00")], True, 3.0, [], "23 h before: within the window"),
    ([(3.0, "2026-01-15T08:00:00+01:00")], False, None, ["from 24 h before", "25 h before"], "25 h before: outside"),
    ([(3.0, "2026-01-16T10:00:00+01:00")], True, 3.0, ["1 h after this sample: low"], "1 h after: within the window, counts"),
    ([(3.0, "2026-01-16")], True, 3.0, [], "dated by day only, on the sample's day: at the sample"),
    (
        [(3.0, "2026-01-15T13:00:00+01:00"), (4.0, "2026-01-16T07:00:00+01:00")],
        True,
        3.0,
        ["20 h before this sample: low", "Nearest this sample: potassium 4 mmol/L, 2026-01-16, 2 h before"],
        "two within the window, the older one low: the low one counts, the nearest is quoted beside it",
    ),
    (
        [(4.0, "2026-01-15T13:00:00+01:00"), (3.2, "2026-01-16T07:00:00+01:00")],
        True,
        3.2,
        [],
        "and the other way round",
    ),
]


@pytest.mark.parametrize(("results", "hypo", "judged", "words", "note"), POTASSIUM)
def test_potassium_is_judged_in_the_window_around_the_sample(
    k: Knowledge, results: list[tuple[float, str]], hypo: bool, judged: float | None, words: list[str], note: str
) -> None:
    p = adult()
    for value, when in results:
        p.lab(K, value, "mmol/L", when)
    f = mg_of(p, k)
    assert f.hypokalemia is hypo, note
    potassium = [j for j in f.judged if j.name == "potassium"]
    assert [j.m.value for j in potassium] == ([judged] if judged is not None else []), note
    text = " ".join(f.electrolytes)
    for w in words:
        assert w in text, (note, w, text)
    if judged is None:
        assert "check potassium" in text and "Hypokalemia present" not in text, note
    assert f.arrhythmia_risk == ("moderate" if hypo else "low"), note


def test_the_reviewers_old_potassium_is_not_hypokalemia_in_the_report(k: Knowledge) -> None:
    p = adult()
    p.lab(K, 3.0, "mmol/L", "2025-10-16T09:00:00+01:00")
    text = conclusion(p, k)
    assert "Hypokalemia present" not in text and "hypokalemia" not in text.split("Guidance:")[0]
    assert "No potassium result from 24 h before to 24 h after this magnesium sample: check potassium" in text
    assert "2025-10-16" in text


def test_no_potassium_at_all_still_says_check_potassium(k: Knowledge) -> None:
    f = mg_of(adult(), k)
    assert k.magnesium.electrolytes.check_potassium_text in f.electrolytes


def test_calcium_matched_in_time_too(k: Knowledge) -> None:
    p = adult()
    p.lab(CA, 7.9, "mg/dL", "2025-12-01T09:00:00+01:00")  # old and low: not this sample's
    f = mg_of(p, k)
    text = " ".join(f.electrolytes)
    assert not f.hypocalcemia and "No calcium result from 24 h before to 24 h after" in text
    assert "total calcium 7.9 mg/dL (2025-12-01" in text
    q = adult()
    q.lab(CA, 7.9, "mg/dL", "2026-01-16T06:00:00+01:00")
    assert mg_of(q, k).hypocalcemia


def test_ionized_within_and_total_old_the_ionized_decides_quietly(k: Knowledge) -> None:
    p = adult()
    p.lab(CA, 7.9, "mg/dL", "2025-12-01T09:00:00+01:00")
    p.lab(CA_ION, 1.20, "mmol/L", SAMPLE)
    f = mg_of(p, k)
    assert not f.hypocalcemia and not any("check calcium" in e for e in f.electrolytes)
    assert not any("2025-12-01" in e for e in f.electrolytes)  # an older total is not news when the ionized decides


def test_undated_magnesium_sample_matches_no_electrolyte(k: Knowledge) -> None:
    p = P("u", "female", "1960-01-01", "")
    p.lab(MG, 1.3, "mg/dL", "")
    p.lab(K, 3.0, "mmol/L", SAMPLE)
    f = mg_of(p, k)
    text = " ".join(f.electrolytes)
    assert not f.hypokalemia and "has no date" in text and "3 mmol/L (2026-01-16)" in text


def test_electrolyte_window_is_a_sourced_labinterp_choice(k: Knowledge) -> None:
    e = k.magnesium.electrolytes
    assert e.max_age_hours == 24
    assert e.max_age_source.startswith("labinterp choice") and "reason" in e.max_age_source
    assert e.max_age_hours < k.renal.settings.creatinine_max_age_days * 24


# --- 2. with the renal gate met, every dose sentence carries the reduced figures -----------------


def test_severe_with_renal_gate_met_prints_the_reduced_grams(k: Knowledge) -> None:
    p = P("r", "female", "1941-01-01", "")  # 85 y, creatinine 3.0: eGFR about 15
    p.lab(MG, 1.0, "mg/dL", SAMPLE)
    p.lab(SCR, 3.0, "mg/dL", SAMPLE)
    f = mg_of(p, k)
    assert f.renal_reduction
    text = " ".join(f.guidance)
    assert "Hemodynamically unstable: 0.5-1 g magnesium sulfate IV over about 15 minutes" in text
    assert "Symptomatic severe hypomagnesemia, stable: 0.5-1 g magnesium sulfate IV over 1 hour" in text
    assert "Non-emergent repletion (adult): 2-4 g magnesium sulfate" in text
    assert "from the source's 1-2 g" in text and "from the source's 4-8 g" in text
    # a full figure never stands as the dose to give
    assert not re.search(r": (1-2|4-8) g magnesium sulfate", text), text
    assert "already reduced by 50 %" in f.guidance[1]
    assert f.guidance[0].startswith(k.magnesium.renal.text)  # the line quoted alone stays whole


def test_mild_with_renal_gate_met_reduces_the_oral_dose_too(k: Knowledge) -> None:
    p = P("r", "female", "1941-01-01", "")
    p.lab(MG, 1.3, "mg/dL", SAMPLE)
    p.lab(SCR, 3.0, "mg/dL", SAMPLE)
    text = " ".join(mg_of(p, k).guidance)
    assert "2-4 g magnesium sulfate given slowly over 12-24 hours" in text
    assert "reduce the usual oral dose by 50 %" in text


def test_renal_gate_not_met_prints_the_sources_figures(k: Knowledge) -> None:
    f = mg_of(adult(1.0), k)
    text = " ".join(f.guidance)
    assert not f.renal_reduction
    assert "Hemodynamically unstable: 1-2 g magnesium sulfate IV over about 15 minutes." in text
    assert "4-8 g magnesium sulfate" in text and "reduced" not in text


@pytest.mark.parametrize(("key", "full", "reduced"), [("unstable", "1-2 g", "0.5-1 g"), ("non_emergent", "4-8 g", "2-4 g")])
def test_dose_sentences_are_computed_from_mappings(k: Knowledge, key: str, full: str, reduced: str) -> None:
    low, high = k.magnesium.guidance.doses_g[key]  # type: ignore[index]
    assert full == f"{low:g}-{high:g} g"
    assert f": {full} " in dose_sentence(key, False, k)
    assert f": {reduced} " in dose_sentence(key, True, k) and f"source's {full}" in dose_sentence(key, True, k)


def test_a_sites_reduction_changes_every_figure(tmp_path: Path) -> None:
    (tmp_path / "magnesium.toml").write_text("[renal]\ndose_reduction = 0.25\n")
    site = load_knowledge(tmp_path)
    assert ": 0.75-1.5 g magnesium sulfate IV" in dose_sentence("unstable", True, site)
    assert ": 3-6 g magnesium sulfate" in dose_sentence("non_emergent", True, site)
    assert "reduced by 25 %" in dose_sentence("non_emergent", True, site)


def test_a_dose_text_without_its_figures_is_a_load_error(tmp_path: Path) -> None:
    (tmp_path / "magnesium.toml").write_text('[guidance]\nunstable = "Hemodynamically unstable: 1-2 g IV."\n')
    with pytest.raises(MappingsError, match="doses_g"):
        load_knowledge(tmp_path)


def test_child_with_renal_gate_met_gets_halved_mg_and_mg_per_kg(k: Knowledge) -> None:
    p = P("c", "female", "2016-01-01", "")
    p.lab(MG, 1.3, "mg/dL", SAMPLE)
    p.lab(WEIGHT, 20, "kg", "2026-01-10")
    p.lab(SCR, 2.0, "mg/dL", SAMPLE, specimen="Specimen/s1")
    p.lab(EGFR, 20, "mL/min/1.73m2", SAMPLE, ucum="mL/min/{1.73_m2}", specimen="Specimen/s1")
    f = mg_of(p, k)
    dose = next(g for g in f.guidance if g.startswith("Child"))
    assert f.renal_reduction and "= 500-1000 mg" in dose and "250-500 mg = 12.5-25 mg/kg, at most 1 g" in dose


# --- 4. a child's creatinine is named, never "check creatinine" -----------------------------------


def child(scr: float | None, kg: float | None = 30) -> P:
    p = P("c", "male", "2015-06-01", "")  # 10 years at the sample
    p.lab(MG, 1.3, "mg/dL", SAMPLE)
    if scr is not None:
        p.lab(SCR, scr, "mg/dL", SAMPLE)
    if kg is not None:
        p.lab(WEIGHT, kg, "kg", "2026-01-10")
    return p


def test_child_with_creatinine_on_record(k: Knowledge) -> None:
    f = mg_of(child(3.0), k)
    text = " ".join(f.guidance)
    assert f.child and not f.renal_reduction and f.renal_gate is not None and f.renal_gate.met is None
    assert "check creatinine" not in text.lower()
    first = f.guidance[0]
    assert "Creatinine 3 mg/dL of 2026-01-16 is on record" in first
    assert "cannot be estimated for a child from creatinine alone" in first and "height" in first
    assert "paediatric team" in first and "375-750 mg = 12.5-25 mg/kg, at most 1 g" in first
    assert "750-1500 mg" in text  # the full dose stays the dose; the reduction is a consideration
    assert any(m.analyte == "creatinine" for m in f.inputs)  # the creatinine it names is a basis of the report


def test_child_with_creatinine_and_no_weight(k: Knowledge) -> None:
    f = mg_of(child(3.0, None), k)
    assert "12.5-25 mg/kg, at most 1 g" in f.guidance[0] and "weight needed" in " ".join(f.guidance)


def test_child_without_creatinine_is_asked_for_one(k: Knowledge) -> None:
    f = mg_of(child(None), k)
    assert f.guidance[0].startswith("Renal function not assessable (no creatinine or eGFR result): check creatinine")


def test_child_renal_gate_says_why(k: Knowledge) -> None:
    f = mg_of(child(3.0), k)
    assert f.renal_gate is not None
    gate = f.renal_gate.text
    assert "creatinine 3 mg/dL (2026-01-16) on record, but no eGFR" in gate and "10 years old" in gate and "height" in gate


def test_adult_without_birth_date_names_the_creatinine(k: Knowledge) -> None:
    p = P("n", "female", None, "")
    p.lab(MG, 1.3, "mg/dL", SAMPLE)
    p.lab(SCR, 1.9, "mg/dL", SAMPLE)
    f = mg_of(p, k)
    first = f.guidance[0]
    assert "from the creatinine on record (1.9 mg/dL of 2026-01-16)" in first and "no birth date" in first
    assert "check creatinine" not in first


def test_hypermagnesemia_with_creatinine_but_no_estimate(k: Knowledge) -> None:
    p = P("h", "female", None, "")
    p.lab(MG, 3.5, "mg/dL", SAMPLE)
    p.lab(SCR, 1.9, "mg/dL", SAMPLE)
    text = " ".join(mg_of(p, k).guidance)
    head = k.magnesium.hypermagnesemia.renal_unknown_on_record.split(" ({why})")[0]
    assert f"{head} (" in text and "check creatinine" not in text


# --- 5. a converted value never reads as contradicting its band -----------------------------------

CONVERTED = [
    # (value, unit, UCUM, band, shown, edge words or None)
    (
        0.99,
        "mEq/L",
        "meq/L",
        "severe_hypomagnesemia",
        "(1.203 mg/dL)",
        "above the 1.2 mg/dL edge, which at the source's precision is 1 meq/L",
    ),
    (1.0, "mEq/L", "meq/L", "hypomagnesemia", "(1.216 mg/dL)", None),
    (1.19, "mEq/L", "meq/L", "hypomagnesemia", "(1.446 mg/dL)", None),
    (1.2, "mEq/L", "meq/L", "normal", "(1.459 mg/dL)", "below the 1.46 mg/dL edge, which at the source's precision is 1.2 meq/L"),
    (0.49, "mmol/L", None, "severe_hypomagnesemia", "(1.191 mg/dL)", None),
    (0.5, "mmol/L", None, "hypomagnesemia", "(1.216 mg/dL)", None),
    (0.6, "mmol/L", None, "normal", "(1.459 mg/dL)", "below the 1.46 mg/dL edge, which at the source's precision is 0.6 mmol/L"),
    (1.1, "mmol/L", None, "normal", "(2.674 mg/dL)", None),
    (14.59, "mg/L", None, "hypomagnesemia", "(1.459 mg/dL)", None),  # a mass unit: compared in mg/dL
]


@pytest.mark.parametrize(("value", "unit", "ucum", "band", "shown", "edge"), CONVERTED)
def test_converted_value_shown_to_three_decimals(
    k: Knowledge, value: float, unit: str, ucum: str | None, band: str, shown: str, edge: str | None
) -> None:
    p = P("v", "female", "1960-01-01", "")
    p.lab(MG if unit.startswith("mg") else MG_MOL, value, unit, SAMPLE, ucum=ucum)
    p.lab(SCR, 0.8, "mg/dL", SAMPLE)
    f = mg_of(p, k)
    assert f.band is not None and f.band.name == band
    first = conclusion(p, k).split(". ")[0]
    assert shown in first, first
    if edge is None:
        assert f.conversion_note == ""
    else:
        assert edge in f.conversion_note and "judged in the unit the laboratory reported" in first


def test_the_reviewers_meq_value_reads_consistently(k: Knowledge) -> None:
    p = P("v", "female", "1960-01-01", "")
    p.lab(MG_MOL, 0.99, "mEq/L", SAMPLE, ucum="meq/L")
    text = conclusion(p, k)
    assert "(1.20 mg/dL)" not in text
    assert "compared in meq/L at the source's precision: below 1 meq/L" in text


# --- 6. the laboratory's own flag or range, when it disagrees --------------------------------------

LAB = [
    # (value, unit, flag, laboratory low, band, expected words or None for no note)
    (
        0.65,
        "mmol/L",
        "L",
        0.7,
        "normal",
        [
            "The laboratory flags this result low (L; its reference range from 0.7 mmol/L)",
            "by the source's limits (normal 0.6-1.1 mmol/L, 1.46-2.68 mg/dL) it is normal",
            "The source's category is kept",
        ],
    ),
    (0.65, "mmol/L", None, None, "normal", None),  # the laboratory says nothing
    (0.65, "mmol/L", None, 0.7, "normal", ["puts this result below its reference range from 0.7 mmol/L"]),
    (0.65, "mmol/L", "N", 0.6, "normal", None),  # agrees
    (0.55, "mmol/L", "L", 0.7, "hypomagnesemia", None),  # agrees
    (
        1.4,
        "mg/dL",
        "N",
        1.3,
        "hypomagnesemia",
        ["flags this result normal (N; its reference range from 1.3 mg/dL)", "it is hypomagnesemia"],
    ),
    (2.9, "mg/dL", "H", None, "hypermagnesemia", None),  # agrees
]


@pytest.mark.parametrize(("value", "unit", "flag", "low", "band", "words"), LAB)
def test_laboratory_flag_stated_when_it_disagrees(
    k: Knowledge, value: float, unit: str, flag: str | None, low: float | None, band: str, words: list[str] | None
) -> None:
    p = P("l", "female", "1960-01-01", "")
    p.lab(MG if unit == "mg/dL" else MG_MOL, value, unit, SAMPLE, flag=flag, low=low)
    p.lab(SCR, 0.8, "mg/dL", SAMPLE)
    f = mg_of(p, k)
    assert f.band is not None and f.band.name == band  # the source's category is kept
    if words is None:
        assert f.lab_note == ""
        return
    for w in words:
        assert w in f.lab_note, (w, f.lab_note)
    assert f.lab_note in conclusion(p, k)


def test_the_reviewers_flagged_result_keeps_code_n(k: Knowledge) -> None:
    p = P("l", "female", "1960-01-01", "")
    p.lab(MG_MOL, 0.65, "mmol/L", SAMPLE, flag="L", low=0.7)
    run = interpret_bundle(p.bundle(), k, NOW, render=False)
    report: dict[str, Any] = next(
        e["resource"] for e in run.bundle["entry"] if e["resource"]["resourceType"] == "DiagnosticReport"
    )
    codes = [c["code"] for cc in report["conclusionCode"] for c in cc["coding"]]
    assert codes == ["N"] and "flags this result low" in report["conclusion"]
    assert "seed 0" not in report["conclusion"].lower()
