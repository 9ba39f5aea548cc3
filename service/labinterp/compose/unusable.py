"""The report for results that were received and recognised but could not be interpreted (issue 7 point 5)."""

from __future__ import annotations

from labinterp.compose.common import Context, Written, ref
from labinterp.compose.renal import renal_section
from labinterp.compose.reports import report, report_view
from labinterp.compose.view import section
from labinterp.extract.facts import Problem
from labinterp.rules import Findings


def unusable_report(ctx: Context, f: Findings, kind: str, problems: list[Problem]) -> Written:
    """A report for results that were received but could not be interpreted, so the laboratory's request is
    answered and nothing is dropped silently: which results, why, and that no interpretation is given."""
    reasons = [f"{p.where}: {p.what}" for p in problems]
    lead = [
        f"{len(problems)} result{'s' if len(problems) > 1 else ''} received but not interpretable: no interpretation is given.",
        "Correct or complete the result (unit, value, status) and it will be interpreted.",
    ]
    sources = [p.source for p in problems if p.source is not None]
    conclusion = " ".join([*lead, *(r + "." for r in reasons)])
    body = report(ctx, kind, "final", {}, [ref(s) for s in sources], conclusion, [])
    measured = [m for m in f.record.measurements if m.source in sources]
    view = report_view(
        ctx,
        f,
        kind,
        "final",
        lead[0],
        about=measured[0] if measured else None,
        measured=measured,
        interpretation=lead[1:],
        sections=[*section("Not interpretable", reasons), *(renal_section(f.renal) if f.renal is not None else [])],
    )
    return ctx.new(kind, body, [*sources, ctx.patient], view)
