"""Formulation QC of a microsphere batch (SPEC section 5): the measures of the evaluation methods computed from a
BatchRecord, each graded against the laboratory's own acceptance limit for the batch's product (a site overlay,
mappings/qc_limits.toml) or reported with "no limit set", and the batch's conclusion: released, not released (with
the failing measures), or incomplete (a limited measure has no value, an input is preliminary, or no limits are
configured for the product: labinterp invents none). Pure.

What is computed, from what (the measure keys of mappings/qc.toml):
- particle size: the analyzer's volume mean diameter as sent; from a microscopy count of individual particles the
  number-based D10, D50, D90, the span (D90 - D10) / D50, the volume-weighted mean D[4,3] and the share of particles
  outside the range that defines microspheres (mappings/qc.toml [microsphere_range]);
- entrapment efficiency = actual / theoretical drug content x 100 (or the laboratory's own figure when it sent one
  and not the two contents);
- swelling index per medium over time = weight gain relative to the dry weight, the last time point graded;
- in-vitro release: time to 50 % and 80 % released, the release at a limit's time point (interpolated between
  the bracketing points, never extrapolated), zero-order / first-order / Higuchi fits (best by AIC) and the
  Korsmeyer-Peppas release exponent on the points up to the cut of mappings/qc_models.toml, with its meaning for
  spheres only when that file gives one with its source;
- stability: drug content retained per storage condition (as the laboratory records it) relative to the same
  condition's first time point; graded at a limit's storage time (a shorter study is "missing", not a pass);
- zeta potential as sent; qualitative methods (SEM, XRD, DSC/TGA, FTIR) listed, never graded."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Protocol, TypeVar

from labinterp.extract.batch_facts import BatchRecord, ParticleCount, QcValue
from labinterp.extract.facts import FhirTime, Problem, SourceRef
from labinterp.knowledge import Knowledge
from labinterp.rules.qc_math import (
    ExponentBand,
    ModelFit,
    ReleaseSummary,
    SizeStats,
    entrapment_efficiency,
    exponent_meaning,
    fit_release,
    release_summary,
    retained_pct,
    size_stats,
    swelling_index,
)

DAY_TOLERANCE = 0.5  # storage times within half a day are the same day of the study
PASS, FAIL, NO_LIMIT, MISSING, NOT_GRADED = "pass", "fail", "no limit set", "missing", "not graded"
RELEASED, NOT_RELEASED, INCOMPLETE = "released", "not released", "incomplete"


@dataclass(frozen=True)
class MeasureResult:
    """One graded (or reported) measure of the batch."""

    measure: str  # key of mappings/qc.toml [measures.*] (derived measures too: "d50", "span", "t50", ...)
    label: str  # what a reader sees: "Entrapment efficiency"
    value: float | None  # in `unit`; None when missing
    unit: str  # UCUM
    shown: str  # the value as printed: "87.4 %"
    status: str  # PASS | FAIL | NO_LIMIT | MISSING | NOT_GRADED
    limit: str = ""  # the limit as printed, with its product specification and version; "" when none
    detail: str = ""  # e.g. the storage condition, the medium, how it was computed
    sources: tuple[SourceRef, ...] = ()
    bounds: str = ""  # the limit alone (">= 75 %"), without its specification


@dataclass
class BatchFinding:
    record: BatchRecord
    now: datetime
    specification: str  # "Ketoprofen microspheres 10 %, specification KMS-01 version 3"; "" when the site set none
    results: list[MeasureResult] = field(default_factory=list)
    size: SizeStats | None = None
    release: ReleaseSummary | None = None
    fits: list[ModelFit] = field(default_factory=list)  # zero-order, first-order, Higuchi (all points)
    best_model: str = ""  # name of the best of `fits` by AIC ("" when none could be fitted)
    peppas: ModelFit | None = None  # Korsmeyer-Peppas on the points up to the cut
    peppas_meaning: str = ""  # what the release exponent means for spheres, with its source; "" without one
    swelling: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # medium -> (hours, index %)
    stability: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # condition -> (days, retained %)
    conclusion: str = INCOMPLETE  # RELEASED | NOT_RELEASED | INCOMPLETE
    reasons: list[str] = field(default_factory=list)  # why the conclusion, in plain words
    failing: list[str] = field(default_factory=list)  # the failing measures, as printed
    missing: list[str] = field(default_factory=list)  # limited measures without a value
    preliminary: bool = False
    releases: dict[str, ReleaseFit] = field(default_factory=dict)  # every medium's release profile
    release_medium: str = ""  # the medium of `release` (the one the limits name, else the first)

    def result(self, measure: str) -> list[MeasureResult]:
        return [r for r in self.results if r.measure == measure]


def number(v: float) -> str:
    """A value as a report prints it: three significant figures (halves rounded up), at most two decimals, whole
    digits never dropped, no exponent."""
    if not math.isfinite(v):
        return str(v)
    if v == 0:
        return "0"
    digits = max(0, min(2, 2 - math.floor(math.log10(abs(v)))))
    text = str(Decimal(repr(v)).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))
    return text.rstrip("0").rstrip(".") if "." in text else text


def unit_shown(unit: str) -> str:
    return {"um": "µm", "Cel": "°C", "1": ""}.get(unit, unit)


def with_unit(v: float, unit: str) -> str:
    return f"{number(v)} {unit_shown(unit)}".strip()


@dataclass
class _Candidate:
    """A computed value before grading: which limits may apply is told by its medium, condition and time."""

    measure: str
    value: float | None
    detail: str = ""
    sources: tuple[SourceRef, ...] = ()
    medium: str = ""
    condition: str = ""
    at_h: float | None = None
    at_d: float | None = None
    unit: str = ""
    beyond: float | None = None  # a time never reached in the test: the value is later than this (hours)


def _label(k: Knowledge, measure: str) -> tuple[str, str]:
    m = k.qc.measures.get(measure)
    return (m.display, m.unit) if m is not None else (measure.replace("_", " "), "")


def _time_key(t: FhirTime | None) -> float:
    return t.start.timestamp() if t is not None else -math.inf


class _Dated(Protocol):
    @property
    def time(self) -> FhirTime | None: ...
    @property
    def source(self) -> SourceRef: ...


D = TypeVar("D", bound=_Dated)


def _latest_of(items: Sequence[D], record: BatchRecord, measure: str, same: Callable[[D, D], bool]) -> D | None:
    """The latest of several results of one measure (by effective time). Two latest results at the same time that
    disagree (`same` says whether two agree) are a conflict: both are named and the measure counts as missing,
    never decided by the order the server sent them."""
    if not items:
        return None
    top = max(_time_key(x.time) for x in items)
    latest = sorted((x for x in items if _time_key(x.time) == top), key=lambda x: x.source.reference)
    if any(not same(x, latest[0]) for x in latest[1:]):
        for x in latest:
            record.problems.append(_conflict(x.source, measure))
        return None
    return latest[0]


def _latest(values: Sequence[QcValue], record: BatchRecord) -> QcValue | None:
    measure = values[0].measure if values else ""
    return _latest_of(values, record, measure, lambda a, b: math.isclose(a.value, b.value) and a.unit == b.unit)


def _conflict(source: SourceRef, measure: str) -> Problem:
    return _problem(source, "conflicts with another result of the same measure at the same time: neither is used", measure)


def _dedup(
    points: list[tuple[float, float, SourceRef]], record: BatchRecord, measure: str
) -> list[tuple[float, float, SourceRef]]:
    """One value per time point: replicates that agree are one point; replicates that disagree are a conflict (both
    named, neither used)."""
    by_time: dict[float, list[tuple[float, float, SourceRef]]] = {}
    for p in points:
        by_time.setdefault(p[0], []).append(p)
    out = []
    for t in sorted(by_time):
        same = sorted(by_time[t], key=lambda p: p[2].reference)
        if any(not math.isclose(p[1], same[0][1]) for p in same[1:]):
            for p in same:
                record.problems.append(_conflict(p[2], measure))
            continue
        out.append(same[0])
    return out


def _norm(text: str) -> str:
    return " ".join(text.casefold().split())


def _same(a: str, b: str) -> bool:
    return " ".join(a.casefold().split()) == " ".join(b.casefold().split())


def _interpolate(points: Sequence[tuple[float, float]], at: float) -> float | None:
    """The value at `at` on the polyline through the points (from (0, 0)); None beyond the last point."""
    path = [(0.0, 0.0), *points] if points and points[0][0] > 0 else list(points)
    for (x0, y0), (x1, y1) in itertools.pairwise(path):
        if x0 <= at <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (at - x0) / (x1 - x0)
    return None


def _size(record: BatchRecord, k: Knowledge, f: BatchFinding) -> list[_Candidate]:
    out: list[_Candidate] = []
    vmd = _latest(record.of("volume_mean_diameter"), record)
    if vmd is not None:
        out.append(_Candidate("volume_mean_diameter", vmd.value, "particle size analyzer", (vmd.source,)))
    count = _latest_count(record)
    if count is not None:
        rng = k.qc.microsphere_range
        try:
            s = size_stats(count.diameters_um, rng.low_um, rng.high_um)
        except ValueError as exc:
            record.problems.append(_problem(count.source, f"the particle count cannot be used: {exc}", "particle_count"))
            return out
        f.size = s
        src = (count.source,)
        how = f"microscopy count of {s.n} particles, number-based"
        out += [
            _Candidate("d10", s.d10, how, src),
            _Candidate("d50", s.d50, how, src),
            _Candidate("d90", s.d90, how, src),
            _Candidate("span", s.span, "(D90 - D10) / D50", src),
            _Candidate("d43", s.d43, f"volume-weighted mean D[4,3] of the {s.n} particles counted", src),
            _Candidate(
                "share_outside_range",
                s.share_outside_pct,
                f"{s.below} below {number(rng.low_um)} µm, {s.above} above {number(rng.high_um)} µm, of {s.n}",
                src,
            ),
        ]
    return out


def _latest_count(record: BatchRecord) -> ParticleCount | None:
    return _latest_of(record.counts, record, "particle_count", lambda a, b: sorted(a.diameters_um) == sorted(b.diameters_um))


def _entrapment(record: BatchRecord, f: BatchFinding) -> list[_Candidate]:
    actual = _latest(record.of("drug_content_actual"), record)
    theoretical = _latest(record.of("drug_content_theoretical"), record)
    if actual is not None and theoretical is not None:
        if actual.unit != theoretical.unit:
            record.problems.append(
                _problem(
                    actual.source,
                    "actual and theoretical drug content are in units that cannot be compared",
                    "drug_content_actual",
                )
            )
        else:
            try:
                ee = entrapment_efficiency(actual.value, theoretical.value)
            except ValueError as exc:
                record.problems.append(
                    _problem(theoretical.source, f"entrapment efficiency cannot be computed: {exc}", "drug_content_theoretical")
                )
            else:
                how = f"actual {with_unit(actual.value, actual.unit)} / theoretical {with_unit(theoretical.value, theoretical.unit)} x 100"
                return [_Candidate("entrapment_efficiency", ee, how, (actual.source, theoretical.source))]
    own = _latest(record.of("entrapment_efficiency"), record)
    if own is not None:
        return [_Candidate("entrapment_efficiency", own.value, "as reported by the laboratory", (own.source,))]
    return []


def _swelling(record: BatchRecord, f: BatchFinding, limits: Sequence[Any]) -> list[_Candidate]:
    series: dict[str, list[tuple[float, float, SourceRef]]] = {}
    names = {_norm(v.medium): v.medium for v in [*record.of("swollen_weight"), *record.of("swelling_index")][::-1]}
    for v in record.of("swollen_weight"):
        if v.elapsed_h is None or v.dry_weight_mg is None:
            record.problems.append(_problem(v.source, "a swelling weight needs its time and the dry weight", "swollen_weight"))
            continue
        try:
            si = swelling_index(v.dry_weight_mg, v.value)
        except ValueError as exc:
            record.problems.append(_problem(v.source, f"swelling index cannot be computed: {exc}", "swollen_weight"))
            continue
        series.setdefault(_norm(v.medium), []).append((v.elapsed_h, si, v.source))
    for v in record.of("swelling_index"):
        if v.elapsed_h is None:
            record.problems.append(_problem(v.source, "a swelling index needs its time", "swelling_index"))
            continue
        series.setdefault(_norm(v.medium), []).append((v.elapsed_h, v.value, v.source))
    out = []
    for key in sorted(series):
        points = _dedup(series[key], record, "swelling_index")
        if not points:
            continue
        medium = names.get(key, key)  # as the laboratory spelled it first
        where = medium or "medium not recorded"
        f.swelling[where] = [(h, si) for h, si, _ in points]
        srcs = tuple(src for _, _, src in points)
        times = {points[-1][0]}  # the last time point, and every time a limit for this medium names
        times |= {
            float(lim.at_h)
            for lim in limits
            if lim.measure == "swelling_index" and lim.at_h is not None and (not lim.medium or _same(lim.medium, medium))
        }
        for at in sorted(times):
            hit = next((si for h, si, _ in points if math.isclose(h, at)), None)
            out.append(_Candidate("swelling_index", hit, f"{where}, at {number(at)} h", srcs, medium=medium, at_h=at))
    return out


@dataclass
class ReleaseFit:
    """One medium's release profile: its summary and fitted models."""

    medium: str
    summary: ReleaseSummary
    fits: list[ModelFit]
    best: str
    peppas: ModelFit | None


