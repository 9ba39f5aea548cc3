"""Linezolid TDM (seed 000 sections 2.1-2.2; SPEC section 2): every row of the trough table, both
sides of each threshold, trough timing, trend, MIC and the dose suggestion."""

from __future__ import annotations

import pytest

from labinterp.knowledge import Knowledge
from labinterp.rules.linezolid import classify_trough
from tests.builders import LZD, RXNORM, P, loinc, lzd_site
from tests.conftest import findings_of

SAMPLE = "2026-01-15T08:00:00+01:00"


@pytest.mark.parametrize(
    ("value", "comparator", "category", "code"),
    [
        (0.39, "", "not_quantifiable", "<"),
        (0.4, "<", "not_quantifiable", "<"),  # reported as "<0.4": below the LOQ
        (0.4, "", "below", "L"),  # the LOQ itself is quantifiable
        (1.99, "", "below", "L"),
        (2.0, "", "within", "N"),  # 2-8 mg/L inclusive
        (5.0, "", "within", "N"),
        (8.0, "", "within", "N"),
        (8.01, "", "above", "H"),
        (48.0, "", "above", "H"),  # top of the linear range
        (48.01, "", "above_linearity", ">"),
        (48.0, ">", "above_linearity", ">"),
        # comparators are values (issue 7 point 4): a censored result takes the band its side of the range allows
        (2.0, "<", "below", "L"),  # "<2" is below the range (it may also be below the LOQ)
        (8.0, ">", "above", "H"),  # ">8" is above the range (it may also exceed linearity)
        (0.4, "<", "not_quantifiable", "<"),
        (48.0, ">", "above_linearity", ">"),
        (8.0, ">=", None, None),  # ">=8" may be within the range: indeterminate
        (5.0, "<", None, None),  # "<5" spans below, within and the LOQ
        (5.0, ">", None, None),
        (2.0, "<=", None, None),  # "<=2" may be within (2 is in the range)
        (1.0, "<", "below", "L"),
    ],
)
def test_trough_table(k: Knowledge, value: float, comparator: str, category: str | None, code: str | None) -> None:
    band = classify_trough(value, comparator, k.linezolid)
    if code is None:
        assert band is None
    else:
        assert band is not None and band.name == category and band.interpretation == code


def test_table_numbers_come_from_the_seed(k: Knowledge) -> None:
    lz = k.linezolid
    assert (lz.band("within").lower, lz.band("within").upper) == (2.0, 8.0)
    assert lz.assay.loq_mg_per_l == 0.4 and lz.assay.linearity_upper_mg_per_l == 48.0
    assert (lz.trough.hours_after_dose, lz.trough.tolerance_min, lz.trough.steady_state_h) == (12.0, 20.0, 72.0)
    assert (lz.standard_regimen.dose_mg, lz.standard_regimen.interval_h) == (600, 12)
    assert (lz.cohort.n, lz.cohort.below, lz.cohort.within, lz.cohort.above) == (190, 0.094, 0.379, 0.524)


def patient_with_trough(
    value: float,
    *,
    unit: str = "mg/L",
    ucum: str | None = None,
    doses_from: str | None = "2026-01-11T20:00:00+01:00",
    count: int = 7,
    when: str = SAMPLE,
    comparator: str | None = None,
) -> P:
    p = P("t1", "female", "1960-01-01", "")
    if doses_from:
        p.doses(doses_from, count)
    p.lab(lzd_site(), value, unit, when, ucum=ucum, comparator=comparator, kind="lzd")
    return p


@pytest.mark.parametrize(
    ("sample", "status"),
    [
        ("2026-01-15T08:00:00+01:00", "valid"),  # 12 h after the 20:00 dose
        ("2026-01-15T07:40:00+01:00", "valid"),  # 11 h 40 min: edge of the window
        ("2026-01-15T07:39:00+01:00", "invalid"),
        ("2026-01-15T08:20:00+01:00", "valid"),  # 12 h 20 min
        ("2026-01-15T08:21:00+01:00", "invalid"),
        ("2026-01-15T07:00:00Z", "valid"),  # the same instant in UTC
    ],
)
def test_trough_window(site_k: Knowledge, sample: str, status: str) -> None:
    f = findings_of(patient_with_trough(1.5, when=sample).bundle(), site_k)
    assert f.linezolid is not None and f.linezolid.timing.status == status


