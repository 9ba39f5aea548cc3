"""Renal function: the worked values of terminology.md section 7, KDIGO stage edges, and the reasons
an eGFR cannot be given."""

from __future__ import annotations

import pytest

from labinterp.knowledge import Knowledge
from labinterp.rules.renal import ckd_epi_2021, cockcroft_gault, kdigo_stage, mdrd_idms
from tests.builders import SCR, SCR_MOL, P, loinc
from tests.conftest import findings_of


@pytest.mark.parametrize(
    ("sex", "age", "scr", "weight", "ckd", "mdrd", "cg"),
    [("male", 60, 1.0, 70, 86.16, 76.22, 77.78), ("female", 60, 0.8, 60, 84.30, 73.17, 70.83)],
)
def test_worked_values(k: Knowledge, sex: str, age: int, scr: float, weight: float, ckd: float, mdrd: float, cg: float) -> None:
    assert ckd_epi_2021(scr, age, sex, k.renal) == pytest.approx(ckd, abs=0.005)
    assert mdrd_idms(scr, age, sex, k.renal) == pytest.approx(mdrd, abs=0.005)
    assert cockcroft_gault(scr, age, weight, sex, k.renal) == pytest.approx(cg, abs=0.005)


@pytest.mark.parametrize(
    ("egfr", "stage"),
    [
        (120, "G1"),
        (90, "G1"),
        (89.9, "G2"),
        (60, "G2"),
        (59.9, "G3a"),
        (45, "G3a"),
        (44.9, "G3b"),
        (30, "G3b"),
        (29.9, "G4"),
        (15, "G4"),
        (14.9, "G5"),
        (0, "G5"),
    ],
)
def test_kdigo_stages(k: Knowledge, egfr: float, stage: str) -> None:
    assert kdigo_stage(egfr, k.renal).name == stage


def test_micromol_creatinine_converted(k: Knowledge) -> None:
    p = P("r1", "male", "1966-01-01", "")
    p.lab(SCR_MOL, 88.42, "umol/L", "2026-01-15T08:00:00+01:00")  # = 1.0 mg/dL
    f = findings_of(p.bundle(), k)
    assert f.renal is not None and f.renal.creatinine is not None
    assert f.renal.creatinine.value == pytest.approx(1.0)
    assert f.renal.egfr == pytest.approx(ckd_epi_2021(1.0, 60, "male", k.renal))


def test_mdrd_selectable_and_cockcroft_gault_with_weight(k: Knowledge) -> None:
    p = P("r2", "female", "1966-01-01", "")
    p.lab(SCR, 0.8, "mg/dL", "2026-01-15T08:00:00+01:00")
    p.lab(loinc("29463-7", "Body weight"), 60, "kg", "2026-01-10T08:00:00+01:00")
    f = findings_of(p.bundle(), k, equation="mdrd_idms")
    assert f.renal is not None and f.renal.equation == "mdrd_idms"
    assert f.renal.egfr == pytest.approx(73.17, abs=0.005) and f.renal.crcl == pytest.approx(70.83, abs=0.005)


@pytest.mark.parametrize(
    ("gender", "birth", "why"),
    [
        (None, "1960-01-01", "sex is 'unknown'"),
        ("female", None, "no birth date"),
        ("other", "1960-01-01", "sex is 'other'"),
        ("male", "2010-01-01", "16 years old"),
    ],
)
def test_no_egfr_and_why(k: Knowledge, gender: str | None, birth: str | None, why: str) -> None:
    p = P("r3", gender, birth, "")
    p.lab(SCR, 1.0, "mg/dL", "2026-01-15T08:00:00+01:00")
    f = findings_of(p.bundle(), k)
    assert f.renal is not None and f.renal.egfr is None and why in f.renal.why_not


def test_reported_egfr_for_the_same_specimen_is_used(k: Knowledge) -> None:
    p = P("r4", "female", "1960-01-01", "")
    p.lab(SCR, 1.0, "mg/dL", "2026-01-15T08:00:00+01:00", specimen="Specimen/s1")
    p.lab(
        loinc("98979-8", "eGFR"),
        55,
        "mL/min/1.73m2",
        "2026-01-15T08:00:00+01:00",
        ucum="mL/min/{1.73_m2}",
        specimen="Specimen/s1",
    )
    f = findings_of(p.bundle(), k)
    assert f.renal is not None and f.renal.equation == "reported" and f.renal.egfr == 55 and not f.renal.computed
    q = P("r5", "female", "1960-01-01", "")
    q.lab(SCR, 1.0, "mg/dL", "2026-01-15T08:00:00+01:00", specimen="Specimen/s1")
    q.lab(
        loinc("98979-8", "eGFR"),
        55,
        "mL/min/1.73m2",
        "2026-01-10T08:00:00+01:00",
        ucum="mL/min/{1.73_m2}",
        specimen="Specimen/s0",
    )
    g = findings_of(q.bundle(), k)
    assert g.renal is not None and g.renal.computed and g.renal.egfr != 55
