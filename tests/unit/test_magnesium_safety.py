"""Issue 7, magnesium points: children's doses (7), boundaries at the source's precision and
hypermagnesemia (9), potassium and calcium judged and counted in the arrhythmia risk (10).
Numbers from seed 001 (StatPearls, Hypomagnesemia) and their everyday neighbours."""

from __future__ import annotations

import json
from typing import Any

import pytest

from labinterp.knowledge import Knowledge
from labinterp.pipeline import interpret_bundle
from labinterp.rules.magnesium import MagnesiumFinding
from tests.builders import ATC, MG, MG_MOL, SCR, P, loinc
from tests.conftest import NOW, findings_of

WHEN = "2026-01-15T09:00:00+01:00"  # the magnesium sample
WEIGHT = loinc("29463-7", "Body weight")
EGFR = loinc("98979-8", "eGFR")
K = loinc("2823-3", "Potassium [Moles/volume] in Serum or Plasma")
CA = loinc("17861-6", "Calcium [Mass/volume] in Serum or Plasma")
CA_MOL = loinc("2000-8", "Calcium [Moles/volume] in Serum or Plasma")
CA_ION = loinc("1995-0", "Calcium.ionized [Moles/volume] in Serum or Plasma")
ADULT_DOSES = ("1-2 g", "4-8 g", "15 minutes", "over 1 hour", "sustained-release oral")


def mg_of(p: P, k: Knowledge) -> MagnesiumFinding:
    f = findings_of(p.bundle(), k)
    assert f.magnesium is not None
    return f.magnesium


def child(birth: str, mg: float = 1.3, weights: tuple[tuple[float, str], ...] = ()) -> P:
    p = P("c", "female", birth, "")
    p.lab(MG, mg, "mg/dL", WHEN)
    for kg, when in weights:
        p.lab(WEIGHT, kg, "kg", when)
    return p


# --- point 7: children -------------------------------------------------------------------------

CHILDREN = [
    # (birth, magnesium, weights, expected words, note). Sample 2026-01-15; 25-50 mg/kg, at most 2 g.
    ("2016-01-01", 1.3, ((20, "2026-01-10"),), ["500-1000 mg", "20 kg (2026-01-10"], "10 y, 20 kg"),
    ("2016-01-01", 1.0, ((20, "2026-01-10"),), ["500-1000 mg"], "severe, still no adult doses"),
    ("2010-01-01", 1.3, ((60, "2026-01-10"),), ["1500-2000 mg", "capped at the 2 g maximum", "3000 mg"], "16 y, 60 kg"),
    ("2010-01-01", 1.3, ((40, "2026-01-10"),), ["1000-2000 mg"], "40 kg: 50 mg/kg is exactly the maximum"),
    ("2012-01-01", 1.3, ((100, "2026-01-10"),), ["2000 mg, the 2 g maximum", "2500 mg"], "both ends capped"),
    ("2008-01-16", 1.3, ((30, "2026-01-10"),), ["750-1500 mg", "Child (17 years)"], "the day before the 18th birthday"),
    (
        "2016-01-01",
        1.3,
        ((18, "2025-06-01"), (20, "2026-01-14"), (25, "2026-01-16")),
        ["500-1000 mg", "2026-01-14"],
        "the weight nearest before the sample, not a later one",
    ),
]


@pytest.mark.parametrize(("birth", "mg", "weights", "expected", "note"), CHILDREN)
def test_child_dose_for_weight(k: Knowledge, birth: str, mg: float, weights: Any, expected: list[str], note: str) -> None:
    f = mg_of(child(birth, mg, weights), k)
    text = " ".join(f.guidance)
    assert f.child, note
    for words in expected:
        assert words in text, (note, words, text)
    for adult in ADULT_DOSES:
        assert adult not in text, (note, adult)
    assert "25-50 mg/kg" in text


def test_eighteenth_birthday_gets_adult_doses(k: Knowledge) -> None:
    f = mg_of(child("2008-01-15", 1.3, ((70, "2026-01-10"),)), k)
    assert not f.child and any("4-8 g" in g for g in f.guidance) and not any("mg/kg" in g for g in f.guidance)


@pytest.mark.parametrize(
    "weights",
    [(), ((20, "2026-01-16"),)],  # no weight; only a weight taken after the sample
)
def test_child_without_weight_needs_one(k: Knowledge, weights: Any) -> None:
    f = mg_of(child("2016-01-01", 1.3, weights), k)
    text = " ".join(f.guidance)
    assert "weight needed" in text and "29463-7" in text and " mg (" not in text
    assert not any(adult in text for adult in ADULT_DOSES)


