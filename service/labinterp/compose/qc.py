"""Pure: a batch's QC findings -> its QC DiagnosticReport (with the view its narrative, HTML page and PDF are
rendered from) and the Provenance of the write (SPEC sections 5 and 6).

The report has no `subject` (R4's DiagnosticReport.subject cannot point at a Substance): it names the batch's
samples in `specimen` (each Specimen's subject is the batch's Substance), the source Observations in `result`,
the conclusion (released / not released / incomplete, with the failing or missing measures) in `conclusion` and,
coded in labinterp's formulation-QC code system, in `conclusionCode`. Its identifiers are derived from the batch
and the inputs' versions, so a replay writes nothing and changed inputs amend the batch's report."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from labinterp import __version__
from labinterp.compose.common import Context, Written, concept, instant, ref
from labinterp.compose.provenance import provenance
from labinterp.compose.view import NOT_RECORDED, NOT_USED, Curve, Plot, View, lines, section, status_shown, table, when
from labinterp.knowledge import Knowledge
from labinterp.rules.qc import FAIL, MISSING, NOT_GRADED, NOT_RELEASED, RELEASED, BatchFinding, number
from labinterp.rules.qc_math import ModelFit

KIND = "formulation-qc"
MEASURES_HEADER = ["Measure", "Result", "Acceptance limit", "Status", "Detail"]
MODELS_HEADER = ["Model", "Equation", "Parameters", "R²", "Adjusted R²", "AIC", "Points"]
HEADLINES = {RELEASED: "RELEASED", NOT_RELEASED: "NOT RELEASED", "incomplete": "INCOMPLETE: not released"}


def compose_batch(f: BatchFinding, k: Knowledge, now: datetime, dev: Written, with_provenance: bool = True) -> list[Written]:
    """The batch's QC report (and its Provenance); empty when the batch has no usable result at all."""
    r = f.record
    inputs = [v.source for v in r.values] + [c.source for c in r.counts] + [q.source for q in r.qualitative]
    if not inputs:
        return []
    ctx = Context(k, now, r.batch)
    status = "preliminary" if f.preliminary else "final"
    times = [t for t in [v.time for v in r.values] + [c.time for c in r.counts] if t is not None]
    latest = max(times, key=lambda t: t.start) if times else None
    results = [ref(src) for src in dict.fromkeys(inputs)]
    body: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "status": status,
        "category": [concept(ctx.systems["diagnostic_service"], "LAB", "Laboratory")],
        "code": _code(k),
        **({"effectiveDateTime": latest.text} if latest else {}),
        "issued": instant(now),
        "specimen": [ref(s) for s in r.specimens],
        "result": results,
        "conclusion": conclusion_text(f),
        "conclusionCode": [_conclusion_code(k, f.conclusion)],
    }
    if not r.specimens:
        del body["specimen"]
    view = batch_view(f, k, now, status)
    report = ctx.new(KIND, body, [r.batch, *r.specimens, *inputs], view)
    out = [report]
    if with_provenance:
        out.append(provenance(ctx, out, dev))
    return out


def _code(k: Knowledge) -> dict[str, Any]:
    report = k.qc.report
    return concept(k.qc.system.url, report.code, report.display, report.display)


def _conclusion_code(k: Knowledge, conclusion: str) -> dict[str, Any]:
    c = k.qc.conclusions[conclusion.replace(" ", "_")]
    return concept(k.qc.system.url, c.code, c.display)


def conclusion_text(f: BatchFinding) -> str:
    what = f"Batch {f.record.lot or NOT_RECORDED} of {f.record.product_name or 'an unnamed product'}"
    head = {RELEASED: "released", NOT_RELEASED: "NOT released", "incomplete": "incomplete: not released"}[f.conclusion]
    return f"{what}: {head}. " + " ".join(f"{x[0].upper()}{x[1:]}." for x in f.reasons)


def batch_line(f: BatchFinding) -> str:
    r = f.record
    return " · ".join((r.product_name or "product not recorded", f"lot {r.lot or NOT_RECORDED}", r.batch.reference))