def _release(record: BatchRecord, k: Knowledge, f: BatchFinding, limits: Sequence[Any]) -> list[_Candidate]:
    """Each medium's profile on its own (profiles in different media are never pooled): t50, t80, the release
    exponent and the release at each limit's time point, per medium."""
    by_medium: dict[str, list[tuple[float, float, SourceRef]]] = {}
    names: dict[str, str] = {}
    for v in record.of("drug_released"):
        if v.elapsed_h is None:
            record.problems.append(
                _problem(v.source, "a release point needs its time since the start of the test", "drug_released")
            )
            continue
        by_medium.setdefault(_norm(v.medium), []).append((v.elapsed_h, v.value, v.source))
        names.setdefault(_norm(v.medium), v.medium)
    out: list[_Candidate] = []
    for key in sorted(by_medium):
        points = _dedup(by_medium[key], record, "drug_released")
        if not points:
            continue
        medium = names[key]
        if not _plausible_profile(points, k, record):
            continue
        fit = _fit_profile(medium, [(h, pct) for h, pct, _ in points], k)
        f.releases[medium] = fit
        src = tuple(p[2] for p in points)
        where = f" ({medium})" if medium else ""
        last = fit.summary.points[-1][0]
        out += [
            _Candidate("t50", fit.summary.t50, f"time to 50 % released, interpolated{where}", src, medium=medium, beyond=last),
            _Candidate("t80", fit.summary.t80, f"time to 80 % released, interpolated{where}", src, medium=medium, beyond=last),
        ]
        if fit.peppas is not None:
            cut = number(k.qc_models.peppas.max_released_pct)
            how = f"Korsmeyer-Peppas exponent on the {fit.peppas.n_points} points up to {cut} % released{where}"
            out.append(_Candidate("release_exponent", fit.peppas.params["n"], how, src, medium=medium))
        for lim in limits:
            if lim.measure == "drug_released" and lim.at_h is not None and (not lim.medium or _same(lim.medium, medium)):
                at = float(lim.at_h)
                value = _interpolate(fit.summary.points, at)
                out.append(_Candidate("drug_released", value, f"at {number(at)} h{where}", src, medium=medium, at_h=at))
    primary = _primary_medium(list(f.releases), limits)
    if primary is not None:
        chosen = f.releases[primary]
        f.release, f.fits, f.best_model, f.peppas = chosen.summary, chosen.fits, chosen.best, chosen.peppas
        f.release_medium = primary
        if chosen.peppas is not None:
            f.peppas_meaning = _peppas_meaning(chosen.peppas, k)
    return out


