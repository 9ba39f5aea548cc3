"""The numerical core of microsphere QC: size statistics, entrapment / swelling / retention, the release summary and
the release-model fits, checked against hand-computed values and synthetic profiles with known parameters."""

from __future__ import annotations

import math
import tomllib
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.optimize import OptimizeWarning

from labinterp.rules import qc_math
from labinterp.rules.qc_math import (
    ExponentBand,
    ModelFit,
    entrapment_efficiency,
    exponent_meaning,
    fit_release,
    release_summary,
    retained_pct,
    size_stats,
    swelling_index,
)

QC_MODELS = Path(__file__).resolve().parents[2] / "mappings" / "qc_models.toml"


def load_qc_models() -> dict[str, Any]:
    with QC_MODELS.open("rb") as fh:
        return tomllib.load(fh)


def sphere_bands() -> list[ExponentBand]:
    return [ExponentBand(b.get("upto"), b["meaning"]) for b in load_qc_models()["peppas_exponent_spheres"]]


def by_name(fits: list[ModelFit]) -> dict[str, ModelFit]:
    return {f.name: f for f in fits}


# --- size_stats ------------------------------------------------------------------------------------------------

# Ten diameters (um), sorted: x[0..9] = 1, 10, 20, 30, 40, 50, 60, 70, 1000, 1200. 1 and 1000 are the range's ends
# and count as inside; only 1200 is outside. Given shuffled on purpose.
DIAMETERS = [60, 1, 1200, 20, 40, 10, 1000, 30, 70, 50]


def test_size_percentiles_by_linear_interpolation_between_order_statistics() -> None:
    s = size_stats(DIAMETERS, 1, 1000)
    # h = (n - 1) p = 9 p: D10 at h = 0.9 -> 1 + 0.9 (10 - 1) = 9.1; D50 at h = 4.5 -> 40 + 0.5 (50 - 40) = 45;
    # D90 at h = 8.1 -> 1000 + 0.1 (1200 - 1000) = 1020.
    assert s.n == 10
    assert s.basis == "number"
    assert s.d10 == pytest.approx(9.1)
    assert s.d50 == pytest.approx(45)
    assert s.d90 == pytest.approx(1020)
    assert s.span == pytest.approx((1020 - 9.1) / 45)
    assert s.mean == pytest.approx(2481 / 10)


def test_size_d43_is_the_volume_weighted_mean() -> None:
    s = size_stats([10, 20, 30], 1, 1000)
    # sum d^4 = 10^4 + 20^4 + 30^4 = 10000 + 160000 + 810000 = 980000; sum d^3 = 1000 + 8000 + 27000 = 36000
    assert s.d43 == pytest.approx(980000 / 36000)
    assert s.mean == pytest.approx(20)
    # three particles: D10 at h = 0.2 -> 12; D50 = 20; D90 at h = 1.8 -> 28
    assert (s.d10, s.d50, s.d90) == pytest.approx((12, 20, 28))


def test_size_range_ends_count_as_inside() -> None:
    s = size_stats(DIAMETERS, 1, 1000)
    assert (s.below, s.above) == (0, 1)
    assert s.share_outside_pct == pytest.approx(10)


def test_size_counts_below_and_above() -> None:
    s = size_stats([0.5, 0.99, 1, 5, 1000, 1000.5], 1, 1000)
    assert (s.below, s.above) == (2, 1)
    assert s.share_outside_pct == pytest.approx(50)


