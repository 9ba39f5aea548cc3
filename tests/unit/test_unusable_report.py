"""A result that was received and recognised but cannot be used is answered with a report that says so,
when it is the patient's only result of its kind (issue 7 point 5: nothing is dropped silently)."""

from __future__ import annotations

from typing import Any

from labinterp.knowledge import Knowledge
from labinterp.pipeline import interpret_bundle
from tests.builders import MG, P, lzd_site
from tests.conftest import NOW


def _reports(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DiagnosticReport"]


def test_only_linezolid_result_unusable_gets_a_report_naming_it(site_k: Knowledge) -> None:
    p = P("u1", "female", "1960-01-01", "")
    obs = p.lab(lzd_site(), 5.0, "mg/100 mL", "2026-01-15T08:00:00+01:00", ucum="mg/100.mL", kind="lzd")
    run = interpret_bundle(p.bundle(), site_k, NOW)  # validated with the R4B models
    reports = _reports(run.bundle)
    assert len(reports) == 1
    dr = reports[0]
    assert dr["result"] == [{"reference": f"Observation/{obs['id']}"}] and "conclusionCode" not in dr
    assert "not interpretable" in dr["conclusion"] and "unknown unit" in dr["conclusion"]
    assert [p.about for p in run.patients[0].findings.record.problems] == ["linezolid"]


def test_usable_result_beside_an_unusable_one_gets_the_normal_report(site_k: Knowledge) -> None:
    p = P("u2", "female", "1960-01-01", "")
    p.lab(lzd_site(), 5.0, "mg/100 mL", "2026-01-14T08:00:00+01:00", ucum="mg/100.mL", kind="lzd")
    p.lab(lzd_site(), 5.0, "mg/L", "2026-01-15T08:00:00+01:00", kind="lzd")
    p.lab(MG, 1.1, "mg/dL", "2026-01-15T08:00:00+01:00")
    reports = _reports(interpret_bundle(p.bundle(), site_k, NOW).bundle)
    conclusions = " ".join(r["conclusion"] for r in reports)
    assert "not interpretable" not in conclusions and len(reports) == 2
    assert all("unknown unit" in r["text"]["div"] for r in reports)  # listed under "Not used" in each report
