"""What every DiagnosticReport shares (SPEC section 6): the resource's frame and the "Not used" section.
One module per report kind beside it: linezolid, magnesium, renal, genotype."""

from __future__ import annotations

from typing import Any

from labinterp.compose import narrative as nv
from labinterp.compose.common import Context, Written, concept, instant, ref
from labinterp.extract.facts import Problem
from labinterp.rules import Findings


def report(
    ctx: Context,
    kind: str,
    status: str,
    effective_at: dict[str, str],
    results: list[dict[str, str]],
    conclusion: str,
    codes: list[dict[str, Any]],
    text: dict[str, str],
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
    body["text"] = text
    return body


def not_used(f: Findings) -> str:
    items = [f"{i.source.reference}: {i.why}" for i in f.record.ignored]
    items += [f"{p.where}: {p.what} (not interpreted)" for p in f.record.problems]
    return nv.section("Not used", items)


def unusable_report(ctx: Context, f: Findings, kind: str, problems: list[Problem]) -> Written:
    """A report for results that were received but could not be interpreted, so the laboratory's request is
    answered and nothing is dropped silently: which results, why, and that no interpretation is given."""
    title = ctx.k.output.reports[kind].title
    reasons = [f"{p.where}: {p.what}" for p in problems]
    lead = [
        f"{len(problems)} result{'s' if len(problems) > 1 else ''} received but not interpretable: no interpretation is given.",
        "Correct or complete the result (unit, value, status) and it will be interpreted.",
    ]
    text = nv.div(title, lead, nv.section("Not interpretable", reasons), not_used(f))
    sources = [p.source for p in problems if p.source is not None]
    conclusion = " ".join([*lead, *(r + "." for r in reasons)])
    body = report(ctx, kind, "final", {}, [ref(s) for s in sources], conclusion, [], text)
    return ctx.new(kind, body, [*sources, ctx.patient])