@pytest.mark.parametrize(
    ("diameters", "message"),
    [
        ([], "at least 2"),
        ([50], "at least 2"),
        ([50, 0], "positive"),
        ([50, -3], "positive"),
        ([50, math.nan], "finite"),
        ([50, math.inf], "finite"),
    ],
)
def test_size_rejects_bad_counts(diameters: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        size_stats(diameters, 1, 1000)


def test_size_rejects_a_bad_range() -> None:
    with pytest.raises(ValueError, match="range"):
        size_stats([10, 20], 1000, 1)
    with pytest.raises(ValueError, match="range"):
        size_stats([10, 20], 0, 1000)


# --- entrapment, swelling, retention ---------------------------------------------------------------------------


def test_entrapment_efficiency() -> None:
    assert entrapment_efficiency(43.7, 50) == pytest.approx(87.4)
    assert entrapment_efficiency(0, 50) == 0


@pytest.mark.parametrize(("actual", "theoretical"), [(10, 0), (10, -5), (-1, 50), (math.nan, 50), (10, math.inf)])
def test_entrapment_efficiency_rejects(actual: float, theoretical: float) -> None:
    with pytest.raises(ValueError):
        entrapment_efficiency(actual, theoretical)


def test_swelling_index() -> None:
    assert swelling_index(20, 35) == pytest.approx(75)  # 15 mg gained on 20 mg dry
    assert swelling_index(20, 18) == pytest.approx(-10)  # weight lost (erosion)


@pytest.mark.parametrize(("dry", "swollen"), [(0, 10), (-2, 10), (10, -1), (math.nan, 10), (10, math.inf)])
def test_swelling_index_rejects(dry: float, swollen: float) -> None:
    with pytest.raises(ValueError):
        swelling_index(dry, swollen)


def test_retained_pct() -> None:
    assert retained_pct(98.5, 95.3) == pytest.approx(95.3 / 98.5 * 100)
    assert retained_pct(40, 40) == pytest.approx(100)


@pytest.mark.parametrize(("initial", "later"), [(0, 10), (-1, 10), (10, -1), (math.nan, 10), (10, math.nan)])
def test_retained_pct_rejects(initial: float, later: float) -> None:
    with pytest.raises(ValueError):
        retained_pct(initial, later)


# --- release_summary -------------------------------------------------------------------------------------------


def test_release_summary_interpolates_t50_and_t80() -> None:
    s = release_summary([(1, 20), (2, 40), (4, 60), (8, 90)])
    assert s.points == ((1, 20), (2, 40), (4, 60), (8, 90))
    assert s.max_released == 90
    assert s.t50 == pytest.approx(3)  # 2 + (50 - 40)/(60 - 40) * (4 - 2)
    assert s.t80 == pytest.approx(4 + 20 / 30 * 4)  # 4 + (80 - 60)/(90 - 60) * (8 - 4)


def test_release_summary_from_origin_when_the_first_point_is_above() -> None:
    s = release_summary([(2, 60), (4, 85)])
    assert s.t50 == pytest.approx(2 * 50 / 60)  # from (0, 0) to (2, 60)
    assert s.t80 == pytest.approx(2 + 20 / 25 * 2)
    assert s.points[0] == (2, 60)  # (0, 0) is not added to the points


def test_release_summary_exactly_at_a_point() -> None:
    s = release_summary([(0, 0), (1, 30), (3, 50), (6, 80)])
    assert s.t50 == pytest.approx(3)
    assert s.t80 == pytest.approx(6)


def test_release_summary_never_reached() -> None:
    s = release_summary([(1, 10), (2, 25), (4, 45)])
    assert s.t50 is None
    assert s.t80 is None
    assert s.max_released == 45


def test_release_summary_sorts_and_averages_repeated_times() -> None:
    s = release_summary([(4, 70), (1, 18), (2, 38), (1, 22), (2, 42), (4, 74)])
    assert s.points == ((1, 20), (2, 40), (4, 72))
    assert s.t50 == pytest.approx(2 + 10 / 32 * 2)
    assert s.t80 is None


@pytest.mark.parametrize("points", [[], [(-1, 10)], [(1, math.nan)], [(math.inf, 10)]])
def test_release_summary_rejects(points: list[tuple[float, float]]) -> None:
    with pytest.raises(ValueError):
        release_summary(points)


# --- fit_release: synthetic profiles with known parameters -----------------------------------------------------

HOURS = [float(h) for h in range(1, 13)]
FIRST_ORDER_HOURS = [0.5, 1, 2, 3, 4, 6, 8, 10, 12, 16, 20, 24]


def test_zero_order_profile_exact() -> None:
    fits, _, best = fit_release([(t, 5 * t) for t in HOURS], 60)
    assert best == "zero-order"
    zero = by_name(fits)["zero-order"]
    assert zero.params["k0"] == pytest.approx(5, rel=0.01)
    assert zero.r2 == pytest.approx(1)
    assert zero.equation == "F = k0·t"


def test_zero_order_profile_with_seeded_noise() -> None:
    rng = np.random.default_rng(20261121)
    points = [(t, 5 * t + float(rng.normal(0, 0.5))) for t in HOURS]
    fits, _, best = fit_release(points, 60)
    assert best == "zero-order"
    assert by_name(fits)["zero-order"].params["k0"] == pytest.approx(5, rel=0.01)


def test_first_order_profile() -> None:
    points = [(t, 100 * (1 - math.exp(-0.2 * t))) for t in FIRST_ORDER_HOURS]
    fits, _, best = fit_release(points, 60)
    assert best == "first-order"
    assert by_name(fits)["first-order"].params["k1"] == pytest.approx(0.2, rel=0.01)


def test_first_order_profile_with_seeded_noise() -> None:
    rng = np.random.default_rng(7)
    points = [(t, 100 * (1 - math.exp(-0.2 * t)) + float(rng.normal(0, 0.5))) for t in FIRST_ORDER_HOURS]
    fits, _, best = fit_release(points, 60)
    assert best == "first-order"
    assert by_name(fits)["first-order"].params["k1"] == pytest.approx(0.2, rel=0.02)


def test_higuchi_profile() -> None:
    fits, _, best = fit_release([(t, 10 * math.sqrt(t)) for t in (1, 4, 9, 16, 25, 36, 49, 64)], 60)
    assert best == "Higuchi"
    assert by_name(fits)["Higuchi"].params["kH"] == pytest.approx(10, rel=0.01)


def test_korsmeyer_peppas_on_the_first_sixty_percent() -> None:
    cut = load_qc_models()["peppas"]["max_released_pct"]
    hours = [0.5, 1, 2, 3, 4, 6, 8, 12, 16, 20, 24, 30, 36, 42]
    points = [(t, 8 * t**0.62) for t in hours]
    early = [p for p in points if p[1] <= cut]
    assert 4 <= len(early) < len(points)  # the cut really leaves the late points out
    fits, peppas, _ = fit_release(points, cut)
    assert peppas is not None
    assert peppas.name == "Korsmeyer-Peppas"
    assert peppas.n_points == len(early)
    assert peppas.params["n"] == pytest.approx(0.62, abs=0.01)
    assert peppas.params["kKP"] == pytest.approx(8, rel=0.01)
    assert peppas.note == f"fitted on the {len(early)} points up to {cut:g} % released"
    assert {f.name for f in fits} == {"zero-order", "first-order", "Higuchi"}  # Peppas never among the three
    assert exponent_meaning(peppas.params["n"], sphere_bands()) == ""  # above 0.43: no verified source, no reading


def test_korsmeyer_peppas_with_seeded_noise() -> None:
    rng = np.random.default_rng(11)
    hours = [0.25, 0.5, 1, 2, 3, 4, 6, 8, 12, 16, 20, 24]
    points = [(t, 8 * t**0.62 + float(rng.normal(0, 0.1))) for t in hours]
    _, peppas, _ = fit_release(points, 60)
    assert peppas is not None
    assert peppas.params["n"] == pytest.approx(0.62, abs=0.01)


def test_time_zero_points_are_not_fitted() -> None:
    fits, _, _ = fit_release([(0, 0), *[(t, 5 * t) for t in HOURS]], 60)
    assert all(f.n_points == len(HOURS) for f in fits)


def test_too_few_points_leave_the_model_out() -> None:
    assert fit_release([(1, 10), (2, 20)], 60) == ([], None, "")
    fits, peppas, best = fit_release([(1, 10), (2, 21), (4, 39)], 60)
    assert {f.name for f in fits} == {"zero-order", "first-order", "Higuchi"}  # 3 points: p + 2 for p = 1
    assert peppas is None  # Korsmeyer-Peppas has 2 parameters: needs 4 points
    assert best in {"zero-order", "first-order", "Higuchi"}


def test_too_few_points_below_the_cut_leave_peppas_out() -> None:
    points = [(1, 30), (2, 45), (3, 58), (4, 70), (6, 85), (8, 95)]
    fits, peppas, _ = fit_release(points, 60)
    assert len(fits) == 3
    assert peppas is None  # only 3 points at or below 60 %


def test_flat_profile_fits_nothing() -> None:
    assert fit_release([(1, 0), (2, 0), (4, 0), (8, 0)], 60) == ([], None, "")


def test_a_fit_that_does_not_converge_is_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("Optimal parameters not found: Number of calls to function has reached maxfev")

    monkeypatch.setattr(qc_math, "curve_fit", fail)
    assert fit_release([(t, 5 * t) for t in HOURS], 60) == ([], None, "")


def test_an_optimize_warning_leaves_the_fit_out(monkeypatch: pytest.MonkeyPatch) -> None:
    real = qc_math.curve_fit

    def warn_for_peppas(f: Any, *args: Any, **kwargs: Any) -> Any:
        if f is qc_math._peppas:
            warnings.warn("Covariance of the parameters could not be estimated", OptimizeWarning, stacklevel=2)
        return real(f, *args, **kwargs)

    monkeypatch.setattr(qc_math, "curve_fit", warn_for_peppas)
    fits, peppas, best = fit_release([(t, 5 * t) for t in HOURS], 60)
    assert peppas is None
    assert len(fits) == 3
    assert best == "zero-order"


def test_goodness_of_fit_by_hand() -> None:
    # Zero-order through the origin on (1, 10), (2, 21), (4, 39), (6, 61):
    # k0 = sum tF / sum t^2 = (10 + 42 + 156 + 366) / (1 + 4 + 16 + 36) = 574/57;
    # residuals F - k0 t = -4/57, 49/57, -73/57, 33/57 -> SSR = (16 + 2401 + 5329 + 1089)/57^2 = 8835/3249;
    # mean F = 131/4 = 32.75 -> SST = 22.75^2 + 11.75^2 + 6.25^2 + 28.25^2 = 1492.75.
    fits, _, _ = fit_release([(1, 10), (2, 21), (4, 39), (6, 61)], 60)
    zero = by_name(fits)["zero-order"]
    ssr = 8835 / 3249
    r2 = 1 - ssr / 1492.75
    assert zero.params["k0"] == pytest.approx(574 / 57, rel=1e-9)
    assert zero.n_points == 4
    assert zero.r2 == pytest.approx(r2, rel=1e-9)
    assert zero.adj_r2 == pytest.approx(1 - (1 - r2) * 3 / 3, rel=1e-9)  # p = 1: adjusted equals plain
    assert zero.aic == pytest.approx(4 * math.log(ssr / 4) + 2 * 1, rel=1e-9)


def test_goodness_of_fit_two_parameters() -> None:
    # Korsmeyer-Peppas (p = 2): adjusted R-squared and AIC recomputed from its own parameters.
    points = [(1, 9.5), (2, 13.6), (3, 17.9), (4, 20.1), (6, 26.8), (8, 30.9)]
    _, peppas, _ = fit_release(points, 60)
    assert peppas is not None
    k, n = peppas.params["kKP"], peppas.params["n"]
    f = [y for _, y in points]
    ssr = sum((y - k * t**n) ** 2 for t, y in points)
    sst = sum((y - sum(f) / len(f)) ** 2 for y in f)
    r2 = 1 - ssr / sst
    assert peppas.r2 == pytest.approx(r2, rel=1e-9)
    assert peppas.adj_r2 == pytest.approx(1 - (1 - r2) * 5 / 4, rel=1e-9)
    assert peppas.aic == pytest.approx(6 * math.log(ssr / 6) + 4, rel=1e-9)
    assert peppas.adj_r2 < peppas.r2


def test_best_by_aic_ties_broken_by_adjusted_r2() -> None:
    def fit(name: str, aic: float, adj: float) -> ModelFit:
        return ModelFit(name, "", {}, 5, adj, adj, aic)

    assert qc_math._best([fit("zero-order", 10, 0.9), fit("Higuchi", 3, 0.8)]) == "Higuchi"
    assert qc_math._best([fit("zero-order", 3, 0.9), fit("Higuchi", 3, 0.95)]) == "Higuchi"
    assert qc_math._best([]) == ""


def test_fit_release_rejects_a_bad_cut() -> None:
    with pytest.raises(ValueError):
        fit_release([(t, 5 * t) for t in HOURS], 0)
    with pytest.raises(ValueError):
        fit_release([(t, 5 * t) for t in HOURS], math.nan)


# --- exponent_meaning and qc_models.toml -----------------------------------------------------------------------


def test_exponent_meaning_with_the_sphere_bands() -> None:
    bands = sphere_bands()
    assert "Fickian" in exponent_meaning(0.3, bands)
    assert exponent_meaning(0.43, bands) == bands[0].meaning  # upper bounds are inclusive
    # above 0.43 the shipped bands say nothing (secondary sources only); a site's verified bands would
    assert exponent_meaning(0.6, bands) == "" and exponent_meaning(0.9, bands) == ""
    site = [ExponentBand(b.upto, m) for b, m in zip(bands, ["Fickian", "anomalous", "case-II"], strict=True)]
    assert exponent_meaning(0.6, site) == "anomalous" and exponent_meaning(0.9, site) == "case-II"


def test_exponent_meaning_edge_cases() -> None:
    bands = [ExponentBand(1, "low"), ExponentBand(3, "mid")]
    assert exponent_meaning(3, bands) == "mid"
    assert exponent_meaning(3.5, bands) == ""  # above the last bounded band: no interpretation
    assert exponent_meaning(0.5, []) == ""
    with pytest.raises(ValueError):
        exponent_meaning(0.5, [ExponentBand(None, "open"), ExponentBand(1, "low")])
    with pytest.raises(ValueError):
        exponent_meaning(0.5, [ExponentBand(3, "a"), ExponentBand(1, "b")])
    with pytest.raises(ValueError):
        exponent_meaning(math.nan, bands)


def test_qc_models_toml_shape() -> None:
    data = load_qc_models()
    assert data["meta"]["version"] == "2026.11.0"
    assert "Ritger" in data["meta"]["source"]
    assert data["peppas"]["max_released_pct"] == 60
    assert data["peppas"]["source"]
    bands = data["peppas_exponent_spheres"]
    bounds = [b["upto"] for b in bands[:-1]]
    assert bounds == sorted(bounds)
    assert "upto" not in bands[-1]  # the last band is open-ended
    for band in bands:
        assert band["source"]
        assert "seed" not in band["source"].lower()