def test_child_dose_halved_when_the_renal_gate_is_met(k: Knowledge) -> None:
    p = child("2016-01-01", 1.3, ((20, "2026-01-10"),))
    p.lab(SCR, 2.0, "mg/dL", WHEN, specimen="Specimen/s1")
    p.lab(EGFR, 20, "mL/min/1.73m2", WHEN, ucum="mL/min/{1.73_m2}", specimen="Specimen/s1")
    f = mg_of(p, k)
    assert f.renal_reduction and any("500-1000 mg" in g and "250-500 mg" in g for g in f.guidance)


def test_unknown_age_says_adult_doses_and_the_childrens_dose(k: Knowledge) -> None:
    p = P("a", "female", None, "")
    p.lab(MG, 1.3, "mg/dL", WHEN)
    f = mg_of(p, k)
    assert not f.child and any("Age unknown" in g and "25-50 mg/kg" in g for g in f.guidance)


# --- point 9: boundaries in the reported unit, at the source's precision ------------------------

BOUNDARIES = [
    # mg/dL: the source's own edges (1.2, 1.46, 2.68)
    (1.19, "mg/dL", None, "severe_hypomagnesemia"),
    (1.2, "mg/dL", None, "hypomagnesemia"),
    (1.459, "mg/dL", None, "hypomagnesemia"),
    (1.46, "mg/dL", None, "normal"),
    (2.68, "mg/dL", None, "normal"),
    (2.681, "mg/dL", None, "hypermagnesemia"),
    # mmol/L: 0.5 (the source), 0.6 and 1.1 (its edges rounded as it rounds)
    (0.49, "mmol/L", None, "severe_hypomagnesemia"),
    (0.5, "mmol/L", None, "hypomagnesemia"),
    (0.59, "mmol/L", None, "hypomagnesemia"),
    (0.60, "mmol/L", None, "normal"),  # 0.60 x 2.431 = 1.4586 mg/dL: the source's lower limit, not low
    (0.61, "mmol/L", None, "normal"),
    (1.10, "mmol/L", None, "normal"),
    (1.11, "mmol/L", None, "hypermagnesemia"),
    # mEq/L: 1 (the source), 1.2 and 2.2
    (0.99, "mEq/L", "meq/L", "severe_hypomagnesemia"),
    (1.0, "mEq/L", "meq/L", "hypomagnesemia"),
    (1.19, "mEq/L", "meq/L", "hypomagnesemia"),
    (1.2, "mEq/L", "meq/L", "normal"),
    (2.2, "mEq/L", "meq/L", "normal"),
    (2.21, "mEq/L", "meq/L", "hypermagnesemia"),
    # a mass unit: converted to mg/dL, compared there
    (14.59, "mg/L", None, "hypomagnesemia"),
    (14.6, "mg/L", None, "normal"),
]


@pytest.mark.parametrize(("value", "unit", "ucum", "band"), BOUNDARIES)
def test_boundaries_as_the_source_rounds_them(k: Knowledge, value: float, unit: str, ucum: str | None, band: str) -> None:
    p = P("b", "female", "1960-01-01", "")
    p.lab(MG if unit.startswith("mg") else MG_MOL, value, unit, WHEN, ucum=ucum)
    p.lab(SCR, 0.8, "mg/dL", WHEN)
    f = mg_of(p, k)
    assert f.band is not None and f.band.name == band, (value, unit)


def test_comparator_in_mmol_is_judged_in_mmol(k: Knowledge) -> None:
    p = P("b", "female", "1960-01-01", "")
    p.lab(MG_MOL, 0.5, "mmol/L", WHEN, comparator="<")
    f = mg_of(p, k)
    assert f.band is not None and f.band.name == "severe_hypomagnesemia"


def test_unit_edges_are_the_bands_rounded_as_the_source_rounds(k: Knowledge) -> None:
    mg_dl_edges = [b.upper for b in k.magnesium.bands[:-1]]
    for u in k.magnesium.unit_edges:
        factor = k.unit_factor("magnesium", u.unit)
        assert factor is not None
        assert list(u.edges) == [round(e / factor, 1) for e in mg_dl_edges if e is not None], u.unit


