"""Clinical review of the magnesium rules, two defects: (1) potassium and calcium drawn after the magnesium
sample were left out of the arrhythmia risk; they are now judged in a window around the sample (at most
electrolytes.max_age_hours before it, at most max_after_hours after it), a low one anywhere in the window
counts, else the nearest is quoted; (2) the renal reason dangled after the renal sentence ("... monitoring.
(no creatinine or eGFR result)"); it now sits inside it. Numbers from StatPearls: Hypomagnesemia
(mappings/magnesium.toml) and their neighbours."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest

from labinterp.knowledge import Knowledge
from labinterp.knowledge.model.magnesium import MgHyper, MgRenal
from labinterp.pipeline import interpret_bundle
from labinterp.rules.magnesium import MagnesiumFinding
from tests.builders import MG, SCR, P, loinc
from tests.conftest import NOW, findings_of

SAMPLE = "2026-01-16T08:00:00+01:00"  # the magnesium sample
K = loinc("2823-3", "Potassium [Moles/volume] in Serum or Plasma")
CA = loinc("17861-6", "Calcium [Mass/volume] in Serum or Plasma")
CA_ION = loinc("1995-0", "Calcium.ionized [Moles/volume] in Serum or Plasma")


def at(hours: float) -> str:
    """The time `hours` after the sample (negative: before it), as an effectiveDateTime."""
    return (datetime.fromisoformat(SAMPLE) + timedelta(hours=hours)).isoformat()


def mg_of(p: P, k: Knowledge) -> MagnesiumFinding:
    f = findings_of(p.bundle(), k)
    assert f.magnesium is not None
    return f.magnesium


def report(p: P, k: Knowledge) -> tuple[str, str]:
    """The magnesium DiagnosticReport's conclusion and the arrhythmia RiskAssessment's text, as written."""
    run = interpret_bundle(p.bundle(), k, NOW, render=False)
    resources = [e["resource"] for e in run.bundle["entry"]]
    conclusion = next(
        r["conclusion"]
        for r in resources
        if r["resourceType"] == "DiagnosticReport" and r["conclusion"].startswith("Serum magnesium")
    )
    risks = [str(r) for r in resources if r["resourceType"] == "RiskAssessment" and "rrhythmia" in str(r)]
    return conclusion, " ".join(risks)


def adult(mg: float = 1.3, scr: float | None = 0.8, sample: str = SAMPLE) -> P:
    p = P("w", "female", "1960-01-01", "")
    p.lab(MG, mg, "mg/dL", sample)
    if scr is not None:
        p.lab(SCR, scr, "mg/dL", sample)
    return p


# --- 1. the reviewer's case: K 4.1 at 07:00, Mg 1.3 at 08:00, K 3.0 at 10:00 the same day -------------------


def test_the_reviewers_later_low_potassium_counts_in_the_arrhythmia_risk(k: Knowledge) -> None:
    p = adult()
    p.lab(K, 4.1, "mmol/L", "2026-01-16T07:00:00+01:00")
    p.lab(K, 3.0, "mmol/L", "2026-01-16T10:00:00+01:00")
    f = mg_of(p, k)
    assert f.hypokalemia and f.arrhythmia_risk == "moderate"
    assert [j.m.value for j in f.judged if j.name == "potassium"] == [3.0]
    text, risk = report(p, k)
    assert "Arrhythmia risk: moderate" in text and "Arrhythmia risk: low" not in text
    assert "Hypokalemia present" in text and "potassium 3 mmol/L, 2026-01-16, 2 h after this sample: low" in text
    # the nearer normal one is quoted beside it, not hidden
    assert "Nearest this sample: potassium 4.1 mmol/L, 2026-01-16, 1 h before this sample: normal" in text
    assert "On record but not judged" not in text
    assert "hypokalemia: potassium 3 mmol/L, 2026-01-16, 2 h after this sample" in risk
    # both potassium results were read to decide: both are the report's inputs (a new one, a new report)
    assert sorted(m.value for m in f.inputs if m.analyte == "potassium") == [3.0, 4.1]


def test_the_reviewers_case_with_a_normal_later_potassium_stays_low_risk(k: Knowledge) -> None:
    p = adult()
    p.lab(K, 4.1, "mmol/L", "2026-01-16T07:00:00+01:00")
    p.lab(K, 4.0, "mmol/L", "2026-01-16T10:00:00+01:00")
    f = mg_of(p, k)
    assert not f.hypokalemia and f.arrhythmia_risk == "low"
    assert [j.m.value for j in f.judged if j.name == "potassium"] == [4.1]  # none low: the nearest is quoted


WINDOW = [
    # (potassium results (value, hours after the sample), hypokalemia, judged value or None, words, note)
    ([(3.0, 2)], True, 3.0, ["2 h after this sample: low"], "2 h after, alone"),
    ([(3.0, 23)], True, 3.0, ["23 h after this sample: low"], "23 h after: within"),
    ([(3.0, 24)], True, 3.0, ["24 h after this sample: low"], "24 h after: the window's edge, within"),
    ([(3.0, -24)], True, 3.0, ["24 h before this sample: low"], "24 h before: the window's edge, within"),
    ([(3.0, 25)], False, None, ["check potassium", "potassium 3 mmol/L (2026-01-17, 25 h after this sample)"], "25 h after"),
    ([(3.0, 72)], False, None, ["On record but not judged", "3 days after this sample"], "3 days after"),
    ([(4.0, 1)], False, 4.0, [], "a normal one after the sample, alone: quoted"),
    ([(4.2, -2), (4.0, 1)], False, 4.0, [], "none low: the nearest decides, after the sample"),
    ([(4.2, -1), (4.0, 1)], False, 4.2, [], "equally near: the one before the sample"),
    ([(3.4, -2), (3.1, 5)], True, 3.4, ["2 h before this sample: low"], "two low: the nearest low is named"),
    ([(4.0, 0), (3.2, 20)], True, 3.2, ["2026-01-16, at this sample: normal"], "a low one later in the window counts"),
    ([(3.0, -20), (4.4, 0)], True, 3.0, ["Nearest this sample: potassium 4.4 mmol/L"], "a low one earlier counts"),
    ([(4.0, 0), (3.0, 30)], False, 4.0, ["30 h after this sample"], "the low one is outside: named, not judged"),
]


@pytest.mark.parametrize(("results", "hypo", "judged", "words", "note"), WINDOW)
def test_potassium_window_around_the_sample(
    k: Knowledge, results: list[tuple[float, float]], hypo: bool, judged: float | None, words: list[str], note: str
) -> None:
    p = adult()
    for value, hours in results:
        p.lab(K, value, "mmol/L", at(hours))
    f = mg_of(p, k)
    assert f.hypokalemia is hypo, note
    assert [j.m.value for j in f.judged if j.name == "potassium"] == ([judged] if judged is not None else []), note
    text = " ".join(f.electrolytes)
    for w in words:
        assert w in text, (note, w, text)
    assert ("Hypokalemia present" in text) is hypo, note
    assert f.arrhythmia_risk == ("moderate" if hypo else "low"), note


def test_severe_hypomagnesemia_names_a_later_low_potassium(k: Knowledge) -> None:
    p = adult(1.0)
    p.lab(K, 3.0, "mmol/L", at(3))
    f = mg_of(p, k)
    assert f.hypokalemia and f.arrhythmia_risk == "high"
    assert any(r.startswith("hypokalemia: potassium 3 mmol/L") for r in f.arrhythmia_rationale)


def test_laboratory_flag_after_the_sample_counts(k: Knowledge) -> None:
    p = adult()
    p.lab(K, 3.6, "mmol/L", at(4), flag="L")  # the laboratory's flag decides, after the sample too
    assert mg_of(p, k).hypokalemia


def test_day_only_result_the_next_day_is_within_the_window(k: Knowledge) -> None:
    p = adult()
    p.lab(K, 3.0, "mmol/L", "2026-01-17")
    assert mg_of(p, k).hypokalemia


def test_undated_sample_still_judges_nothing(k: Knowledge) -> None:
    p = adult(sample="")
    p.lab(K, 3.0, "mmol/L", at(1))
    f = mg_of(p, k)
    assert not f.hypokalemia and any("has no date" in e for e in f.electrolytes)


# --- calcium: the same window -----------------------------------------------------------------------------


def test_later_low_total_calcium_is_hypocalcemia(k: Knowledge) -> None:
    p = adult()
    p.lab(CA, 9.0, "mg/dL", SAMPLE)
    p.lab(CA, 7.9, "mg/dL", at(3))
    f = mg_of(p, k)
    text = " ".join(f.electrolytes)
    assert f.hypocalcemia and f.arrhythmia_risk == "moderate"
    assert "Hypocalcemia present" in text and "total calcium 7.9 mg/dL, 2026-01-16, 3 h after this sample: low" in text
    assert "Nearest this sample: total calcium 9 mg/dL, 2026-01-16, at this sample: normal" in text


def test_later_low_ionized_calcium_decides_over_a_normal_total(k: Knowledge) -> None:
    p = adult()
    p.lab(CA, 9.0, "mg/dL", SAMPLE)
    p.lab(CA_ION, 1.05, "mmol/L", at(6))
    f = mg_of(p, k)
    assert f.hypocalcemia and "ionized calcium 1.05 mmol/L, 2026-01-16, 6 h after this sample: low" in " ".join(f.electrolytes)


def test_calcium_outside_the_window_after_is_not_judged(k: Knowledge) -> None:
    p = adult()
    p.lab(CA, 7.9, "mg/dL", at(25))
    f = mg_of(p, k)
    text = " ".join(f.electrolytes)
    assert not f.hypocalcemia and "No calcium result from 24 h before to 24 h after this magnesium sample" in text
    assert "total calcium 7.9 mg/dL (2026-01-17, 25 h after this sample)" in text


def test_window_after_is_a_labinterp_choice_with_its_reason(k: Knowledge) -> None:
    e = k.magnesium.electrolytes
    assert e.max_after_hours == 24
    assert e.max_after_source.startswith("labinterp choice") and "reason" in e.max_after_source
    assert "{before" in e.check_potassium_window_text and "{after" in e.check_potassium_window_text


# --- 2. the renal reason sits inside its sentence -----------------------------------------------------------

DANGLING = re.compile(r"\.\s*\((?:no |not |creatinine|eGFR)")  # "... monitoring. (no creatinine or eGFR result)"


@pytest.mark.parametrize(
    ("mg", "birth", "note"),
    [(1.3, "1960-01-01", "mild, adult"), (1.0, "1960-01-01", "severe, adult"), (1.3, "2015-01-01", "child")],
)
def test_no_creatinine_reason_sits_inside_the_sentence(k: Knowledge, mg: float, birth: str, note: str) -> None:
    p = P("r", "female", birth, "")
    p.lab(MG, mg, "mg/dL", SAMPLE)
    f = mg_of(p, k)
    first = f.guidance[0]
    assert first.startswith("Renal function not assessable (no creatinine or eGFR result): check creatinine before repletion;")
    assert first.endswith("asks for close monitoring."), note
    for line in f.guidance:
        assert not DANGLING.search(line), (note, line)
    text, _ = report(p, k)
    assert not DANGLING.search(text), text
    assert "monitoring. (" not in text


def test_hypermagnesemia_without_creatinine_reason_inside_the_sentence(k: Knowledge) -> None:
    p = P("h", "female", "1960-01-01", "")
    p.lab(MG, 3.5, "mg/dL", SAMPLE)
    lines = mg_of(p, k).guidance
    line = next(g for g in lines if g.startswith("Renal function not assessable"))
    assert line.startswith("Renal function not assessable (no creatinine or eGFR result): check creatinine;")
    assert line.endswith("from magnesium therapy."), line
    assert not any(DANGLING.search(g) for g in lines)


def test_hypermagnesemia_with_creatinine_but_no_estimate_reason_inside(k: Knowledge) -> None:
    p = P("h", "female", None, "")  # no birth date: no eGFR from the creatinine
    p.lab(MG, 3.5, "mg/dL", SAMPLE)
    p.lab(SCR, 1.9, "mg/dL", SAMPLE)
    lines = mg_of(p, k).guidance
    line = next(g for g in lines if g.startswith("Renal function not assessable"))
    assert line.startswith("Renal function not assessable from the renal results on record (") and "); the source warns" in line
    assert line.endswith("from magnesium therapy."), line


def test_renal_texts_must_carry_the_reason_placeholder(k: Knowledge) -> None:
    r = k.magnesium.renal.model_dump()
    with pytest.raises(ValueError, match="needs the placeholder"):
        MgRenal(**{**r, "unknown_text": "Renal function not assessable: check creatinine."})
    h = k.magnesium.hypermagnesemia.model_dump()
    with pytest.raises(ValueError, match="needs the placeholder"):
        MgHyper(**{**h, "renal_unknown": "Renal function not assessable: check creatinine."})