def _plausible_profile(points: list[tuple[float, float, SourceRef]], k: Knowledge, record: BatchRecord) -> bool:
    """A cumulative profile that falls, or passes 100 %, beyond the tolerances of mappings/qc_models.toml is a
    measurement problem: named, and not summarised or graded (the batch is then incomplete)."""
    checks = k.qc_models.profile_checks
    peak = -math.inf
    for h, pct, src in points:
        if pct < peak - checks.fall_tolerance_pct:
            what = f"the cumulative release falls to {number(pct)} % at {number(h)} h after {number(peak)} % earlier"
            record.problems.append(_problem(src, f"{what}: the profile is not used", "drug_released"))
            return False
        if pct > 100 + checks.above_100_tolerance_pct:
            what = f"the cumulative release is {number(pct)} % at {number(h)} h, above 100 % of the content"
            record.problems.append(_problem(src, f"{what}: the profile is not used", "drug_released"))
            return False
        peak = max(peak, pct)
    return True


def _fit_profile(medium: str, points: list[tuple[float, float]], k: Knowledge) -> ReleaseFit:
    summary = release_summary(points)
    fits, peppas, best = fit_release(summary.points, k.qc_models.peppas.max_released_pct)
    return ReleaseFit(medium, summary, fits, best, peppas)