def test_steady_state_72_hours(site_k: Knowledge) -> None:
    # first dose 2026-01-12T08:00 -> sample 2026-01-15T08:00 is exactly 72 h: steady state
    ok = findings_of(patient_with_trough(5.0, doses_from="2026-01-12T08:00:00+01:00", count=6).bundle(), site_k)
    assert ok.linezolid is not None and ok.linezolid.timing.status == "valid"
    # first dose 2026-01-12T20:00 -> 60 h: not yet at steady state
    short = findings_of(patient_with_trough(5.0, doses_from="2026-01-12T20:00:00+01:00", count=5).bundle(), site_k)
    assert short.linezolid is not None and short.linezolid.timing.status == "invalid"
    assert any("steady state" in r for r in short.linezolid.timing.reasons)


def test_timing_unchecked_without_administrations_or_time(site_k: Knowledge) -> None:
    f = findings_of(patient_with_trough(5.0, doses_from=None).bundle(), site_k)
    assert f.linezolid is not None and f.linezolid.timing.status == "unchecked"
    assert "could not be checked" in f.linezolid.timing.reasons[0]
    g = findings_of(patient_with_trough(5.0, when="2026-01-15").bundle(), site_k)
    assert g.linezolid is not None and g.linezolid.timing.status == "unchecked"


def test_units_micrograms_per_ml_equal_mg_per_l(site_k: Knowledge) -> None:
    f = findings_of(patient_with_trough(12.4, unit="µg/mL", ucum="ug/mL").bundle(), site_k)
    assert f.linezolid is not None and f.linezolid.trough.value == pytest.approx(12.4) and f.linezolid.category == "above"
    g = findings_of(patient_with_trough(0.5, unit="mg/dL").bundle(), site_k)  # 0.5 mg/dL = 5 mg/L
    assert g.linezolid is not None and g.linezolid.trough.value == pytest.approx(5.0) and g.linezolid.category == "within"


def test_trend_uses_latest_and_assay_imprecision(site_k: Knowledge) -> None:
    p = P("t2", "male", "1960-01-01", "")
    p.lab(lzd_site(), 6.0, "mg/L", "2026-01-08T08:00:00+01:00", kind="lzd")
    p.lab(lzd_site(), 6.4, "mg/L", "2026-01-15T08:00:00+01:00", kind="lzd")  # +6.7 %: within 8.2 % imprecision
    f = findings_of(p.bundle(), site_k)
    assert f.linezolid is not None and f.linezolid.trend == "stable" and f.linezolid.trough.value == pytest.approx(6.4)
    p.lab(lzd_site(), 9.0, "mg/L", "2026-01-18T08:00:00+01:00", kind="lzd")
    g = findings_of(p.bundle(), site_k)
    assert g.linezolid is not None and g.linezolid.trend == "rising" and g.linezolid.category == "above"
    assert [m.value for m in g.linezolid.previous] == [6.0, 6.4]


def test_mic_flags_a_trough_below_it(site_k: Knowledge) -> None:
    p = patient_with_trough(1.8)
    p.lab(loinc("29258-1", "Linezolid [Susceptibility]"), 2, "ug/mL", "2026-01-13T10:00:00+01:00", kind="mic")
    f = findings_of(p.bundle(), site_k)
    assert f.linezolid is not None and f.linezolid.below_mic is True and f.linezolid.mic is not None
    q = patient_with_trough(4.0)
    q.lab(loinc("29258-1", "Linezolid [Susceptibility]"), 2, "mg/L", "2026-01-13T10:00:00+01:00", kind="mic")
    g = findings_of(q.bundle(), site_k)
    assert g.linezolid is not None and g.linezolid.below_mic is False


def test_susceptibility_text_is_not_a_concentration(k: Knowledge) -> None:
    p = P("t3", "male", "1960-01-01", "")
    p.lab({"text": "Linezolid susceptibility (MIC)"}, 2, "mg/L", SAMPLE, kind="x")
    f = findings_of(p.bundle(), k)
    assert f.linezolid is None