def batch_view(f: BatchFinding, k: Knowledge, now: datetime, status: str) -> View:
    r = f.record
    issued = instant(now)
    header = [
        ("Product", r.product_name or NOT_RECORDED),
        ("Lot", r.lot or NOT_RECORDED),
        ("Specification", f.specification or "no acceptance limits configured"),
        ("Samples", ", ".join(s.reference for s in r.specimens) or NOT_RECORDED),
        ("Issued", when(issued)),
        ("Status", status_shown(status)),
        ("Batch record", r.batch.reference),
    ]
    rows = [
        [
            m.label,
            m.shown,
            m.bounds or "-",
            m.status.upper() if m.status in (FAIL, MISSING) else m.status,
            m.detail,
        ]
        for m in f.results
        if m.status != NOT_GRADED
    ]
    qualitative = [f"{m.label}: {m.shown}" for m in f.results if m.status == NOT_GRADED]
    tables = [
        *table("Measures", MEASURES_HEADER, rows),
        *table("Release models", MODELS_HEADER, _model_rows(f)),
        *table(
            "Swelling index (weight gain relative to the dry weight)",
            ["Medium", "Time (h)", "Swelling index (%)"],
            [[m, number(h), number(si)] for m, pts in f.swelling.items() for h, si in pts],
        ),
        *table(
            "Stability: drug content retained",
            ["Storage condition", "Storage time (days)", "Retained (%)"],
            [[c, number(d), number(rv)] for c, pts in f.stability.items() for d, rv in pts],
        ),
    ]
    release_lines = []
    if f.release is not None:
        medium = f" in {f.release_medium}" if f.release_medium else ""
        release_lines.append(
            f"Highest release{medium} {number(f.release.max_released)} % in {len(f.release.points)} time points; "
            f"t50 {_hours(f.release.t50)}, t80 {_hours(f.release.t80)}."
        )
    for other, fit in f.releases.items():
        if other != f.release_medium:
            release_lines.append(
                f"Release in {other or 'a medium not recorded'}: highest {number(fit.summary.max_released)} %, "
                f"t50 {_hours(fit.summary.t50)}, t80 {_hours(fit.summary.t80)}, best model {fit.best or 'none'}."
            )
    if f.best_model:
        release_lines.append(f"Best fitting model over all points (lowest AIC): {f.best_model}.")
    if f.peppas is not None:
        n = number(f.peppas.params["n"])
        meaning = f": {f.peppas_meaning}" if f.peppas_meaning else " (no interpretation: no verified source for this range)"
        release_lines.append(f"Korsmeyer-Peppas release exponent n = {n} ({f.peppas.note or 'early points'}){meaning}.")
        release_lines.append("Its AIC is not compared with the other models': it is fitted on a subset of the points.")
    basis = [
        f"Evaluation methods: {k.qc.meta.source}.",
        f"Microspheres are {number(k.qc.microsphere_range.low_um)}-{number(k.qc.microsphere_range.high_um)} µm "
        f"({k.qc.microsphere_range.source}).",
        f"Release models fitted by nonlinear least squares; Korsmeyer-Peppas on the points up to "
        f"{number(k.qc_models.peppas.max_released_pct)} % released ({k.qc_models.peppas.source}).",
        f"Acceptance limits: {f.specification}."
        if f.specification
        else "No acceptance limits are configured for this product; labinterp sets none.",
    ]
    problems = [f"{p.where}: {p.what} (not interpreted)" for p in r.problems]
    return View(
        title=f"{k.qc.report.display}: {r.product_name or 'product not recorded'}, lot {r.lot or NOT_RECORDED}",
        patient=batch_line(f),
        issued=issued,
        status=status,
        headline=f"{HEADLINES[f.conclusion]}: {r.product_name or 'product'} lot {r.lot or NOT_RECORDED}",
        header=header,
        footer=f"labinterp {__version__}, rule set {k.ruleset_version}; issued {when(issued)}. Formulation QC against the "
        "laboratory's own acceptance limits; release is the laboratory's decision.",
        interpretation=lines([conclusion_text(f), *release_lines]),
        tables=tables,
        sections=[
            *section("Qualitative findings (attached, not graded)", qualitative),
            *section("Basis", basis),
            *section(NOT_USED, problems),
        ],
        plots=[p for p in [release_plot(f)] if p is not None],
    )


def _hours(v: float | None) -> str:
    return f"{number(v)} h" if v is not None else "not reached"


def _model_rows(f: BatchFinding) -> list[list[str]]:
    fits = [*f.fits, *([f.peppas] if f.peppas is not None else [])]
    return [
        [
            m.name + (" (best)" if m.name == f.best_model else ""),
            m.equation,
            ", ".join(f"{key} = {number(v)}" for key, v in m.params.items()),
            f"{m.r2:.4f}",
            f"{m.adj_r2:.4f}",
            number(m.aic),
            str(m.n_points),
        ]
        for m in fits
    ]


def model_value(m: ModelFit, t: float) -> float:
    """The fitted model's cumulative release (%) at `t` hours."""
    p = m.params
    if "k0" in p:
        return p["k0"] * t
    if "k1" in p:
        return 100 * (1 - math.exp(-p["k1"] * t))
    if "kH" in p:
        return p["kH"] * math.sqrt(t)
    return p["kKP"] * t ** p["n"] if t > 0 else 0.0


def release_plot(f: BatchFinding, steps: int = 40) -> Plot | None:
    """The observed release profile with each fitted model over the time it was fitted on."""
    if f.release is None or not f.release.points:
        return None
    pts = f.release.points
    x_max = max(x for x, _ in pts)
    curves = [Curve(f"Observed ({f.release_medium})" if len(f.releases) > 1 else "Observed", tuple(pts), "observed")]
    curves += [
        Curve(f"Observed ({m})", tuple(r.summary.points), "observed") for m, r in f.releases.items() if m != f.release_medium
    ]
    x_max = max([x_max, *(r.summary.points[-1][0] for r in f.releases.values())])
    for m in [*f.fits, *([f.peppas] if f.peppas is not None else [])]:
        top = _kp_top(f, m) if m is f.peppas else x_max
        grid = [top * i / steps for i in range(steps + 1)]
        curves.append(Curve(m.name, tuple((x, min(model_value(m, x), 100.0)) for x in grid), "model"))
    y_max = max(100.0, max(y for _, y in pts))
    return Plot("In-vitro release", "Time (h)", "Released (%)", tuple(curves), x_max, y_max)


def _kp_top(f: BatchFinding, m: ModelFit) -> float:
    """The last time point the Korsmeyer-Peppas fit used (its first n points after time zero)."""
    assert f.release is not None
    after_zero = [x for x, _ in f.release.points if x > 0]
    return after_zero[min(m.n_points, len(after_zero)) - 1] if after_zero else 0.0