def _primary_medium(media: list[str], limits: Sequence[Any]) -> str | None:
    """The medium whose profile the report plots and summarises: the one the release limits name, else the first."""
    for lim in limits:
        if lim.measure in ("drug_released", "t50", "t80") and lim.medium:
            hit = next((m for m in media if _same(m, lim.medium)), None)
            if hit is not None:
                return hit
    return media[0] if media else None


def _peppas_meaning(peppas: ModelFit, k: Knowledge) -> str:
    bands = [ExponentBand(b.upto, b.meaning) for b in k.qc_models.peppas_exponent_spheres]
    meaning = exponent_meaning(peppas.params["n"], bands) if bands else ""
    if not meaning:
        return ""
    source = next((b.source for b in k.qc_models.peppas_exponent_spheres if b.meaning == meaning), "")
    return f"{meaning} ({source})" if source else meaning


def _stability(record: BatchRecord, f: BatchFinding, limits: Sequence[Any]) -> list[_Candidate]:
    """Drug content retained per storage condition (conditions told apart as the laboratory records them, ignoring
    case and spacing), relative to that condition's result at storage time 0: without one nothing is computed (a
    later first point would hide the loss before it)."""
    by_condition: dict[str, list[QcValue]] = {}
    names: dict[str, str] = {}
    for v in record.of("stability_drug_content"):
        if v.elapsed_d is None:
            record.problems.append(_problem(v.source, "a stability result needs its storage time", "stability_drug_content"))
            continue
        by_condition.setdefault(_norm(v.condition), []).append(v)
        names.setdefault(_norm(v.condition), v.condition)
    wanted = sorted({float(lim.at_d) for lim in limits if lim.measure == "retained_drug_content" and lim.at_d is not None})
    out = []
    for key in sorted(by_condition):
        condition = names[key]
        where = condition or "condition not recorded"
        vs = by_condition[key]
        if len({v.unit for v in vs}) > 1:
            record.problems.append(
                _problem(vs[0].source, "stability results of one condition are in different units", "stability_drug_content")
            )
            continue
        points = _dedup([(v.elapsed_d or 0.0, v.value, v.source) for v in vs], record, "stability_drug_content")
        start = next((p for p in points if math.isclose(p[0], 0.0, abs_tol=DAY_TOLERANCE)), None)
        srcs = tuple(v.source for v in vs)
        if start is None:
            record.problems.append(
                _problem(
                    vs[0].source,
                    f"no result at storage time 0 for {where}: the drug content retained cannot be computed",
                    "stability_drug_content",
                )
            )
            out += [
                _Candidate("retained_drug_content", None, f"{where}, at {number(at)} days", srcs, condition=condition, at_d=at)
                for at in wanted
            ]
            continue
        try:
            series = [(d, retained_pct(start[1], value), src) for d, value, src in points]
        except ValueError as exc:
            record.problems.append(
                _problem(start[2], f"retained drug content cannot be computed: {exc}", "stability_drug_content")
            )
            continue
        f.stability[where] = [(d, r) for d, r, _ in series]
        for at in wanted:
            hit = next((r for d, r, _ in series if math.isclose(d, at, abs_tol=DAY_TOLERANCE)), None)
            out.append(
                _Candidate("retained_drug_content", hit, f"{where}, at {number(at)} days", srcs, condition=condition, at_d=at)
            )
        if not wanted and len(series) > 1:
            d, r, _ = series[-1]
            out.append(_Candidate("retained_drug_content", r, f"{where}, at {number(d)} days", srcs, condition=condition, at_d=d))
    return out