def test_matched_by_name_is_said(k: Knowledge) -> None:
    p = P("t4", "male", "1960-01-01", "")
    p.lab({"text": "Linezolid trough level"}, 3.0, "mg/L", SAMPLE, kind="lzd")
    f = findings_of(p.bundle(), k)
    assert f.linezolid is not None and f.linezolid.trough.matched_by == "name"
    assert any("recognized by its name" in n for n in f.linezolid.notes)


@pytest.mark.parametrize(
    ("value", "expected", "words"),
    [
        # 1200 x 5 / 1.5 = 4000 mg/day: no listed regimen at every 12 h is higher; an interval change is not proportional
        (
            1.5,
            None,
            [
                "more than in proportion",
                "the proportional estimate is above it",
                "600 mg every 12 h is already the largest listed regimen",
            ],
        ),
        (3.0, (600, 12), ["Continue 600 mg every 12 h"]),  # within: continue
        # 600 mg/day; 600 mg every 24 h is an interval change, so the same-interval 300 mg every 12 h
        (10.0, (300, 12), ["withholding", "platelet", "300 mg every 12 h"]),
        (12.4, (300, 12), ["smallest listed regimen at every 12 h", "484 mg/day"]),  # the cap is in the sentence
        (9.0, (300, 12), ["platelet"]),  # 667 mg/day: |ln(600/667)| = 0.105 beats |ln(900/667)| = 0.300
    ],
)
def test_dose_suggestion(site_k: Knowledge, value: float, expected: tuple[int, int] | None, words: list[str]) -> None:
    f = findings_of(patient_with_trough(value).bundle(), site_k)
    assert f.linezolid is not None
    s = f.linezolid.suggestion
    if expected is None:
        assert s.regimen is None
    else:
        assert s.regimen is not None and (s.regimen.dose_mg, s.regimen.interval_h) == expected
    for w in words:
        assert w in s.text, (w, s.text)
    if expected and expected != (600, 12):
        assert "Suggestion for the clinician" in s.text and "proportional" in s.basis


def test_no_suggestion_for_invalid_trough_or_unquantified(site_k: Knowledge) -> None:
    bad = findings_of(patient_with_trough(1.5, when="2026-01-15T04:00:00+01:00").bundle(), site_k)
    assert bad.linezolid is not None and bad.linezolid.suggestion.regimen is None
    assert "not a trough" in bad.linezolid.suggestion.text and bad.linezolid.band is None
    nq = findings_of(patient_with_trough(0.4, comparator="<").bundle(), site_k)
    assert nq.linezolid is not None and nq.linezolid.category == "not_quantifiable"
    assert "adherence" in nq.linezolid.suggestion.text and nq.linezolid.trough.comparator == "<"
    hi = findings_of(patient_with_trough(60).bundle(), site_k)
    assert hi.linezolid is not None and "dilution" in hi.linezolid.suggestion.text and "platelet" in hi.linezolid.suggestion.text


def test_regimen_from_order_when_no_administrations(site_k: Knowledge) -> None:
    p = patient_with_trough(12.0, doses_from=None)
    p.med(
        "MedicationRequest",
        {"coding": [{"system": RXNORM, "code": "311347"}]},
        when="2026-01-10T09:00:00+01:00",
        dose_mg=600,
        every_h=24,
    )
    f = findings_of(p.bundle(), site_k)
    assert f.linezolid is not None and f.linezolid.regimen_known
    assert (f.linezolid.regimen.dose_mg, f.linezolid.regimen.interval_h) == (600, 24)


def test_standard_regimen_assumed_and_said(site_k: Knowledge) -> None:
    p = patient_with_trough(12.0, doses_from=None)
    p.med("MedicationStatement", LZD, when="2026-01-10")
    f = findings_of(p.bundle(), site_k)
    assert f.linezolid is not None and not f.linezolid.regimen_known
    # with neither doses nor a regimen recorded, no regimen is invented: no "continue" and no mg change
    s = f.linezolid.suggestion
    assert s.regimen is None and "neither the doses nor the regimen are recorded" in s.text and "withholding" in s.text
