"""Magnesium (seed 001; SPEC section 4): bands and both sides of each threshold, unit factors,
guidance, renal reduction, electrolytes, named causes, FEMg, digoxin and arrhythmia risk."""

from __future__ import annotations

import pytest

from labinterp.knowledge import Knowledge
from labinterp.rules.bands import classify
from tests.builders import ATC, MG, MG_MOL, SCR, P, loinc
from tests.conftest import findings_of

WHEN = "2026-01-15T09:00:00+01:00"


@pytest.mark.parametrize(
    ("mg_dl", "band", "code"),
    [
        (0.8, "severe_hypomagnesemia", "LL"),
        (1.19, "severe_hypomagnesemia", "LL"),
        (1.2, "hypomagnesemia", "L"),
        (1.459, "hypomagnesemia", "L"),
        (1.46, "normal", "N"),
        (2.0, "normal", "N"),
        (2.68, "normal", "N"),
        (2.681, "hypermagnesemia", "H"),
    ],
)
def test_magnesium_table(k: Knowledge, mg_dl: float, band: str, code: str) -> None:
    b = classify(mg_dl, k.magnesium.bands)
    assert b is not None and (b.name, b.interpretation) == (band, code)


@pytest.mark.parametrize(
    ("value", "unit", "mg_dl"),
    [(1.0, "mmol/L", 2.431), (1.0, "meq/L", 1.2155), (1.0, "mEq/L", 1.2155), (24.31, "mg/L", 2.431), (0.5, "mmol/L", 1.2155)],
)
def test_magnesium_units(k: Knowledge, value: float, unit: str, mg_dl: float) -> None:
    factor = k.unit_factor("magnesium", unit)
    assert factor is not None and value * factor == pytest.approx(mg_dl)


def mg_patient(value: float, unit: str = "mg/dL", code=MG, birth: str = "1960-01-01", scr: float | None = 1.0) -> P:
    p = P("m", "female", birth, "")
    p.lab(code, value, unit, WHEN)
    if scr is not None:
        p.lab(SCR, scr, "mg/dL", WHEN)
    return p


def test_severe_guidance_and_arrhythmia(k: Knowledge) -> None:
    f = findings_of(mg_patient(1.0).bundle(), k)
    mg = f.magnesium
    assert mg is not None and mg.band is not None and mg.band.interpretation == "LL"
    text = " ".join(mg.guidance)
    assert "1-2 g magnesium sulfate IV over about 15 minutes" in text and "over 1 hour" in text and "4-8 g" in text
    assert "continue repletion for 2 days" in text and not mg.renal_reduction
    assert mg.arrhythmia_risk == "high"
    assert any("torsades" in r for r in mg.arrhythmia_rationale)


def test_mild_oral_first_and_check_electrolytes(k: Knowledge) -> None:
    f = findings_of(mg_patient(0.55, "mmol/L", MG_MOL).bundle(), k)
    mg = f.magnesium
    assert mg is not None and mg.band is not None and mg.band.name == "hypomagnesemia"
    assert any("sustained-release oral" in g for g in mg.guidance)
    assert any("check potassium" in e for e in mg.electrolytes) and any("check calcium" in e for e in mg.electrolytes)
    assert mg.arrhythmia_risk == "low"


def test_renal_reduction_below_30(k: Knowledge) -> None:
    f = findings_of(mg_patient(1.3, scr=2.6, birth="1945-01-01").bundle(), k)
    assert f.renal is not None and f.renal.egfr is not None and f.renal.egfr < 30
    assert f.magnesium is not None and f.magnesium.renal_reduction
    assert "reduce the magnesium dose by 50 %" in f.magnesium.guidance[0]
    g = findings_of(mg_patient(1.3, scr=1.0).bundle(), k)
    assert g.magnesium is not None and not g.magnesium.renal_reduction


def test_children_dose(k: Knowledge) -> None:
    f = findings_of(mg_patient(1.3, birth="2016-01-01", scr=None).bundle(), k)
    assert f.magnesium is not None and any("25-50 mg/kg" in g for g in f.magnesium.guidance)


def test_lab_flags_for_calcium_and_potassium(k: Knowledge) -> None:
    p = mg_patient(1.3)
    p.lab(loinc("2823-3", "Potassium"), 3.1, "mmol/L", WHEN, flag="L")
    p.lab(loinc("17861-6", "Calcium"), 7.9, "mg/dL", WHEN, low=8.6)
    f = findings_of(p.bundle(), k)
    mg = f.magnesium
    assert mg is not None
    assert any("replace calcium before" in e for e in mg.electrolytes)
    assert any("about 60 %" in e and "flagged low" in e for e in mg.electrolytes)
    assert mg.arrhythmia_risk == "moderate"  # hypokalemia aggravates a mild deficit