def _zeta(record: BatchRecord) -> list[_Candidate]:
    z = _latest(record.of("zeta_potential"), record)
    return [_Candidate("zeta_potential", z.value, "", (z.source,))] if z is not None else []


def _problem(source: SourceRef, what: str, about: str = "") -> Problem:
    return Problem(source.reference, what, about, source)


def _applies(lim: Any, c: _Candidate) -> bool:
    if lim.measure != c.measure:
        return False
    if lim.medium and not _same(lim.medium, c.medium):
        return False
    if lim.condition and not _same(lim.condition, c.condition):
        return False
    if lim.at_h is not None and (c.at_h is None or not math.isclose(float(lim.at_h), c.at_h)):
        return False
    return not (lim.at_d is not None and (c.at_d is None or not math.isclose(float(lim.at_d), c.at_d)))


def _limit_text(lim: Any, unit: str) -> str:
    parts = []
    if lim.min is not None:
        parts.append(f">= {with_unit(float(lim.min), unit)}")
    if lim.max is not None:
        parts.append(f"<= {with_unit(float(lim.max), unit)}")
    return " and ".join(parts)


def _grade(k: Knowledge, c: _Candidate, limits: Sequence[Any], spec: str) -> MeasureResult:
    label, unit = _label(k, c.measure)
    applicable = [lim for lim in limits if _applies(lim, c)]
    bounds = "; ".join(_limit_text(lim, unit) for lim in applicable)
    limit = _limits(applicable, unit, spec)
    if c.value is None and c.beyond is not None:  # e.g. t50 of a profile that never reached 50 %
        shown = f"> {with_unit(c.beyond, unit)} (not reached)"
        status = _grade_beyond(c.beyond, applicable) if applicable else NO_LIMIT
        return MeasureResult(c.measure, label, None, unit, shown, status, limit, c.detail, c.sources, bounds)
    if c.value is None:
        status = MISSING if applicable else NO_LIMIT
        return MeasureResult(c.measure, label, None, unit, "not measured", status, limit, c.detail, c.sources, bounds)
    shown = with_unit(c.value, unit)
    if not applicable:
        return MeasureResult(c.measure, label, c.value, unit, shown, NO_LIMIT, "", c.detail, c.sources)
    ok = all(
        (lim.min is None or c.value >= float(lim.min)) and (lim.max is None or c.value <= float(lim.max)) for lim in applicable
    )
    edges = {number(float(x)) for lim in applicable for x in (lim.min, lim.max) if x is not None}
    if not ok and number(c.value) in edges:  # a failing value never printed as its own limit
        shown = f"{c.value:.6g} {unit_shown(unit)}".strip()
    return MeasureResult(c.measure, label, c.value, unit, shown, PASS if ok else FAIL, limit, c.detail, c.sources, bounds)


