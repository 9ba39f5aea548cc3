"""Linezolid on everyday data (issue 7 points 2, 3, 4, 7 and 11): only a trough is read as a trough, on the
patient's own dosing interval; suggestions carry their safety; censored values are values; children get no
adult doses; the trend runs over the course with the reference change value."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from labinterp.knowledge import Knowledge
from labinterp.rules.linezolid import LinezolidFinding
from tests.builders import ATC, LZD, P, loinc, lzd_site
from tests.conftest import findings_of

SAMPLE = datetime.fromisoformat("2026-01-15T08:00:00+01:00")


def lzd_patient(
    value: float,
    *,
    every_h: int = 12,
    count: int = 8,
    hours_after_last: float | None = None,
    comparator: str | None = None,
    birth: str = "1960-01-01",
    pid: str = "s1",
) -> P:
    """Doses every `every_h` hours, the last one `hours_after_last` (default: one interval) before the sample."""
    p = P(pid, "female", birth, "")
    after = every_h if hours_after_last is None else hours_after_last
    last = SAMPLE - timedelta(hours=after)
    p.doses((last - timedelta(hours=every_h * (count - 1))).isoformat(), count, every_h=every_h)
    p.lab(lzd_site(), value, "mg/L", SAMPLE.isoformat(), comparator=comparator, kind="lzd")
    return p


def lz_of(p: P, k: Knowledge) -> LinezolidFinding:
    f = findings_of(p.bundle(), k)
    assert f.linezolid is not None
    return f.linezolid


# --- point 2: only a trough is read as a trough ---------------------------------------------------------


@pytest.mark.parametrize(
    ("every_h", "after", "is_trough"),
    [
        (12, 12, True),
        (8, 8, True),  # every 8 h: the trough is 8 h after a dose
        (8, 8 + 20 / 60, True),
        (8, 8 + 21 / 60, False),
        (8, 12, False),  # 12 h after the last of 8-hourly doses: a dose missing, not a trough
        (24, 24, True),
        (24, 12, False),  # 12 h into a 24 h interval: not a trough
        (12, 2, False),  # two hours after a dose: near the peak
    ],
)
def test_window_follows_the_patients_interval(site_k: Knowledge, every_h: int, after: float, is_trough: bool) -> None:
    lz = lz_of(lzd_patient(5.0, every_h=every_h, count=12, hours_after_last=after), site_k)
    assert lz.timing.interval_h == every_h and lz.regimen.interval_h == every_h
    assert lz.timing.is_trough is is_trough
    assert (lz.timing.status == "valid") is is_trough


def test_level_two_hours_after_a_dose_is_not_a_trough(site_k: Knowledge) -> None:
    for value in (1.5, 5.0, 12.0):
        lz = lz_of(lzd_patient(value, hours_after_last=2), site_k)
        assert lz.band is None and lz.timing.is_trough is False  # no range category as a trough
        assert "not a trough" in lz.why_indeterminate
        s = lz.suggestion
        assert s.regimen is None and "Continue" not in s.text and "consider" not in s.text.lower().split("trough")[0]
        assert (
            "Draw a trough 12 h after a dose" in s.text and "at 2026-01-15 18:00 (UTC+01:00)" in s.text
        )  # the next trough is due then


def test_assay_limits_still_flagged_off_trough(site_k: Knowledge) -> None:
    lz = lz_of(lzd_patient(55.0, hours_after_last=2), site_k)
    assert lz.band is not None and lz.band.name == "above_linearity" and "dilution" in lz.suggestion.text


def test_interval_from_the_order(site_k: Knowledge) -> None:
    p = P("s2", "male", "1960-01-01", "")
    p.med("MedicationRequest", LZD, when="2026-01-10T08:00:00+01:00", dose_mg=600, every_h=8)
    p.med("MedicationAdministration", LZD, when=(SAMPLE - timedelta(hours=8)).isoformat(), dose_mg=600)
    p.lab(lzd_site(), 5.0, "mg/L", SAMPLE.isoformat(), kind="lzd")
    lz = lz_of(p, site_k)
    assert lz.regimen.interval_h == 8 and lz.timing.is_trough is True
    assert lz.timing.steady_state == "reached" and lz.timing.status == "valid"  # from the order's start, 5 days before


def test_only_the_last_dose_recorded_leaves_steady_state_unknown(site_k: Knowledge) -> None:
    lz = lz_of(lzd_patient(5.0, count=1), site_k)
    assert lz.timing.steady_state == "unknown" and lz.timing.status == "unchecked"
    assert not any("not yet at steady state" in r for r in lz.timing.reasons)
    assert any("steady state unknown" in r for r in lz.timing.reasons)


def test_a_course_stopped_years_ago_is_not_this_course(site_k: Knowledge) -> None:
    p = lzd_patient(5.0, count=4)  # this course: 4 doses, the first 36 h before the sample
    p.doses("2019-03-01T08:00:00+01:00", 20)  # a course in 2019
    p.med("MedicationStatement", LZD, when="2019-03-01", status="completed")
    p.lab(lzd_site(), 14.0, "mg/L", "2019-03-05T08:00:00+01:00", kind="lzd")
    lz = lz_of(p, site_k)
    assert lz.timing.steady_state == "not_reached"  # 2019 does not count towards steady state
    assert lz.previous == [] and lz.trend == ""
    assert [why for _, why in lz.not_used] == ["an earlier course of linezolid: not part of this course's trend"]


# --- point 3: suggestions carry their safety ------------------------------------------------------------


def test_above_range_holds_and_monitors_platelets(site_k: Knowledge) -> None:
    s = lz_of(lzd_patient(14.0), site_k).suggestion
    assert "withholding" in s.text and "platelet count" in s.text and "thrombocytopenia" in s.text


def test_above_linearity_dilution_and_hold(site_k: Knowledge) -> None:
    for value, comparator in ((48.1, None), (48.0, ">"), (120.0, None)):
        lz = lz_of(lzd_patient(value, comparator=comparator), site_k)
        assert lz.category == "above_linearity"
        assert "Hold linezolid" in lz.suggestion.text and "dilution" in lz.suggestion.text and "platelet" in lz.suggestion.text


@pytest.mark.parametrize(("value", "comparator"), [(0.4, "<"), (0.3, None), (0.8, None), (0.99, None), (2.0, "<")])
def test_very_low_checks_adherence_before_any_increase(site_k: Knowledge, value: float, comparator: str | None) -> None:
    text = lz_of(lzd_patient(value, comparator=comparator), site_k).suggestion.text
    assert "adherence" in text and "sampling time" in text
    assert text.index("adherence") < (text.index("consider") if "consider " in text else len(text))


def test_just_below_is_not_far_below(site_k: Knowledge) -> None:
    text = lz_of(lzd_patient(1.5), site_k).suggestion.text
    assert "adherence" not in text


@pytest.mark.parametrize(("trough", "mic"), [(3.0, 4.0), (1.5, 2.0), (6.0, 8.0)])
def test_below_the_mic_is_never_continue(site_k: Knowledge, trough: float, mic: float) -> None:
    p = lzd_patient(trough)
    p.lab(loinc("29258-1", "Linezolid [Susceptibility]"), mic, "mg/L", "2026-01-13T10:00:00+01:00", kind="mic")
    f = findings_of(p.bundle(), site_k)
    assert f.linezolid is not None and f.linezolid.below_mic is True
    text = f.linezolid.suggestion.text
    assert "Continue" not in text and f"below the MIC ({mic:g} mg/L)" in text
    # the outcome is "trough below the range": the MIC is said beside it in the rationale, not merged into its level
    assert f.exposure is not None and f.exposure.under.risk == ("high" if trough < 2 else "low")
    assert any(f"below the MIC of the patient's isolate ({mic:g} mg/L)" in r for r in f.exposure.under.rationale)


def test_mic_not_reached_but_above_says_continue(site_k: Knowledge) -> None:
    p = lzd_patient(5.0)
    p.lab(loinc("29258-1", "Linezolid [Susceptibility]"), 2.0, "mg/L", "2026-01-13T10:00:00+01:00", kind="mic")
    text = lz_of(p, site_k).suggestion.text
    assert text.startswith("Continue 600 mg every 12 h")


def test_every_8_hours_below_range_is_not_scaled_by_the_daily_dose(site_k: Knowledge) -> None:
    lz = lz_of(lzd_patient(1.5, every_h=8, count=12), site_k)
    assert lz.suggestion.regimen is None  # no 12 h -> 8 h style proportional step
    assert "more than in proportion" in lz.suggestion.text


def test_interval_change_never_suggested_as_proportional(site_k: Knowledge) -> None:
    for value in (1.2, 1.6, 1.9, 9.0, 20.0, 40.0):
        s = lz_of(lzd_patient(value), site_k).suggestion
        assert s.regimen is None or s.regimen.interval_h == 12, (value, s.text)


def test_before_steady_state_no_change_yet(site_k: Knowledge) -> None:
    lz = lz_of(lzd_patient(1.5, count=3), site_k)  # 24 h of recorded therapy
    assert lz.timing.steady_state == "not_reached" and lz.suggestion.regimen is None
    assert "steady state" in lz.suggestion.text
    within = lz_of(lzd_patient(5.0, count=3), site_k)
    assert "Continue" not in within.suggestion.text and "no change yet" in within.suggestion.text


# --- point 4: comparators are values ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "comparator", "category"),
    [(8.0, ">", "above"), (2.0, "<", "below"), (0.4, "<", "not_quantifiable"), (48.0, ">", "above_linearity")],
)
def test_comparators_are_values(site_k: Knowledge, value: float, comparator: str, category: str) -> None:
    f = findings_of(lzd_patient(value, comparator=comparator).bundle(), site_k)
    assert f.linezolid is not None and f.linezolid.category == category
    assert f.exposure is not None
    side = {"above": "over", "above_linearity": "over", "below": "under", "not_quantifiable": "under"}[category]
    assert getattr(f.exposure, side).risk == "high"


def test_greater_than_eight_holds_without_a_proportional_dose(site_k: Knowledge) -> None:
    s = lz_of(lzd_patient(8.0, comparator=">"), site_k).suggestion
    assert s.regimen is None and "withholding" in s.text and "not a quantified value" in s.text


# --- point 7: children ------------------------------------------------------------------------------------


def test_child_gets_no_adult_mg_dose(site_k: Knowledge) -> None:
    for value in (1.5, 5.0, 14.0):
        f = findings_of(lzd_patient(value, birth="2014-05-01").bundle(), site_k)
        assert f.age == 11 and f.linezolid is not None and f.linezolid.child
        s = f.linezolid.suggestion
        assert s.regimen is None and "Continue" not in s.text and "consider 300" not in s.text and "mg/day" not in s.text
        assert "dosed by body weight" in s.text
        assert any("11 years old" in n for n in f.linezolid.notes)


def test_adult_from_eighteen(site_k: Knowledge) -> None:
    f = findings_of(lzd_patient(14.0, birth="2008-01-15").bundle(), site_k)
    assert f.age == 18 and f.linezolid is not None and not f.linezolid.child and f.linezolid.suggestion.regimen is not None


# --- point 11: trend over the course, reference change value ------------------------------------------------


def course_with_troughs(values: list[float]) -> P:
    """Daily troughs on consecutive mornings of one 12-hourly course; the last on SAMPLE."""
    p = P("s3", "male", "1960-01-01", "")
    days = len(values)
    first_dose = SAMPLE - timedelta(hours=12 + 24 * days)
    p.doses(first_dose.isoformat(), 2 * days + 1)
    for i, v in enumerate(values):
        p.lab(lzd_site(), v, "mg/L", (SAMPLE - timedelta(days=days - 1 - i)).isoformat(), kind="lzd")
    return p


@pytest.mark.parametrize(
    ("values", "trend"),
    [
        ([5.0, 6.0], "stable"),  # +20 %: within 2.77 x 8.2 % = 22.7 %
        ([5.0, 6.2], "rising"),  # +24 %
        ([5.0, 3.8], "falling"),  # -24 %
        ([5.0, 4.0], "stable"),  # -20 %
        ([3.0, 4.5, 5.0], "stable"),  # the course rose, the latest step did not exceed the RCV
    ],
)
def test_trend_uses_the_reference_change_value(site_k: Knowledge, values: list[float], trend: str) -> None:
    lz = lz_of(course_with_troughs(values), site_k)
    assert lz.trend == trend
    assert len(lz.steps) == len(values) - 1 and len(lz.previous) == len(values) - 1
    assert f"over the {len(values)} troughs of this course" in lz.trend_text and "reference change value 23%" in lz.trend_text


def test_trend_names_every_step(site_k: Knowledge) -> None:
    lz = lz_of(course_with_troughs([3.0, 4.5, 5.0]), site_k)
    assert "4.5 mg/L (+50%, beyond" in lz.trend_text and "5 mg/L (+11%, within" in lz.trend_text


def test_post_dose_levels_are_kept_out_of_the_trend(site_k: Knowledge) -> None:
    p = course_with_troughs([5.0, 6.0])
    p.lab(lzd_site(), 15.0, "mg/L", (SAMPLE - timedelta(hours=10)).isoformat(), kind="lzd")  # 2 h after the 20:00 dose
    lz = lz_of(p, site_k)
    assert [m.value for m in lz.previous] == [5.0] and any("not a trough" in why for _, why in lz.not_used)


def test_rifampicin_combination_atc_is_rifampicin(site_k: Knowledge) -> None:
    p = lzd_patient(5.0)
    p.med("MedicationStatement", {"coding": [{"system": ATC, "code": "J04AB02"}]}, when="2026-01-01")
    f = findings_of(p.bundle(), site_k)
    assert f.exposure is not None and "rifampicin" in f.exposure.under.contributors


@pytest.mark.parametrize(
    ("count", "after", "label"),
    [
        (8, 12, "Valid trough"),
        (1, 12, "Trough by its timing; steady state could not be confirmed"),
        (3, 12, "Trough taken before steady state"),
        (8, 2, "Not a valid trough"),
    ],
)
def test_the_report_says_what_the_timing_check_concluded(site_k: Knowledge, count: int, after: float, label: str) -> None:
    from labinterp.compose.linezolid import timing_label

    lz = lz_of(lzd_patient(5.0, count=count, hours_after_last=after), site_k)
    assert timing_label(lz) == label


# --- a second round, from a clinical pharmacologist's review -------------------------------------------------


def test_no_dose_figure_above_the_largest_regimen_is_printed(site_k: Knowledge) -> None:
    for value in (0.4, 0.99, 1.2):
        text = lz_of(lzd_patient(value), site_k).suggestion.text
        assert "the proportional estimate is above it" in text and "mg/day" not in text.split("above it")[0].split("(")[-1]
        assert "15000" not in text and "6061" not in text and "5000" not in text


def test_no_regimen_is_invented_for_a_level_of_unknown_timing(site_k: Knowledge) -> None:
    for value in (5.0, 14.0, 1.5):
        lz = lz_of(lzd_patient(value, count=0), site_k)  # no doses, no order: neither timing nor regimen recorded
        s = lz.suggestion
        assert s.regimen is None and "Continue" not in s.text and "consider 300" not in s.text
        assert "neither the doses nor the regimen are recorded" in s.text
        assert any("no dose or order start recorded" in r for r in lz.timing.reasons)


def test_an_order_without_administrations_gives_a_conditional_suggestion(site_k: Knowledge) -> None:
    p = P("q1", "male", "1960-01-01", "")
    p.med("MedicationRequest", LZD, when="2026-01-10T08:00:00+01:00", dose_mg=600, every_h=12)
    p.lab(lzd_site(), 14.0, "mg/L", SAMPLE.isoformat(), kind="lzd")
    s = lz_of(p, site_k).suggestion
    assert "if this was a trough (the time since the last dose is not recorded): consider 300 mg every 12 h" in s.text


def test_administrations_without_times_are_said_as_such(site_k: Knowledge) -> None:
    p = P("q2", "male", "1960-01-01", "")
    for day in range(10, 15):
        p.med("MedicationAdministration", LZD, when=f"2026-01-{day}", dose_mg=600)
    p.lab(lzd_site(), 5.0, "mg/L", SAMPLE.isoformat(), kind="lzd")
    lz = lz_of(p, site_k)
    assert lz.timing.reasons[0].startswith("linezolid administrations are recorded without times")


def test_a_missed_dose_within_the_last_72_hours_interrupts_steady_state(site_k: Knowledge) -> None:
    p = P("q3", "female", "1960-01-01", "")
    first = SAMPLE - timedelta(hours=12 * 12)
    for i in range(12):
        if i == 9:  # the dose 36 h before the sample is missing
            continue
        p.med("MedicationAdministration", LZD, when=(first + timedelta(hours=12 * i)).isoformat(), dose_mg=600)
    p.lab(lzd_site(), 1.2, "mg/L", SAMPLE.isoformat(), kind="lzd")
    lz = lz_of(p, site_k)
    assert lz.timing.steady_state == "interrupted" and lz.timing.status == "invalid" and lz.regimen.interval_h == 12
    assert "a dose appears to be missing" in " ".join(lz.timing.reasons)
    assert lz.suggestion.regimen is None and "adherence" in lz.suggestion.text


def test_steady_state_counts_from_a_change_of_regimen(site_k: Knowledge) -> None:
    p = P("q4", "female", "1960-01-01", "")
    p.doses((SAMPLE - timedelta(hours=8 * 6 + 12 * 8)).isoformat(), 8, every_h=12)  # 4 days every 12 h ...
    p.doses((SAMPLE - timedelta(hours=8 * 6)).isoformat(), 6, every_h=8)  # ... then every 8 h for 48 h
    p.lab(lzd_site(), 10.0, "mg/L", SAMPLE.isoformat(), kind="lzd")
    lz = lz_of(p, site_k)
    assert lz.regimen.interval_h == 8 and lz.timing.is_trough is True
    assert lz.timing.steady_state == "not_reached" and "since the change to 600 mg every 8 h" in " ".join(lz.timing.reasons)


def test_twice_daily_at_uneven_times_is_every_12_hours(site_k: Knowledge) -> None:
    p = P("q5", "female", "1960-01-01", "")
    t = SAMPLE - timedelta(hours=12 + 24 * 4)
    for _ in range(4):  # 08:00 and 18:00: gaps of 10 h and 14 h
        p.med("MedicationAdministration", LZD, when=t.isoformat(), dose_mg=600)
        p.med("MedicationAdministration", LZD, when=(t + timedelta(hours=10)).isoformat(), dose_mg=600)
        t += timedelta(hours=24)
    p.med("MedicationAdministration", LZD, when=t.isoformat(), dose_mg=600)
    p.lab(lzd_site(), 5.0, "mg/L", SAMPLE.isoformat(), kind="lzd")
    lz = lz_of(p, site_k)
    assert lz.regimen.interval_h == 12 and lz.timing.is_trough is True and lz.timing.steady_state == "reached"


def test_a_falling_trend_with_an_inducer_is_not_a_plain_continue(site_k: Knowledge) -> None:
    p = course_with_troughs([7.5, 7.0, 2.1])
    p.med("MedicationStatement", {"coding": [{"system": ATC, "code": "J04AM02"}], "text": "Rifinah"}, when="2026-01-10")
    text = lz_of(p, site_k).suggestion.text
    assert "for now" in text and "repeat it early" in text and "co-prescribed rifampicin (CYP3A inducer)" in text


def test_an_mic_that_may_exceed_the_trough_is_no_continue(site_k: Knowledge) -> None:
    p = lzd_patient(3.0)
    p.lab(loinc("29258-1", "Linezolid [Susceptibility]"), 2, "mg/L", "2026-01-13T10:00:00+01:00", comparator=">=", kind="mic")
    text = lz_of(p, site_k).suggestion.text
    assert "Continue" not in text and "ask the laboratory for a quantified MIC" in text


@pytest.mark.parametrize(
    ("value", "comparator", "under", "over"),
    [(2.0, "<=", None, "low"), (8.0, "<", None, "low"), (8.0, ">=", "low", None), (2.0, ">", "low", None)],
)
def test_a_censored_trough_rules_out_a_side(
    site_k: Knowledge, value: float, comparator: str, under: str | None, over: str | None
) -> None:
    f = findings_of(lzd_patient(value, comparator=comparator).bundle(), site_k)
    assert f.linezolid is not None and f.linezolid.band is None and f.exposure is not None
    if under:
        assert f.exposure.under.risk == under and f.exposure.under.measured
    if over:
        assert f.exposure.over.risk == over and f.exposure.over.measured


def test_at_or_above_the_linear_limit_is_above_linearity(site_k: Knowledge) -> None:
    lz = lz_of(lzd_patient(48.0, comparator=">="), site_k)
    assert lz.category == "above_linearity" and "dilution" in lz.suggestion.text


def test_caveat_names_what_was_not_confirmed(site_k: Knowledge) -> None:
    f = findings_of(lzd_patient(9.0, count=1).bundle(), site_k)  # timing checked, steady state unknown
    assert f.exposure is not None and "(steady state unknown)" in f.exposure.over.rationale[0]
    assert "timing could not be checked" not in " ".join(f.exposure.over.rationale)


# --- the second review round -----------------------------------------------------------------------------------


def _mic(p: P, value: float, comparator: str | None = None) -> None:
    p.lab(
        loinc("29258-1", "Linezolid [Susceptibility]"),
        value,
        "mg/L",
        "2026-01-13T10:00:00+01:00",
        comparator=comparator,
        kind="mic",
    )


def test_an_open_mic_is_said_whatever_the_band_and_stops_a_reduction(site_k: Knowledge) -> None:
    above = lzd_patient(9.0)
    _mic(above, 4, ">")
    s = lz_of(above, site_k).suggestion
    assert s.regimen is None and "ask the laboratory for a quantified MIC before any reduction" in s.text
    below = lzd_patient(1.5)
    _mic(below, 2, "<=")
    assert "quantified MIC" in lz_of(below, site_k).suggestion.text


def test_a_censored_trough_at_the_upper_limit_is_not_low_overexposure(site_k: Knowledge) -> None:
    for value, comparator in ((8.0, ">="), (7.9, ">")):
        f = findings_of(lzd_patient(value, comparator=comparator).bundle(), site_k)
        assert f.exposure is not None and f.exposure.over.risk == "moderate" and f.exposure.over.measured
        assert f.linezolid is not None and "platelet" in f.linezolid.suggestion.text


def test_the_last_trough_of_the_course_decides_when_the_latest_level_is_not_one(site_k: Knowledge) -> None:
    p = course_with_troughs([3.0])
    p.doses((SAMPLE + timedelta(hours=24)).isoformat(), 1)  # a dose on the next morning ...
    p.lab(lzd_site(), 15.0, "mg/L", (SAMPLE + timedelta(hours=26)).isoformat(), kind="lzd")  # ... and a level 2 h after it
    f = findings_of(p.bundle(), site_k)
    assert f.linezolid is not None and f.linezolid.band is None and f.linezolid.last_trough is not None
    assert f.exposure is not None and f.exposure.over.risk == "low" and f.exposure.over.measured
    assert "the last trough of this course, 3 mg/L" in f.exposure.over.rationale[0]


def test_the_trend_does_not_cross_a_change_of_dose(site_k: Knowledge) -> None:
    p = P("q6", "male", "1960-01-01", "")
    start = SAMPLE - timedelta(hours=12 + 12 * 16)
    p.doses(start.isoformat(), 8, mg=600)  # 600 mg every 12 h for 4 days ...
    p.doses((start + timedelta(hours=96)).isoformat(), 9, mg=300)  # ... then 300 mg every 12 h
    p.lab(
        lzd_site(), 12.0, "mg/L", (start + timedelta(hours=96, minutes=-5)).isoformat(), kind="lzd"
    )  # the trough before the cut
    p.lab(lzd_site(), 5.0, "mg/L", SAMPLE.isoformat(), kind="lzd")
    lz = lz_of(p, site_k)
    assert lz.regimen.dose_mg == 300 and lz.trend == "" and lz.previous == []
    assert any("before the change to 300 mg every 12 h" in why for _, why in lz.not_used)
    assert "repeat it early" not in lz.suggestion.text


def test_a_rifampicin_stopped_within_its_wash_out_is_said_as_stopped(site_k: Knowledge) -> None:
    p = lzd_patient(5.0)
    p.med("MedicationStatement", {"coding": [{"system": ATC, "code": "J04AB02"}]}, status="completed", when="2025-12-01")
    p.resources[-1]["effectivePeriod"] = {"start": "2025-12-01", "end": "2026-01-11"}
    text = lz_of(p, site_k).suggestion.text
    assert "was stopped (ended 2026-01-11" in text and "the trough may rise" in text and "co-prescribed" not in text


def test_a_sample_without_a_time_gets_no_continue(site_k: Knowledge) -> None:
    p = P("q7", "male", "1960-01-01", "")
    p.doses((SAMPLE - timedelta(hours=12 * 8)).isoformat(), 8)
    p.lab(lzd_site(), 5.0, "mg/L", "2026-01-15", kind="lzd")
    s = lz_of(p, site_k).suggestion
    assert s.regimen is None and "Continue" not in s.text and "the sample has no time of collection" in s.text


def test_a_very_low_level_before_steady_state_checks_adherence(site_k: Knowledge) -> None:
    text = lz_of(lzd_patient(0.5, count=4), site_k).suggestion.text
    assert "adherence" in text and "steady state" in text


def test_a_missed_dose_above_the_range_speaks_of_the_record_not_of_an_increase(site_k: Knowledge) -> None:
    p = P("q8", "female", "1960-01-01", "")
    first = SAMPLE - timedelta(hours=12 * 12)
    for i in range(12):
        if i != 9:
            p.med("MedicationAdministration", LZD, when=(first + timedelta(hours=12 * i)).isoformat(), dose_mg=600)
    p.lab(lzd_site(), 12.0, "mg/L", SAMPLE.isoformat(), kind="lzd")
    lz = lz_of(p, site_k)
    assert "before any dose increase" not in lz.suggestion.text and "dosing record" in lz.suggestion.text
    reason = next(r for r in lz.timing.reasons if "missing between" in r)
    assert "and 2026-01-14 07:00 UTC" in reason  # both ends dated


def test_a_last_dose_not_recorded_interrupts_steady_state(site_k: Knowledge) -> None:
    lz = lz_of(lzd_patient(5.0, hours_after_last=24), site_k)
    assert lz.timing.steady_state == "interrupted" and lz.timing.is_trough is False


def test_doses_without_times_are_not_called_unrecorded(site_k: Knowledge) -> None:
    p = P("q9", "male", "1960-01-01", "")
    for day in range(10, 15):
        p.med("MedicationAdministration", LZD, when=f"2026-01-{day}", dose_mg=600)
    p.lab(lzd_site(), 5.0, "mg/L", SAMPLE.isoformat(), kind="lzd")
    text = lz_of(p, site_k).suggestion.text
    assert "the doses are recorded without times" in text and "neither the doses" not in text


def test_an_order_that_disagrees_with_the_administrations_is_said(site_k: Knowledge) -> None:
    p = lzd_patient(5.0, every_h=8, count=12)
    p.med("MedicationRequest", LZD, when="2026-01-09T08:00:00+01:00", dose_mg=600, every_h=12)
    notes = " ".join(lz_of(p, site_k).notes)
    assert "600 mg every 8 h (1800 mg/day)" in notes and "600 mg every 12 h (1200 mg/day): check which is given" in notes


def test_the_laboratorys_disagreeing_flag_is_said(site_k: Knowledge) -> None:
    p = P("q10", "female", "1960-01-01", "")
    p.doses((SAMPLE - timedelta(hours=12 * 8)).isoformat(), 8)
    p.lab(lzd_site(), 7.5, "mg/L", SAMPLE.isoformat(), flag="H", kind="lzd")
    notes = " ".join(lz_of(p, site_k).notes)
    assert "the laboratory flags this result H" in notes and "the source's category is kept" in notes


def test_rifampicin_is_cited_as_a_reader_can_find_it(site_k: Knowledge) -> None:
    assert "Gandelman et al., ref. 37 of Linezolid TDM and pharmacogenetics cohort" in site_k.linezolid.rifampicin.text
