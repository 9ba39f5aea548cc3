"""What every DiagnosticReport shares (SPEC section 6): the resource's frame and the "Not used" section.
One module per report kind beside it: linezolid, magnesium, renal, genotype."""

from __future__ import annotations

from typing import Any

from service.compose import narrative as nv
from service.compose.common import Context, concept, instant, ref
from service.rules import Findings


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
