"""What every DiagnosticReport shares (SPEC section 6): the resource's frame, the frame of its view (heading,
footer, the "Not used" section). One module per report kind beside it: linezolid, magnesium, renal, genotype, and
unusable (results received that could not be interpreted). The narrative is rendered from the view
(labinterp.render.report), on every path."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from labinterp.compose.common import Context, concept, instant, ref
from labinterp.compose.heading import footer, heading, patient_line
from labinterp.compose.view import NOT_USED, RangeBar, Section, Table, View, lines, section
from labinterp.extract.facts import Measurement
from labinterp.rules import Findings


def report(
    ctx: Context,
    kind: str,
    status: str,
    effective_at: dict[str, str],
    results: list[dict[str, str]],
    conclusion: str,
    codes: list[dict[str, Any]],
) -> dict[str, Any]:
    rk = ctx.k.output.reports[kind]
    s = ctx.systems
    body: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "status": status,
        "category": [concept(s["diagnostic_service"], rk.category, rk.category_display)],
        "code": concept(s["loinc"], rk.loinc, rk.loinc_display, rk.title),
        "subject": ref(ctx.patient),
        **effective_at,
        "issued": instant(ctx.now),
        "result": results,
        "conclusion": conclusion,
    }
    if codes:
        body["conclusionCode"] = codes
    return body


def not_used(f: Findings) -> list[str]:
    items = [f"{i.source.reference}: {i.why}" for i in f.record.ignored]
    return items + [f"{p.where}: {p.what} (not interpreted)" for p in f.record.problems]


def _footer(ctx: Context, issued: str) -> str:
    """The footer of every report of a run (the same for all: made once per Knowledge and issue time)."""
    key = ("report_footer", issued)
    hit: str | None = ctx.k.memo(key)
    if hit is None:
        hit = ctx.k.remember(key, footer(ctx.k, issued))
    return hit


def report_view(
    ctx: Context,
    f: Findings,
    kind: str,
    status: str,
    headline: str,
    *,
    about: Measurement | None = None,
    measured: Sequence[Measurement] = (),
    collected: str = "",
    bar: RangeBar | None = None,
    interpretation: Sequence[str] = (),
    tables: Sequence[Table] = (),
    sections: Sequence[Section] = (),
) -> View:
    """The view of a report: its own parts framed by the heading block, the "Not used" section and the footer."""
    issued = instant(ctx.now)
    return View(
        title=ctx.k.output.reports[kind].title,
        patient=patient_line(f),
        issued=issued,
        status=status,
        headline=headline,
        header=heading(f, status, issued, about, measured, collected),
        footer=_footer(ctx, issued),
        bar=bar,
        interpretation=lines(interpretation),
        tables=list(tables),
        sections=[*sections, *section(NOT_USED, not_used(f))],
    )