def _grade_beyond(beyond: float, applicable: Sequence[Any]) -> str:
    """A value known only to be above `beyond`: fails a maximum at or below it, passes a minimum at or below it,
    and is missing when the limit lies beyond what the test measured."""
    if any(lim.max is not None and float(lim.max) <= beyond for lim in applicable):
        return FAIL
    if all(lim.max is None and lim.min is not None and float(lim.min) <= beyond for lim in applicable):
        return PASS
    return MISSING


def _limits(applicable: Iterable[Any], unit: str, spec: str) -> str:
    texts = [_limit_text(lim, unit) for lim in applicable]
    return f"{'; '.join(texts)} ({spec})" if texts else ""


def _unmet(k: Knowledge, limits: Sequence[Any], candidates: Sequence[_Candidate], spec: str) -> list[MeasureResult]:
    """Limits no computed value answers (the measure was not measured at all): each a missing result."""
    out = []
    for lim in limits:
        if any(_applies(lim, c) for c in candidates):
            continue
        label, unit = _label(k, lim.measure)
        detail = ", ".join(
            x
            for x in (
                lim.medium,
                lim.condition,
                f"at {number(float(lim.at_h))} h" if lim.at_h is not None else "",
                f"at {number(float(lim.at_d))} days" if lim.at_d is not None else "",
            )
            if x
        )
        bounds = _limit_text(lim, unit)
        out.append(
            MeasureResult(lim.measure, label, None, unit, "not measured", MISSING, _limits([lim], unit, spec), detail, (), bounds)
        )
    return out


