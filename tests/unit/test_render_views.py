"""The rendered report says what the report's conclusion says (issue 7): the course's trend with its reference
change value, earlier levels left out of it, the renal sentence with its bounds and staleness, and the
laboratory's disagreeing flag."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

from labinterp.knowledge import Knowledge
from labinterp.pipeline import interpret_bundle
from tests.builders import MG_MOL, SCR, P, lzd_site
from tests.conftest import NOW
from tests.unit.test_linezolid_safety import SAMPLE, course_with_troughs


def _html(bundle: dict[str, Any], title: str) -> str:
    for e in bundle["entry"]:
        r = e["resource"]
        if r["resourceType"] == "DiagnosticReport" and r["code"].get("text", "").startswith(title):
            form = next(f for f in r["presentedForm"] if f["contentType"] == "text/html")
            return base64.b64decode(form["data"]).decode()
    raise AssertionError(f"no {title} report")


def test_linezolid_page_shows_the_course_trend_and_what_was_left_out(site_k: Knowledge) -> None:
    p = course_with_troughs([3.0, 4.5, 5.0])
    p.lab(lzd_site(), 15.0, "mg/L", (SAMPLE - timedelta(hours=10)).isoformat(), kind="lzd")  # 2 h after a dose
    html = _html(interpret_bundle(p.bundle(), site_k, NOW).bundle, "Linezolid")
    assert "Trend over the 3 troughs of this course" in html and "reference change value" in html
    assert "not a trough (timing against the recorded doses): not part of the trend" in html


def test_magnesium_page_states_the_lab_flag_and_a_stale_creatinine(site_k: Knowledge) -> None:
    p = P("rv", "female", "1950-01-01", "")
    mg = p.lab(MG_MOL, 0.65, "mmol/L", SAMPLE.isoformat(), flag="L", low=0.7)
    assert mg["interpretation"]
    p.lab(SCR, 1.0, "mg/dL", (SAMPLE - timedelta(days=30)).isoformat())
    html = _html(interpret_bundle(p.bundle(), site_k, NOW).bundle, "Serum magnesium")
    assert "laboratory flags this result low" in html and "stale" in html


def test_a_censored_result_keeps_its_comparator_on_the_range_bar(site_k: Knowledge) -> None:
    from tests.unit.test_linezolid_safety import lzd_patient

    html = _html(interpret_bundle(lzd_patient(8.0, comparator=">").bundle(), site_k, NOW).bundle, "Linezolid")
    assert "&gt;8.0 mg/L (censored: the marker is at the limit)" in html
