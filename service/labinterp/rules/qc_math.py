"""The numerical core of microsphere formulation QC: particle-size statistics from a microscope count, entrapment
efficiency, swelling index, drug content retained on storage, the in-vitro release profile (times to 50 % and
80 % released) and the release-model fits (zero-order, first-order, Higuchi, Korsmeyer-Peppas) with the meaning
of the Korsmeyer-Peppas release exponent.

Pure: numbers in, numbers out. Every threshold (the size range that defines a microsphere, the release cut for
Korsmeyer-Peppas, the exponent bands) comes in as an argument from mappings/, never as a default here, so the
reference data and its source stay in one place. Bad input raises ValueError with a plain message; a release
model that cannot be fitted is left out of the result rather than raising, because a batch with an odd profile
must still get the rest of its QC report."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy.optimize import OptimizeWarning, curve_fit

FloatArray = npt.NDArray[np.float64]

# Number-based percentiles of a count: numpy's "linear" method (Hyndman & Fan type 7), see size_stats.
PERCENTILE_METHOD: Final = "linear"

# A model with p parameters is fitted only on p + this many points: one spare degree of freedom beyond the
# minimum that adjusted R-squared needs, so a fit is never just an interpolation of its points.
EXTRA_POINTS = 2

ZERO_ORDER, FIRST_ORDER, HIGUCHI, PEPPAS = "zero-order", "first-order", "Higuchi", "Korsmeyer-Peppas"


@dataclass(frozen=True)
class SizeStats:
    """Particle-size statistics of one microscope count (each particle counted once: a number distribution)."""

    n: int  # particles counted
    basis: str  # "number": each particle counts once, as in a microscope count
    d10: float  # micrometres, number-based 10th percentile
    d50: float  # micrometres, number-based median
    d90: float  # micrometres, number-based 90th percentile
    span: float  # (d90 - d10) / d50: width of the distribution relative to its median
    mean: float  # arithmetic (number) mean diameter
    d43: float  # volume-weighted mean diameter D[4,3] = sum d^4 / sum d^3 (an analyzer's volume mean diameter)
    below: int  # particles smaller than the range's low end
    above: int  # particles larger than the range's high end
    share_outside_pct: float  # (below + above) / n * 100


def _check_finite(value: float, what: str) -> float:
    """`value` as a float, or ValueError naming `what` when it is not a finite number."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    return v


def size_stats(diameters_um: Sequence[float], low_um: float, high_um: float) -> SizeStats:
    """Number-based size statistics of a microscope count, and how many particles fall outside the size range that
    defines a microsphere (low_um and high_um from mappings/, both ends counted as inside).

    Percentiles: linear interpolation between order statistics (numpy's default "linear" method, Hyndman & Fan
    type 7, the one spreadsheet PERCENTILE / PERCENTILE.INC and most lab software use): the diameters are sorted
    x[0] <= ... <= x[n-1]; the p-th percentile sits at position h = (n - 1) * p / 100 and is
    x[floor(h)] + (h - floor(h)) * (x[floor(h) + 1] - x[floor(h)]). A count is a number distribution, so D10/D50/D90
    here are not the volume-based D(v,0.1)... of a laser-diffraction analyzer; D[4,3] is given for comparison with
    an analyzer's volume mean diameter.

    Raises ValueError for fewer than 2 particles (a spread needs two), for a diameter that is not a finite positive
    number, and for a range that is not 0 < low_um < high_um."""
    if isinstance(diameters_um, (str, bytes)):
        raise ValueError("diameters must be a sequence of numbers")
    values = [_check_finite(d, f"diameter #{i + 1}") for i, d in enumerate(diameters_um)]
    if len(values) < 2:
        raise ValueError(f"at least 2 particle diameters are needed, got {len(values)}")
    for i, diameter in enumerate(values):
        if diameter <= 0:
            raise ValueError(f"diameter #{i + 1} must be positive, got {diameter!r} um")
    low = _check_finite(low_um, "low end of the size range")
    high = _check_finite(high_um, "high end of the size range")
    if not 0 < low < high:
        raise ValueError(f"the size range must satisfy 0 < low < high, got {low!r}-{high!r} um")

    d: FloatArray = np.sort(np.asarray(values, dtype=np.float64))
    d10, d50, d90 = (float(q) for q in np.percentile(d, [10, 50, 90], method=PERCENTILE_METHOD))
    below = int(np.count_nonzero(d < low))
    above = int(np.count_nonzero(d > high))
    n = int(d.size)
    return SizeStats(
        n=n,
        basis="number",
        d10=d10,
        d50=d50,
        d90=d90,
        span=(d90 - d10) / d50,
        mean=float(np.mean(d)),
        d43=float(np.sum(d**4) / np.sum(d**3)),
        below=below,
        above=above,
        share_outside_pct=(below + above) / n * 100,
    )