def product_limits(record: BatchRecord, k: Knowledge) -> tuple[str, list[Any]]:
    """The site's specification for the batch's product (matched by code, and by system when both give one):
    its printed name and its limits; ("", []) when the site set none."""
    codings = record.product_codings or ((record.product_system, record.product_code),)
    for p in k.qc_limits.products:
        if any(code == p.code and (not p.system or not system or p.system == system) for system, code in codings):
            return f"{p.name}, specification {p.specification} version {p.version}", list(p.limits)
    return "", []


def _said(label: str, detail: str, shown: str = "") -> str:
    """A measure as a conclusion names it: its label, its value, and where or when it was measured (unless the
    label says it already)."""
    text = f"{label} {shown}".strip()
    return f"{text} ({detail})" if detail and detail not in label else text


# the results each graded measure is computed from (a measure not listed is read as it is)
COMPUTED_FROM = {
    **dict.fromkeys(("d10", "d50", "d90", "span", "d43", "share_outside_range"), ("particle_count",)),
    "entrapment_efficiency": ("drug_content_actual", "drug_content_theoretical", "entrapment_efficiency"),
    "swelling_index": ("swollen_weight", "swelling_index"),
    **dict.fromkeys(("t50", "t80", "release_exponent", "drug_released"), ("drug_released",)),
    "retained_drug_content": ("stability_drug_content",),
}


def _unusable(record: BatchRecord, limits: Sequence[Any]) -> list[Problem]:
    """Results left out that a limited measure depends on (or whose measure could not be told): a batch is never
    released on the results that remain after one was dropped, since the dropped one may have failed."""
    needed = {src for lim in limits for src in COMPUTED_FROM.get(lim.measure, (lim.measure,))}
    return [p for p in record.problems if p.about in needed or p.about in ("", "batch")]


def interpret_batch(record: BatchRecord, k: Knowledge, now: datetime) -> BatchFinding:
    spec, limits = product_limits(record, k) if record.product_code or record.product_codings else ("", [])
    f = BatchFinding(record, now, spec)
    candidates = [
        *_size(record, k, f),
        *_entrapment(record, f),
        *_swelling(record, f, limits),
        *_release(record, k, f, limits),
        *_stability(record, f, limits),
        *_zeta(record),
    ]
    f.results = [_grade(k, c, limits, spec) for c in candidates] + _unmet(k, limits, candidates, spec)
    f.results += [
        MeasureResult(q.method, _label(k, q.method)[0], None, "", q.text, NOT_GRADED, "", "qualitative finding", (q.source,))
        for q in record.qualitative
    ]
    f.preliminary = any(v.status == "preliminary" for v in record.values) or any(c.status == "preliminary" for c in record.counts)
    f.failing = [f"{_said(r.label, r.detail, r.shown)}, limit {r.bounds}" for r in f.results if r.status == FAIL]
    f.missing = [_said(r.label, r.detail) for r in f.results if r.status == MISSING]
    unusable = _unusable(record, limits)
    if f.failing:
        f.conclusion = NOT_RELEASED
        f.reasons = [f"outside its limit: {x}" for x in f.failing]
    elif not limits:
        f.conclusion = INCOMPLETE
        f.reasons = ["no acceptance limits are configured for this product: the values are reported, not graded"]
    elif f.missing or unusable:
        f.conclusion = INCOMPLETE
        f.reasons = [f"no result for a limited measure: {x}" for x in f.missing]
        f.reasons += [f"a result a limited measure depends on could not be used: {p.where}" for p in unusable]
    elif f.preliminary:
        f.conclusion = INCOMPLETE
        f.reasons = ["every limited measure is within its limit, but some results are preliminary"]
    else:
        f.conclusion = RELEASED
        f.reasons = [f"every limited measure is within its limit ({spec})"]
    return f
