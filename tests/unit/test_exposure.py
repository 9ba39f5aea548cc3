"""Linezolid exposure risk (issue 7 points 1 and 7; SPEC section 2): the prior from genotype, rifampicin,
age and renal function with the numbers of Tables 2-3, and a measured trough that outranks it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from labinterp.compose import Context, compose_patient, device
from labinterp.knowledge import Knowledge
from labinterp.rules import Findings
from labinterp.rules.exposure import in_words, relative_risk
from tests.builders import ATC, SCR, P, loinc, lzd_site
from tests.conftest import NOW, findings_of
from tests.unit.test_linezolid_safety import SAMPLE


def risk_patient(
    *genotypes: tuple[str, str],
    birth: str = "1970-01-01",
    rifampicin: bool = False,
    trough: float | None = None,
    comparator: str | None = None,
) -> P:
    p = P("r", "female", birth, "")
    if trough is not None:  # a valid steady-state trough: 8 doses every 12 h, sampled 12 h after the last
        p.doses((SAMPLE - timedelta(hours=12 * 8)).isoformat(), 8)
        p.lab(lzd_site(), trough, "mg/L", SAMPLE.isoformat(), comparator=comparator, kind="lzd")
    for code_text, value in genotypes:
        p.plain_genotype(code_text, value)
    if rifampicin:
        p.med("MedicationStatement", {"coding": [{"system": ATC, "code": "J04AB02"}]}, when="2026-01-01")
    return p


def exposure(p: P, k: Knowledge) -> Any:
    f = findings_of(p.bundle(), k)
    assert f.exposure is not None
    return f.exposure


# --- the prior: Tables 2 and 3 ------------------------------------------------------------------------------


def test_expresser_prior_high_with_relative_risk_from_counts(site_k: Knowledge) -> None:
    u = exposure(risk_patient(("CYP3A5 rs776746", "AG")), site_k).under
    assert (u.risk, u.probability) == ("high", 0.259)
    assert u.relative_risk == pytest.approx((7 / 27) / (11 / 163))  # 3.84, not the odds ratio 9.09
    text = " ".join(u.rationale)
    assert "2.32-32.25" in text and "5.88" in text and "1.47-23.08" in text  # odds ratios stay in the rationale
    assert "7 of 27" in text and "11 of 163" in text and "relative risk 3.84" in text
    assert "55.6% above" in text and "no reason to raise the dose" in text  # most expressers were above the range
    assert u.label == (
        "high (about 1 in 4, 25.9% of CYP3A5 expresser patients below the range, 3.8 times the share of non-expresser patients)"
    )
    assert u.caution.startswith("most CYP3A5 expresser patients of the cohort were not below the range (55.6% above")


def test_por28_tt_prior(site_k: Knowledge) -> None:
    u = exposure(risk_patient(("CYP3A5 rs776746", "GG"), ("POR rs1057868", "TT")), site_k).under
    assert (u.risk, u.probability) == ("high", 0.273)
    assert u.relative_risk == pytest.approx((3 / 11) / (15 / 179))  # 3.25
    assert "1.36-50.28" in " ".join(u.rationale) and "4.6" in " ".join(u.rationale)
    assert "about 1 in 4" in u.label


def test_non_expresser_low_baseline(site_k: Knowledge) -> None:
    u = exposure(risk_patient(("CYP3A5 rs776746", "GG"), ("POR rs1057868", "CT")), site_k).under
    assert (u.risk, u.probability, u.relative_risk) == ("low", 0.068, None)
    assert "about 1 in 15" in u.label


def test_missing_genotype_is_not_called_low(site_k: Knowledge) -> None:
    u = exposure(risk_patient(("POR rs1057868", "CT")), site_k).under
    assert u.risk is None and u.label == "not assessable"
    assert any("could not be assessed from genotype" in r for r in u.rationale)


def test_rifampicin_raises_to_moderate_and_is_named(site_k: Knowledge) -> None:
    u = exposure(risk_patient(("CYP3A5 rs776746", "GG"), rifampicin=True), site_k).under
    assert u.risk == "moderate" and u.probability is None and "rifampicin" in u.contributors
    assert any("-32 %" in r for r in u.rationale)
    assert exposure(risk_patient(("POR rs1057868", "CT"), rifampicin=True), site_k).under.risk == "moderate"


def test_no_effect_genotypes_reported(site_k: Knowledge) -> None:
    e = exposure(risk_patient(("CYP3A4 rs35599367", "CT"), ("ABCB1 rs1045642", "TT")), site_k)
    text = " ".join(e.no_effect)
    assert "CYP3A4*22 CT+TT: no known effect" in text and "OR 0.9 (95 % CI 0.23-3.6" in text
    assert "ABCB1 c.3435C>T TT: no known effect" in text and "OR 0.85" in text


@pytest.mark.parametrize(
    ("birth", "age", "risk", "probability", "words"),
    [
        ("1961-01-15", 65, "moderate", 0.50, "about 1 in 2"),
        ("1961-01-16", 64, "low", 0.30, "about 3 in 10"),
        ("1945-01-15", 81, "high", 0.65, "about 2 in 3"),
        ("1945-01-16", 80, "moderate", 0.50, "about 1 in 2"),
    ],
)
def test_age_bands(site_k: Knowledge, birth: str, age: int, risk: str, probability: float, words: str) -> None:
    p = risk_patient(("CYP3A5 rs776746", "GG"), birth=birth)
    p.lab(lzd_site(), 5.0, "mg/L", "2026-01-15T08:00:00+01:00", kind="lzd")  # age is taken at the sample
    f = findings_of(p.bundle(), site_k)
    assert f.age == age and f.exposure is not None
    o = f.exposure.over
    assert (o.prior_risk, o.prior_probability) == (risk, probability)
    assert any(words in r for r in o.rationale)


@pytest.mark.parametrize(
    ("p", "words"),
    [
        (0.259, "about 1 in 4"),
        (0.068, "about 1 in 15"),
        (0.094, "about 1 in 11"),
        (0.5, "about 1 in 2"),
        (0.524, "about 1 in 2"),
        (0.556, "about 3 in 5"),
        (0.30, "about 3 in 10"),
        (0.273, "about 1 in 4"),
        (0.65, "about 2 in 3"),
    ],
)
def test_frequencies_in_words(p: float, words: str) -> None:
    assert in_words(p) == words


def test_relative_risks_of_every_underexposure_factor(k: Knowledge) -> None:
    rr = {f.factor: relative_risk(f, k.linezolid) for f in k.linezolid.factors if f.effect == "underexposure"}
    assert rr["CYP3A5"] == pytest.approx(3.842, abs=0.001) and rr["POR*28"] == pytest.approx(3.255, abs=0.001)


# --- a measured trough outranks the prior --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trough", "comparator", "under", "over"),
    [
        (48.1, None, "low", "high"),  # above linearity: not "overexposure: low" for a 56-year-old
        (48.0, ">", "low", "high"),
        (12.0, None, "low", "high"),
        (5.0, None, "low", "low"),
        (1.5, None, "high", "low"),
        (0.4, "<", "high", "low"),
        (8.0, ">", "low", "high"),
        (2.0, "<", "high", "low"),
    ],
)
def test_measured_trough_decides(site_k: Knowledge, trough: float, comparator: str | None, under: str, over: str) -> None:
    e = exposure(risk_patient(("CYP3A5 rs776746", "GG"), trough=trough, comparator=comparator), site_k)
    assert (e.under.risk, e.over.risk) == (under, over)
    assert e.under.measured and e.over.measured and e.under.probability is None and e.over.probability is None
    assert e.under.prior_risk == "low" and e.over.prior_risk == "low"  # 56 years, non-expresser: the priors stay
    assert any(r.startswith("prior before the measurement: low") for r in e.over.rationale)


def test_expresser_within_range_is_not_high_underexposure(site_k: Knowledge) -> None:
    e = exposure(risk_patient(("CYP3A5 rs776746", "AG"), trough=12.0), site_k)
    assert e.under.risk == "low" and e.under.prior_risk == "high" and e.over.risk == "high"
    assert any("prior before the measurement: high (about 1 in 4" in r for r in e.under.rationale)


def test_measured_side_names_likely_contributors(site_k: Knowledge) -> None:
    e = exposure(risk_patient(("CYP3A5 rs776746", "AG"), trough=1.5), site_k)
    assert e.under.risk == "high" and "likely contributors found: CYP3A5 expresser" in e.under.rationale[0]


def test_a_level_that_is_not_a_trough_leaves_the_prior(site_k: Knowledge) -> None:
    p = risk_patient(("CYP3A5 rs776746", "AG"))
    p.doses((SAMPLE - timedelta(hours=12 * 7 + 2)).isoformat(), 8)  # the last dose 2 h before the sample
    p.lab(lzd_site(), 14.0, "mg/L", SAMPLE.isoformat(), kind="lzd")
    e = exposure(p, site_k)
    assert e.under.risk == "high" and not e.under.measured and "the prior stands" in e.under.rationale[0]


def test_children_get_no_adult_probabilities(site_k: Knowledge) -> None:
    for trough in (None, 5.0):
        e = exposure(risk_patient(("CYP3A5 rs776746", "AG"), birth="2015-06-01", trough=trough), site_k)
        if trough is None:
            assert e.under.risk is None and e.over.risk is None
        assert e.under.probability is None and e.under.relative_risk is None and e.over.probability is None
        assert any("no adult probability or odds ratio is applied" in r for r in e.under.rationale)
        assert e.under.prior_risk is None


# --- what is written ---------------------------------------------------------------------------------------------


def _risk_resource(f: Findings, k: Knowledge) -> dict[str, Any]:
    written = compose_patient(f, k, NOW, device(k))
    return next(w.resource for w in written if w.kind == "exposure-risk")


def test_written_prior_has_relative_risk_and_words(site_k: Knowledge) -> None:
    f = findings_of(risk_patient(("CYP3A5 rs776746", "AG")).bundle(), site_k)
    pred = _risk_resource(f, site_k)["prediction"][0]
    assert pred["probabilityDecimal"] == 0.259 and pred["relativeRisk"] == pytest.approx(3.842, abs=0.001)
    assert pred["qualitativeRisk"]["coding"][0]["code"] == "high" and "about 1 in 4" in pred["qualitativeRisk"]["text"]
    assert "odds ratio" not in pred["rationale"].split("relativeRisk")[-1].split(";")[0]


def test_written_measured_risk_has_no_prior_probability(site_k: Knowledge) -> None:
    f = findings_of(risk_patient(("CYP3A5 rs776746", "GG"), trough=48.1).bundle(), site_k)
    over = _risk_resource(f, site_k)["prediction"][1]
    assert over["qualitativeRisk"]["coding"][0]["code"] == "high" and "probabilityDecimal" not in over
    assert over["qualitativeRisk"]["text"].startswith("high (measured trough 48.1 mg/L: above the measurable range")
    under = _risk_resource(f, site_k)["prediction"][0]
    assert under["qualitativeRisk"]["text"] == "low (by the measured trough)"
    assert Context(site_k, NOW, f.record.patient.source).k is site_k


# --- the renal flag on the safe side (issue 7 point 8) ----------------------------------------------------------


def renal_patient(
    gender: str | None, birth: str, creatinine: float, weight: float | None = None, creat_days_before: int = 0
) -> P:
    p = P("rn", gender, birth, "")
    p.doses((SAMPLE - timedelta(hours=12 * 8)).isoformat(), 8)
    p.lab(lzd_site(), 5.0, "mg/L", SAMPLE.isoformat(), kind="lzd")
    p.lab(SCR, creatinine, "mg/dL", (SAMPLE - timedelta(days=creat_days_before)).isoformat())
    if weight is not None:
        p.lab(loinc("29463-7", "Body weight"), weight, "kg", (SAMPLE - timedelta(days=1)).isoformat())
    return p


def test_unknown_sex_gates_on_either_sex(site_k: Knowledge) -> None:
    o = exposure(renal_patient(None, "1949-06-01", 1.9), site_k).over  # 76 years: female 27.0, male 36.1
    assert o.prior_risk == "high" and "renal function below 30" in o.contributors
    text = " ".join(o.rationale)
    assert "if female" in text and "if male" in text


def test_cockcroft_gault_below_30_gates_when_the_egfr_does_not(site_k: Knowledge) -> None:
    o = exposure(renal_patient("female", "1940-06-01", 1.2, weight=40), site_k).over  # eGFR 44, CG 22
    assert o.prior_risk == "high" and any("Cockcroft-Gault" in r for r in o.rationale)
    fine = exposure(renal_patient("female", "1940-06-01", 1.2), site_k).over  # no weight: eGFR 44 only
    assert not any("below 30" in c for c in fine.contributors)


def test_stale_creatinine_is_said(site_k: Knowledge) -> None:
    o = exposure(renal_patient("male", "1960-06-01", 0.9, creat_days_before=30), site_k).over
    assert any("stale" in r for r in o.rationale)