def entrapment_efficiency(actual: float, theoretical: float) -> float:
    """Entrapment (encapsulation) efficiency in %: the drug content found in the microspheres relative to the
    content expected from the amounts used, actual / theoretical * 100. Both contents in the same unit.

    Raises ValueError when either is not a finite number, when actual is negative, or when theoretical is not
    positive (nothing to divide by)."""
    a = _check_finite(actual, "actual drug content")
    t = _check_finite(theoretical, "theoretical drug content")
    if a < 0:
        raise ValueError(f"actual drug content must not be negative, got {a!r}")
    if t <= 0:
        raise ValueError(f"theoretical drug content must be positive, got {t!r}")
    return a / t * 100


def swelling_index(dry_weight: float, swollen_weight: float) -> float:
    """Swelling index in %: the weight gained in the medium relative to the dry weight,
    (swollen - dry) / dry * 100. Negative when the microspheres lost weight (erosion). Same unit for both weights.

    Raises ValueError when either weight is not a finite number, when the dry weight is not positive or when the
    swollen weight is negative."""
    dry = _check_finite(dry_weight, "dry weight")
    swollen = _check_finite(swollen_weight, "swollen weight")
    if dry <= 0:
        raise ValueError(f"dry weight must be positive, got {dry!r}")
    if swollen < 0:
        raise ValueError(f"swollen weight must not be negative, got {swollen!r}")
    return (swollen - dry) / dry * 100


def retained_pct(initial: float, later: float) -> float:
    """Share of the initial value still found later, in %: later / initial * 100 (drug content retained on
    storage, relative to the same storage condition's first time point).

    Raises ValueError when either value is not a finite number, when initial is not positive or when later is
    negative."""
    first = _check_finite(initial, "initial value")
    then = _check_finite(later, "later value")
    if first <= 0:
        raise ValueError(f"initial value must be positive, got {first!r}")
    if then < 0:
        raise ValueError(f"later value must not be negative, got {then!r}")
    return then / first * 100


@dataclass(frozen=True)
class ReleaseSummary:
    """An in-vitro release profile, cleaned, with its times to 50 % and 80 % released."""

    points: tuple[tuple[float, float], ...]  # (hours, cumulative % released), by time, repeats of a time averaged
    max_released: float  # highest cumulative % released among the points
    t50: float | None  # hours to 50 % released, interpolated; None when never reached
    t80: float | None  # hours to 80 % released, interpolated; None when never reached


def _clean_points(points: Sequence[tuple[float, float]]) -> tuple[tuple[float, float], ...]:
    """The release points sorted by time, the values measured at the same time averaged into one point (replicate
    vessels sampled together). (0, 0) is not added: a profile says what was measured. Raises ValueError on an
    empty profile, a time or value that is not a finite number, or a negative time."""
    by_time: dict[float, list[float]] = {}
    for i, point in enumerate(points):
        try:
            t_raw, f_raw = point
        except (TypeError, ValueError):
            raise ValueError(f"release point #{i + 1} must be a (hours, % released) pair, got {point!r}") from None
        t = _check_finite(t_raw, f"time of release point #{i + 1}")
        f = _check_finite(f_raw, f"% released of release point #{i + 1}")
        if t < 0:
            raise ValueError(f"time of release point #{i + 1} must not be negative, got {t!r} h")
        by_time.setdefault(t, []).append(f)
    if not by_time:
        raise ValueError("the release profile has no points")
    return tuple((t, sum(fs) / len(fs)) for t, fs in sorted(by_time.items()))


def _time_to(points: tuple[tuple[float, float], ...], target: float) -> float | None:
    """Hours until `target` % is first reached, by linear interpolation between the last point below the target and
    the first at or above it; from (0, 0) when the first point is already at or above it. None when never reached."""
    prev_t, prev_f = 0.0, 0.0
    for t, f in points:
        if f >= target:  # prev_f < target here, so the slope is positive
            return prev_t + (target - prev_f) * (t - prev_t) / (f - prev_f)
        prev_t, prev_f = t, f
    return None


def release_summary(points: Sequence[tuple[float, float]]) -> ReleaseSummary:
    """The release profile sorted by time with repeats of a time averaged, its highest % released, and the hours to
    50 % and 80 % released (interpolated between the bracketing points, from (0, 0) when the first point is already
    above; None when the profile never gets there: no extrapolation).

    Raises ValueError on an empty profile, a value that is not a finite number or a negative time."""
    clean = _clean_points(points)
    return ReleaseSummary(
        points=clean,
        max_released=max(f for _, f in clean),
        t50=_time_to(clean, 50),
        t80=_time_to(clean, 80),
    )