def test_point_six_mmol_report_reads_normal(k: Knowledge) -> None:
    p = P("b", "female", "1960-01-01", "")
    p.lab(MG_MOL, 0.60, "mmol/L", WHEN)
    run = interpret_bundle(p.bundle(), k, NOW, render=False)
    report = next(e["resource"] for e in run.bundle["entry"] if e["resource"]["resourceType"] == "DiagnosticReport")
    codes = [c["code"] for cc in report["conclusionCode"] for c in cc["coding"]]
    assert codes == ["N"] and "compared in mmol/L" in report["conclusion"]
    assert not any(e["resource"]["resourceType"] == "RiskAssessment" for e in run.bundle["entry"])


HYPER = [
    # (magnesium mg/dL, flag, creatinine, medication, expected words)
    (2.9, None, 0.8, None, ["no grades", "No magnesium repletion", "No magnesium-containing therapy"]),
    (8.0, "HH", 0.8, None, ["no grades", "flags this result as critical (HH)"]),
    (3.5, None, 3.0, "Magnesium sulfate 2 g IV", ["risk of hypermagnesemia", "renal gate met", "Magnesium sulfate 2 g IV"]),
    (3.5, None, None, "A12CC02", ["Renal function not assessable", "Magnesium supplement"]),  # by ATC
]


@pytest.mark.parametrize(("value", "flag", "scr", "med", "expected"), HYPER)
def test_hypermagnesemia_guided_as_far_as_the_source_allows(
    k: Knowledge, value: float, flag: str | None, scr: float | None, med: str | None, expected: list[str]
) -> None:
    p = P("h", "female", "1950-01-01", "")
    p.lab(MG, value, "mg/dL", WHEN, flag=flag)
    if scr is not None:
        p.lab(SCR, scr, "mg/dL", WHEN)
    if med == "A12CC02":
        p.med(
            "MedicationStatement", {"coding": [{"system": ATC, "code": med}], "text": "Magnesium supplement"}, when="2026-01-10"
        )
    elif med:
        p.med("MedicationRequest", {"text": med}, when="2026-01-10")
    f = mg_of(p, k)
    text = " ".join(f.guidance)
    assert f.band is not None and f.band.name == "hypermagnesemia" and f.band.interpretation == "H"
    for words in expected:
        assert words in text, (words, text)
    assert "g magnesium sulfate" not in text and "mg/kg" not in text and "severe hypermagnesemia" not in text.lower()
    assert f.arrhythmia_risk is None


# --- point 10: potassium and calcium judged -----------------------------------------------------

ELECTROLYTES: list[tuple[dict[str, Any], str, str | None, str]] = [
    # (lab kwargs, analyte label, state, note)
    ({"code": K, "value": 3.4, "unit": "mmol/L"}, "potassium", "low", "default 3.5 (StatPearls Hypokalemia)"),
    ({"code": K, "value": 3.5, "unit": "mmol/L"}, "potassium", "normal", "at the default"),
    ({"code": K, "value": 3.4, "unit": "mmol/L", "low": 3.3}, "potassium", "normal", "the laboratory's range wins"),
    ({"code": K, "value": 3.6, "unit": "mmol/L", "low": 3.7}, "potassium", "low", "the laboratory's range wins"),
    ({"code": K, "value": 3.6, "unit": "mmol/L", "flag": "L"}, "potassium", "low", "the laboratory's flag"),
    ({"code": K, "value": 5.8, "unit": "mmol/L", "flag": "H"}, "potassium", "high", "hyperkalemia named"),
    ({"code": K, "value": 3.0, "unit": "mmol/L", "comparator": "<"}, "potassium", "low", "a bound below the limit"),
    ({"code": CA, "value": 8.7, "unit": "mg/dL"}, "total calcium", "low", "default 8.8 (StatPearls Calcium)"),
    ({"code": CA, "value": 8.8, "unit": "mg/dL"}, "total calcium", "normal", "at the default"),
    ({"code": CA, "value": 10.5, "unit": "mg/dL"}, "total calcium", "high", "above 10.4"),
    ({"code": CA_MOL, "value": 2.1, "unit": "mmol/L"}, "total calcium", "low", "2.1 mmol/L = 8.42 mg/dL"),
    ({"code": CA_ION, "value": 1.16, "unit": "mmol/L"}, "ionized calcium", "low", "default 1.17"),
    ({"code": CA_ION, "value": 1.17, "unit": "mmol/L"}, "ionized calcium", "normal", "at the default"),
]