CAUSES = [
    ({"coding": [{"system": ATC, "code": "C03CA01"}]}, "Loop diuretic"),
    ({"coding": [{"system": ATC, "code": "C03AA03"}]}, "Thiazide diuretic"),
    ({"coding": [{"system": ATC, "code": "C03BA11"}]}, "Thiazide-like diuretic"),
    ({"coding": [{"system": ATC, "code": "A02BC02"}]}, "Proton pump inhibitor"),
    ({"text": "Esomeprazole 40 mg"}, "Proton pump inhibitor"),
    ({"coding": [{"system": ATC, "code": "J01GB03"}]}, "Aminoglycoside"),
    ({"coding": [{"system": ATC, "code": "J02AA01"}]}, "Amphotericin B"),
    ({"coding": [{"system": ATC, "code": "P01CX01"}]}, "Pentamidine"),
    ({"coding": [{"system": ATC, "code": "C01AA05"}]}, "Digitalis glycoside"),
    ({"coding": [{"system": ATC, "code": "L01XA01"}]}, "Cisplatin"),
    ({"coding": [{"system": ATC, "code": "L04AD01"}]}, "Ciclosporin"),
    ({"coding": [{"system": ATC, "code": "L01FE01"}]}, "Anti-EGFR antibody"),  # cetuximab, ATC 2022
    ({"coding": [{"system": ATC, "code": "L01XC08"}]}, "Anti-EGFR antibody"),  # panitumumab, legacy code
    ({"text": "matuzumab"}, "Anti-EGFR antibody"),
    ({"text": "Bisacodyl 5 mg"}, "Laxative"),
]


@pytest.mark.parametrize(("concept", "cls"), CAUSES)
def test_named_causes(k: Knowledge, concept: dict, cls: str) -> None:
    p = mg_patient(1.3)
    p.med("MedicationStatement", concept, when="2025-12-01")
    f = findings_of(p.bundle(), k)
    assert f.magnesium is not None and len(f.magnesium.causes) == 1 and f.magnesium.causes[0].startswith(cls)


def test_unrelated_drug_is_not_a_cause(k: Knowledge) -> None:
    p = mg_patient(1.3)
    p.med("MedicationStatement", {"coding": [{"system": ATC, "code": "C09AA05"}], "text": "Ramipril"}, when="2025-12-01")
    f = findings_of(p.bundle(), k)
    assert f.magnesium is not None and f.magnesium.causes == []


def test_digoxin_raises_risk(k: Knowledge) -> None:
    p = mg_patient(1.3)
    p.med("MedicationStatement", {"text": "Digoxin 0.125 mg"}, when="2025-12-01")
    f = findings_of(p.bundle(), k)
    assert f.magnesium is not None and f.magnesium.digoxin and f.magnesium.arrhythmia_risk == "moderate"
    assert any("digoxin toxicity" in r for r in f.magnesium.arrhythmia_rationale)


def test_femg_formula_and_renal_wasting(k: Knowledge) -> None:
    p = P("f", "female", "1975-08-08", "")
    p.lab(MG, 1.3, "mg/dL", WHEN)
    p.lab(SCR, 0.8, "mg/dL", WHEN)
    p.lab(loinc("19124-7", "Magnesium [Mass/volume] in Urine"), 7.0, "mg/dL", WHEN)
    p.lab(loinc("2161-8", "Creatinine [Mass/volume] in Urine"), 90.0, "mg/dL", WHEN)
    f = findings_of(p.bundle(), k)
    assert f.magnesium is not None and f.magnesium.femg is not None
    expected = (7.0 * 0.8) / (1.3 * 90.0 * 0.7) * 100  # seed 001: [(UMg x PCr) / (PMg x UCr x 0.7)] x 100
    assert f.magnesium.femg.percent == pytest.approx(expected)
    assert expected > 2 and f.magnesium.femg.renal_wasting is True


def test_femg_not_read_with_reduced_renal_function(k: Knowledge) -> None:
    p = P("f2", "female", "1945-01-01", "")
    p.lab(MG, 1.3, "mg/dL", WHEN)
    p.lab(SCR, 2.6, "mg/dL", WHEN)
    p.lab(loinc("19124-7", "Magnesium [Mass/volume] in Urine"), 7.0, "mg/dL", WHEN)
    p.lab(loinc("2161-8", "Creatinine [Mass/volume] in Urine"), 90.0, "mg/dL", WHEN)
    f = findings_of(p.bundle(), k)
    assert f.magnesium is not None and f.magnesium.femg is not None and f.magnesium.femg.renal_wasting is None


def test_normal_has_no_guidance_and_high_no_repletion(k: Knowledge) -> None:
    f = findings_of(mg_patient(2.0).bundle(), k)
    assert f.magnesium is not None and f.magnesium.band is not None and f.magnesium.band.name == "normal"
    assert f.magnesium.guidance == [] and f.magnesium.arrhythmia_risk is None
    g = findings_of(mg_patient(2.9).bundle(), k)
    assert g.magnesium is not None and g.magnesium.band is not None and g.magnesium.band.name == "hypermagnesemia"
    text = " ".join(g.magnesium.guidance)
    assert "No magnesium repletion" in text and "g magnesium sulfate" not in text and "mg/kg" not in text
    assert g.magnesium.arrhythmia_risk is None