@dataclass(frozen=True)
class ModelFit:
    """One release model fitted to the profile by nonlinear least squares on % released."""

    name: str  # "zero-order" | "first-order" | "Higuchi" | "Korsmeyer-Peppas"
    equation: str  # as a reader sees it: "F = k0·t"
    params: dict[str, float]  # "k0", "k1", "kH", "kKP", "n"
    n_points: int  # points the model was fitted on
    r2: float  # 1 - SSR/SST, SST about the mean of the fitted points
    adj_r2: float  # 1 - (1 - r2)(n_points - 1)/(n_points - p)
    aic: float  # n_points * ln(SSR / n_points) + 2 * p
    note: str = ""  # e.g. "fitted on the 5 points up to 60 % released"


@dataclass(frozen=True)
class _Model:
    name: str
    equation: str
    param_names: tuple[str, ...]
    func: Callable[..., FloatArray]
    guess: Callable[[FloatArray, FloatArray], list[float]]


def _zero_order(t: FloatArray, k0: float) -> FloatArray:
    return k0 * t


def _first_order(t: FloatArray, k1: float) -> FloatArray:
    with np.errstate(over="ignore", invalid="ignore"):
        return 100 * (1 - np.exp(-k1 * t))


def _higuchi(t: FloatArray, kh: float) -> FloatArray:
    return kh * np.sqrt(t)


def _peppas(t: FloatArray, kkp: float, n: float) -> FloatArray:
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return kkp * np.power(t, n)


def _guess_zero_order(t: FloatArray, f: FloatArray) -> list[float]:
    return [float(np.sum(t * f) / np.sum(t * t))]


def _guess_first_order(t: FloatArray, f: FloatArray) -> list[float]:
    # k1 = -ln(1 - F/100) / t for each point still below 100 %; the median of those as a start.
    usable = (f > 0) & (f < 100)
    if np.any(usable):
        return [float(np.median(-np.log1p(-f[usable] / 100) / t[usable]))]
    return [1 / float(np.max(t))]


def _guess_higuchi(t: FloatArray, f: FloatArray) -> list[float]:
    root = np.sqrt(t)
    return [float(np.sum(root * f) / np.sum(t))]


def _guess_peppas(t: FloatArray, f: FloatArray) -> list[float]:
    # A straight line through log F against log t (the classic log-log plot) only as the starting point.
    usable = f > 0
    if np.count_nonzero(usable) >= 2 and np.ptp(np.log(t[usable])) > 0:
        slope, intercept = np.polyfit(np.log(t[usable]), np.log(f[usable]), 1)
        return [float(np.exp(intercept)), float(slope)]
    return [float(np.mean(f) / np.mean(np.sqrt(t))), 1 / 2]


_MODELS = (
    _Model(ZERO_ORDER, "F = k0·t", ("k0",), _zero_order, _guess_zero_order),
    _Model(FIRST_ORDER, "F = 100·(1 − e^(−k1·t))", ("k1",), _first_order, _guess_first_order),
    _Model(HIGUCHI, "F = kH·t^(1/2)", ("kH",), _higuchi, _guess_higuchi),
)
_PEPPAS_MODEL = _Model(PEPPAS, "F = kKP·t^n", ("kKP", "n"), _peppas, _guess_peppas)


def _fit(model: _Model, t: FloatArray, f: FloatArray, note: str = "") -> ModelFit | None:
    """`model` fitted to (t, f) by nonlinear least squares (scipy curve_fit, Levenberg-Marquardt), with its
    goodness of fit; None when there are too few points, the profile is flat (R-squared is undefined), or the fit
    does not converge (RuntimeError, OptimizeWarning, parameters or residuals that are not finite)."""
    p = len(model.param_names)
    n = int(t.size)
    if n < p + EXTRA_POINTS:
        return None
    sst = float(np.sum((f - np.mean(f)) ** 2))
    if sst <= 0:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", OptimizeWarning)
            popt, _ = curve_fit(model.func, t, f, p0=model.guess(t, f), maxfev=10_000)
    except (RuntimeError, OptimizeWarning, ValueError, FloatingPointError):
        return None
    params = [float(v) for v in popt]
    if not all(math.isfinite(v) for v in params):
        return None
    residuals = f - model.func(t, *params)
    ssr = float(np.sum(residuals**2))
    if not math.isfinite(ssr):
        return None
    r2 = 1 - ssr / sst
    adj_r2 = 1 - (1 - r2) * (n - 1) / (n - p)
    # A perfect fit (SSR = 0) would make ln(SSR/n) minus infinity: the smallest positive double keeps the AIC a
    # finite number that still ranks such a fit first.
    aic = n * math.log(max(ssr, np.finfo(np.float64).tiny) / n) + 2 * p
    return ModelFit(
        name=model.name,
        equation=model.equation,
        params=dict(zip(model.param_names, params, strict=True)),
        n_points=n,
        r2=r2,
        adj_r2=adj_r2,
        aic=aic,
        note=note,
    )