@pytest.mark.parametrize(("lab", "name", "state", "note"), ELECTROLYTES)
def test_electrolytes_judged(k: Knowledge, lab: dict[str, Any], name: str, state: str | None, note: str) -> None:
    p = P("e", "female", "1960-01-01", "")
    p.lab(MG, 1.3, "mg/dL", WHEN)
    p.lab(SCR, 0.8, "mg/dL", WHEN)
    args = dict(lab)
    p.lab(args.pop("code"), args.pop("value"), args.pop("unit"), WHEN, **args)
    f = mg_of(p, k)
    judged = {j.name: j for j in f.judged}
    assert judged[name].state == state, (note, judged[name].basis)
    if name == "potassium":
        assert f.hypokalemia is (state == "low")
    else:
        assert f.hypocalcemia is (state == "low")


def test_ionized_calcium_decides_over_total(k: Knowledge) -> None:
    p = P("e", "female", "1960-01-01", "")
    p.lab(MG, 1.3, "mg/dL", WHEN)
    p.lab(CA, 7.9, "mg/dL", WHEN)  # low total (e.g. low albumin)
    p.lab(CA_ION, 1.20, "mmol/L", WHEN)  # normal ionized
    f = mg_of(p, k)
    assert not f.hypocalcemia and any("the ionized decides" in e for e in f.electrolytes)
    q = P("e", "female", "1960-01-01", "")
    q.lab(MG, 1.3, "mg/dL", WHEN)
    q.lab(CA, 9.5, "mg/dL", WHEN)
    q.lab(CA_ION, 1.0, "mmol/L", WHEN)
    assert mg_of(q, k).hypocalcemia


ARRHYTHMIA = [
    # (magnesium mg/dL, potassium (value, flag), total calcium, digoxin, risk)
    (1.3, None, None, False, "low"),
    (1.3, (4.0, None), 9.5, False, "low"),
    (1.3, (3.1, None), None, False, "moderate"),
    (1.3, None, 7.9, False, "moderate"),
    (1.3, (3.1, None), 7.9, False, "moderate"),
    (1.3, None, None, True, "moderate"),
    (1.0, None, None, False, "high"),
    (1.0, (3.1, None), 7.9, True, "high"),
]


@pytest.mark.parametrize(("mg", "potassium", "calcium", "digoxin", "risk"), ARRHYTHMIA)
def test_hypokalemia_and_hypocalcemia_counted_in_arrhythmia_risk(
    k: Knowledge, mg: float, potassium: tuple[float, str | None] | None, calcium: float | None, digoxin: bool, risk: str
) -> None:
    p = P("a", "female", "1960-01-01", "")
    p.lab(MG, mg, "mg/dL", WHEN)
    if potassium:
        p.lab(K, potassium[0], "mmol/L", WHEN, flag=potassium[1])
    if calcium is not None:
        p.lab(CA, calcium, "mg/dL", WHEN)
    if digoxin:
        p.med("MedicationStatement", {"text": "Digoxin 0.125 mg"}, when="2025-12-01")
    f = mg_of(p, k)
    assert f.arrhythmia_risk == risk
    rationale = " ".join(f.arrhythmia_rationale)
    assert ("hypokalemia:" in rationale) is bool(potassium and potassium[0] < 3.5)
    assert ("hypocalcemia:" in rationale) is bool(calcium is not None and calcium < 8.8)


def test_report_and_risk_assessment_name_the_electrolytes(k: Knowledge) -> None:
    p = P("r", "female", "1960-01-01", "")
    p.lab(MG, 1.3, "mg/dL", WHEN)
    potassium = p.lab(K, 3.1, "mmol/L", WHEN)
    p.lab(CA, 7.9, "mg/dL", WHEN)
    run = interpret_bundle(p.bundle(), k, NOW, render=False)
    resources = [e["resource"] for e in run.bundle["entry"]]
    report = next(r for r in resources if r["resourceType"] == "DiagnosticReport")
    assert "hypokalemia and hypocalcemia" in report["conclusion"]
    risk = next(r for r in resources if r["resourceType"] == "RiskAssessment")
    assert risk["prediction"][0]["qualitativeRisk"]["coding"][0]["code"] == "moderate"
    assert any(b["reference"].endswith(potassium["id"]) for b in risk["basis"])
    assert "correct potassium" in risk["mitigation"] and "replace calcium" in risk["mitigation"]
    words = json.dumps([report, risk])
    assert "seed 0" not in words.lower()
