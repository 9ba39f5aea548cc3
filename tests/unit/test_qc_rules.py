"""Formulation QC rules and the batch's report (SPEC section 5): every measure graded against the site's limits
(mappings/sites/example-compounding-lab), "no limit set" without one, and the conclusion: released, not released
with the failing measures, incomplete with the missing ones (or preliminary results, or no limits at all)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import pytest

from labinterp.compose.provenance import device
from labinterp.compose.qc import compose_batch, model_value, release_plot
from labinterp.compose.view import View
from labinterp.extract.batch_facts import BatchRecord, ParticleCount, QcValue, QualitativeFinding
from labinterp.extract.facts import SourceRef
from labinterp.knowledge import Knowledge, load_knowledge
from labinterp.rules.qc import (
    FAIL,
    INCOMPLETE,
    MISSING,
    NO_LIMIT,
    NOT_GRADED,
    NOT_RELEASED,
    PASS,
    RELEASED,
    BatchFinding,
    interpret_batch,
    number,
)
from labinterp.validate import validate_bundle

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "mappings" / "sites" / "example-compounding-lab"
NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
PRODUCT = ("urn:example:compounding-lab:products", "KMS-01")
ROOM, OVEN, FRIDGE = "27 ± 2 °C room", "40 ± 2 °C", "refrigerated 2–8 °C"
WATER, PH74, PH12 = "distilled water", "pH 7.4 phosphate buffer", "pH 1.2 hydrochloric acid buffer"


@pytest.fixture(scope="module")
def k() -> Knowledge:
    return load_knowledge(SITE)


def src(n: int | str) -> SourceRef:
    return SourceRef("Observation", f"o{n}", "1", f"Observation/o{n}")


_counter = iter(range(10_000))


def v(measure: str, value: float, unit: str, **conditions: object) -> QcValue:
    return QcValue(measure, value, unit, f"{value} {unit}", src(next(_counter)), **conditions)  # type: ignore[arg-type]


def higuchi(kh: float, hours: list[float]) -> list[QcValue]:
    return [v("drug_released", min(kh * math.sqrt(h), 100.0), "%", elapsed_h=h) for h in hours]


def good_values(**change: float) -> list[QcValue]:
    """A batch meeting every example limit of KMS-01 (the site overlay): each value can be changed by keyword."""
    ee_actual = change.get("ee_actual", 8.6)
    values = [
        v("volume_mean_diameter", change.get("vmd", 140.0), "um"),
        v("drug_content_actual", ee_actual, "mg"),
        v("drug_content_theoretical", 10.0, "mg"),
        v("zeta_potential", change.get("zeta", 28.0), "mV"),
        *higuchi(change.get("kh", 19.0), [1, 2, 4, 6, 8, 12, 16, 24]),
    ]
    for medium in (WATER, PH74):
        for h, w in ((1, 180.0), (4, 260.0), (8, change.get("swollen_8h", 300.0))):
            values.append(v("swollen_weight", w, "mg", elapsed_h=float(h), medium=medium, dry_weight_mg=100.0))
    for h, w in ((1, 110.0), (4, 125.0), (8, 140.0)):  # alginate hardly swells in acid
        values.append(v("swollen_weight", w, "mg", elapsed_h=float(h), medium=PH12, dry_weight_mg=100.0))
    for cond, loss in ((ROOM, 0.96), (OVEN, 0.9), (FRIDGE, 0.99)):
        values += [
            v("stability_drug_content", 100.0, "%", elapsed_d=0.0, condition=cond),
            v("stability_drug_content", 100.0 * (1 + loss) / 2, "%", elapsed_d=30.0, condition=cond),
            v("stability_drug_content", 100.0 * change.get("loss", loss), "%", elapsed_d=60.0, condition=cond),
        ]
    return values


def diameters(n: int = 100, centre: float = 140.0, spread: float = 0.25) -> tuple[float, ...]:
    """A deterministic log-normal-like count (quantiles of a normal on the log scale)."""
    from statistics import NormalDist

    z = NormalDist()
    return tuple(round(centre * math.exp(spread * z.inv_cdf((i + 0.5) / n)), 2) for i in range(n))


def batch(
    values: list[QcValue] | None = None, counts: tuple[float, ...] | None = None, product: tuple[str, str] = PRODUCT
) -> BatchRecord:
    r = BatchRecord(
        SourceRef("Substance", "b1", "1", "Substance/b1"),
        product[1],
        product[0],
        "Ketoprofen microspheres 10 %",
        "L-2026-001",
        specimens=[SourceRef("Specimen", "s1", "1", "Specimen/s1")],
        values=good_values() if values is None else values,
    )
    r.counts.append(ParticleCount(diameters() if counts is None else counts, "um", src("count")))
    r.qualitative.append(QualitativeFinding("sem", "spherical particles with a smooth surface", src("sem")))
    return r


def results(f: BatchFinding, measure: str) -> list[tuple[str, str]]:
    return [(r.status, r.detail) for r in f.results if r.measure == measure]


def test_a_batch_within_every_limit_is_released(k: Knowledge) -> None:
    f = interpret_batch(batch(), k, NOW)
    assert f.conclusion == RELEASED, f.reasons
    assert f.specification == "Ketoprofen microspheres 10 %, specification KMS-01 version 3"
    graded = {r.measure: r.status for r in f.results if r.status in (PASS, FAIL)}
    for measure in ("volume_mean_diameter", "span", "share_outside_range", "entrapment_efficiency", "t50", "zeta_potential"):
        assert graded[measure] == PASS, measure
    assert [s for s, _ in results(f, "retained_drug_content")] == [PASS, PASS, PASS]
    assert all("KMS-01 version 3" in r.limit for r in f.results if r.status == PASS)
    assert not f.failing and not f.missing


def test_entrapment_efficiency_is_actual_over_theoretical_and_a_low_one_fails(k: Knowledge) -> None:
    f = interpret_batch(batch(good_values(ee_actual=6.2)), k, NOW)
    ee = f.result("entrapment_efficiency")[0]
    assert ee.value == pytest.approx(62.0) and ee.status == FAIL
    assert f.conclusion == NOT_RELEASED
    assert any("Entrapment efficiency" in x and "62 %" in x for x in f.failing)


def test_the_lab_s_own_entrapment_efficiency_is_used_without_the_two_contents(k: Knowledge) -> None:
    values = [x for x in good_values() if not x.measure.startswith("drug_content")]
    f = interpret_batch(batch([*values, v("entrapment_efficiency", 91.0, "%")]), k, NOW)
    ee = f.result("entrapment_efficiency")[0]
    assert ee.value == 91.0 and ee.detail == "as reported by the laboratory" and ee.status == PASS


def test_contents_in_units_that_cannot_be_compared_are_left_out_and_named(k: Knowledge) -> None:
    values = [x for x in good_values() if x.measure != "drug_content_theoretical"]
    r = batch([*values, v("drug_content_theoretical", 10.0, "%")])
    f = interpret_batch(r, k, NOW)
    assert f.result("entrapment_efficiency")[0].status == MISSING
    assert f.conclusion == INCOMPLETE
    assert any("cannot be compared" in p.what for p in r.problems)


def test_particle_size_distribution_from_the_count(k: Knowledge) -> None:
    f = interpret_batch(batch(), k, NOW)
    assert f.size is not None and f.size.n == 100
    assert f.result("d50")[0].value == pytest.approx(140.0, rel=0.02)
    assert f.result("span")[0].value == pytest.approx((f.size.d90 - f.size.d10) / f.size.d50)
    assert f.result("share_outside_range")[0].value == 0.0
    assert f.result("d10")[0].status == NO_LIMIT  # reported, with no limit set


def test_particles_outside_1_to_1000_um_and_a_wide_span_fail(k: Knowledge) -> None:
    counts = (*diameters(96, spread=0.6), 0.5, 1200.0, 1500.0, 2000.0)
    f = interpret_batch(batch(counts=counts), k, NOW)
    share = f.result("share_outside_range")[0]
    assert share.value == pytest.approx(4.0) and share.status == FAIL
    assert share.detail == "1 below 1 µm, 3 above 1000 µm, of 100"
    assert f.result("span")[0].status == FAIL
    assert f.conclusion == NOT_RELEASED


def test_release_at_a_limit_s_time_is_interpolated_and_t50_t80(k: Knowledge) -> None:
    f = interpret_batch(batch(), k, NOW)
    at12 = f.result("drug_released")[0]
    assert at12.value == pytest.approx(19.0 * math.sqrt(12)) and at12.status == PASS and at12.detail == "at 12 h"
    assert f.release is not None and f.release.t50 == pytest.approx(
        6 + 2 * (50 - 19 * math.sqrt(6)) / (19 * math.sqrt(8) - 19 * math.sqrt(6))
    )
    assert f.best_model == "Higuchi"
    higuchi_fit = next(m for m in f.fits if m.name == "Higuchi")
    assert higuchi_fit.params["kH"] == pytest.approx(19.0, rel=1e-3)


def test_release_limit_beyond_the_last_time_point_is_missing_not_extrapolated(k: Knowledge) -> None:
    values = [x for x in good_values() if not (x.measure == "drug_released" and (x.elapsed_h or 0) > 8)]
    f = interpret_batch(batch(values), k, NOW)
    assert f.result("drug_released")[0].status == MISSING
    assert f.conclusion == INCOMPLETE


def test_a_release_point_without_its_time_is_named_and_left_out(k: Knowledge) -> None:
    r = batch([*good_values(), v("drug_released", 50.0, "%")])
    f = interpret_batch(r, k, NOW)
    assert any("needs its time" in p.what for p in r.problems)
    assert f.release is not None and len(f.release.points) == 8


def test_peppas_exponent_is_read_only_where_a_verified_source_gives_a_meaning(k: Knowledge) -> None:
    fickian = [v("drug_released", 20.0 * h**0.3, "%", elapsed_h=float(h)) for h in (1, 2, 3, 4, 6, 8, 12)]
    f = interpret_batch(batch([*good_values()[:4], *fickian]), k, NOW)
    assert f.peppas is not None and f.peppas.params["n"] == pytest.approx(0.3, abs=0.01)
    assert f.peppas_meaning.startswith("Fickian diffusion") and "Ritger" in f.peppas_meaning
    anomalous = [v("drug_released", 8.0 * h**0.62, "%", elapsed_h=float(h)) for h in (1, 2, 3, 4, 6, 8, 12)]
    g = interpret_batch(batch([*good_values()[:4], *anomalous]), k, NOW)
    assert g.peppas is not None and g.peppas.params["n"] == pytest.approx(0.62, abs=0.01)
    assert g.peppas_meaning == ""  # no verified source above 0.43: the exponent is reported, not interpreted


def test_swelling_index_is_weight_gain_over_dry_weight_per_medium(k: Knowledge) -> None:
    f = interpret_batch(batch(good_values(swollen_8h=480.0)), k, NOW)
    assert f.swelling[PH74] == [(1.0, 80.0), (4.0, 160.0), (8.0, 380.0)]
    by_medium = {r.detail: r.status for r in f.result("swelling_index")}
    assert by_medium[f"{PH74}, at 8 h"] == FAIL  # the limit is for pH 7.4 only
    assert by_medium[f"{WATER}, at 8 h"] == NO_LIMIT


def test_stability_is_retained_relative_to_day_zero_per_condition_and_graded_at_60_days(k: Knowledge) -> None:
    f = interpret_batch(batch(good_values(loss=0.8)), k, NOW)
    assert f.stability[OVEN][-1] == (60.0, pytest.approx(80.0))
    assert {s for s, _ in results(f, "retained_drug_content")} == {FAIL}
    assert f.conclusion == NOT_RELEASED


def test_a_stability_study_not_yet_at_60_days_is_incomplete(k: Knowledge) -> None:
    values = [x for x in good_values() if not (x.measure == "stability_drug_content" and x.elapsed_d == 60.0)]
    f = interpret_batch(batch(values), k, NOW)
    assert [s for s, _ in results(f, "retained_drug_content")] == [MISSING] * 3
    assert f.conclusion == INCOMPLETE and len(f.missing) == 3


def test_a_limited_measure_never_measured_is_missing(k: Knowledge) -> None:
    values = [x for x in good_values() if x.measure != "zeta_potential"]
    f = interpret_batch(batch(values), k, NOW)
    assert results(f, "zeta_potential") == [(MISSING, "")]
    assert f.conclusion == INCOMPLETE


@pytest.mark.parametrize("code", ["OTHER-9", "DMS-02"])  # a product the site does not know; one it lists with no limits
def test_without_limits_for_the_product_nothing_is_graded_and_the_batch_is_not_released(k: Knowledge, code: str) -> None:
    f = interpret_batch(batch(product=("urn:example:compounding-lab:products", code)), k, NOW)
    assert {r.status for r in f.results} <= {NO_LIMIT, NOT_GRADED}
    assert f.conclusion == INCOMPLETE and "no acceptance limits" in f.reasons[0]


def test_the_base_mappings_set_no_limit_for_any_product() -> None:
    f = interpret_batch(batch(), load_knowledge(), NOW)
    assert f.specification == "" and f.conclusion == INCOMPLETE


def test_preliminary_results_within_limits_do_not_release(k: Knowledge) -> None:
    values = good_values()
    values[0] = QcValue("volume_mean_diameter", 140.0, "um", "140 um", src("p"), status="preliminary")
    f = interpret_batch(batch(values), k, NOW)
    assert f.conclusion == INCOMPLETE and f.preliminary and "preliminary" in f.reasons[0]


def test_qualitative_findings_are_listed_not_graded(k: Knowledge) -> None:
    f = interpret_batch(batch(), k, NOW)
    sem = f.result("sem")[0]
    assert sem.status == NOT_GRADED and sem.shown == "spherical particles with a smooth surface"


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.0, "0"), (1234.5, "1235"), (62.0, "62"), (0.123456, "0.12"), (19.05, "19.1"), (-28.04, "-28"), (0.005, "0.01")],
)
def test_numbers_as_printed(value: float, text: str) -> None:
    assert number(value) == text


def test_the_report_validates_has_no_subject_and_carries_the_conclusion(k: Knowledge) -> None:
    f = interpret_batch(batch(good_values(ee_actual=6.2)), k, NOW)
    out = compose_batch(f, k, NOW, device(k))
    report, prov = out
    dr = report.resource
    assert dr["resourceType"] == "DiagnosticReport" and "subject" not in dr
    assert dr["specimen"] == [{"reference": "Specimen/s1"}]
    assert dr["conclusionCode"][0]["coding"][0]["system"] == "urn:labinterp:formulation-qc"
    assert "NOT released" in dr["conclusion"] and "Entrapment efficiency" in dr["conclusion"]
    assert "reason" not in prov.resource
    from labinterp.compose import transaction

    validate_bundle(transaction([device(k), *out]))
    assert isinstance(report.view, View) and report.view.plots


def test_the_release_plot_has_the_observed_profile_and_each_model(k: Knowledge) -> None:
    f = interpret_batch(batch(), k, NOW)
    plot = release_plot(f)
    assert plot is not None
    names = [c.label for c in plot.curves]
    assert names[0] == "Observed" and {"zero-order", "first-order", "Higuchi"} <= set(names)
    higuchi_curve = next(c for c in plot.curves if c.label == "Higuchi")
    assert higuchi_curve.points[-1][1] == pytest.approx(min(19.0 * math.sqrt(24), 100.0), rel=1e-3)
    fit = next(m for m in f.fits if m.name == "Higuchi")
    assert model_value(fit, 4.0) == pytest.approx(fit.params["kH"] * 2)


def test_the_demo_s_site_overlay_carries_the_example_laboratory_s_limits_unchanged() -> None:
    """The demo's overlay (examples/site-mappings) holds a copy of the example laboratory's limits: the same bytes."""
    demo = ROOT / "service" / "labinterp" / "examples" / "site-mappings" / "qc_limits.toml"
    assert demo.read_bytes() == (SITE / "qc_limits.toml").read_bytes()