def _best(fits: Sequence[ModelFit]) -> str:
    """Name of the fit with the lowest AIC; fits whose AIC equals the lowest (to within rounding) are separated by
    the higher adjusted R-squared. "" when there is none."""
    if not fits:
        return ""
    lowest = min(fit.aic for fit in fits)
    tied = [fit for fit in fits if math.isclose(fit.aic, lowest, rel_tol=1e-9, abs_tol=1e-9)]
    return max(tied, key=lambda fit: fit.adj_r2).name


def fit_release(points: Sequence[tuple[float, float]], peppas_max_pct: float) -> tuple[list[ModelFit], ModelFit | None, str]:
    """Fit the release models of DDSolver (Zhang et al. 2010, AAPS J 12:263) to a release profile (hours,
    cumulative % released): zero-order F = k0·t, first-order F = 100·(1 − e^(−k1·t)), Higuchi F = kH·t^(1/2) and
    Korsmeyer-Peppas F = kKP·t^n. All by nonlinear least squares on F itself (not on log-transformed data, which
    would weight the early points differently) and through the origin (no intercept: nothing is released at t = 0).

    Returns (fits, peppas, best):
    - fits: zero-order, first-order and Higuchi, each on all points with t > 0 (repeats of a time averaged);
    - peppas: Korsmeyer-Peppas on the points with t > 0 and F <= peppas_max_pct (the power law describes only the
      early part of the release; the cut comes from mappings/), or None;
    - best: the name of the lowest-AIC fit among `fits`, ties broken by the higher adjusted R-squared; "" if none.

    Korsmeyer-Peppas takes no part in choosing `best`: it is fitted on a different, smaller subset of the points,
    and an AIC (like SSR and R-squared) only compares models fitted to the same data. Its exponent n is read for
    the release mechanism (exponent_meaning), not for goodness of fit against the others.

    A model with p parameters needs at least p + 2 points (3 for the one-parameter models, 4 for
    Korsmeyer-Peppas); with fewer, or when the fit does not converge, the model is left out, never raised.
    Raises ValueError only on bad input: an empty profile, values that are not finite numbers, a negative time, or
    a cut that is not a positive finite number."""
    cut = _check_finite(peppas_max_pct, "Korsmeyer-Peppas release cut")
    if cut <= 0:
        raise ValueError(f"Korsmeyer-Peppas release cut must be positive, got {cut!r} %")
    clean = [(t, f) for t, f in _clean_points(points) if t > 0]
    t_all = np.asarray([t for t, _ in clean], dtype=np.float64)
    f_all = np.asarray([f for _, f in clean], dtype=np.float64)

    fits = [fit for model in _MODELS if (fit := _fit(model, t_all, f_all)) is not None]

    early = f_all <= cut
    n_early = int(np.count_nonzero(early))
    note = f"fitted on the {n_early} points up to {cut:g} % released"
    peppas = _fit(_PEPPAS_MODEL, t_all[early], f_all[early], note)
    return fits, peppas, _best(fits)


@dataclass(frozen=True)
class ExponentBand:
    """One band of the Korsmeyer-Peppas release exponent n and what it means for the release mechanism."""

    upto: float | None  # upper bound (inclusive) of n; None for the last band
    meaning: str


def exponent_meaning(n: float, bands: Sequence[ExponentBand]) -> str:
    """What the release exponent n means: the meaning of the first band whose inclusive upper bound `upto` is at or
    above n (the last band, with upto None, takes everything above). The bands come from mappings/ in ascending
    order of upto; "" when there are none or n lies above the last bounded band, so nothing is interpreted without
    reference data.

    Raises ValueError when n is not a finite number, or when the bands are out of order or a band other than the
    last has no upper bound."""
    value = _check_finite(n, "release exponent n")
    previous = -math.inf
    for i, band in enumerate(bands):
        if band.upto is None:
            if i != len(bands) - 1:
                raise ValueError(f"only the last exponent band may be open-ended; band #{i + 1} of {len(bands)} is")
            continue
        upto = _check_finite(band.upto, f"upper bound of exponent band #{i + 1}")
        if upto <= previous:
            raise ValueError(f"exponent bands must be in ascending order of their upper bound (band #{i + 1})")
        previous = upto
    for band in bands:
        if band.upto is None or value <= band.upto:
            return band.meaning
    return ""
