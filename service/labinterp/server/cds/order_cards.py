"""Cards of the order hooks (order-select, order-sign), from the findings of the patient's data with the draft orders
read as active orders.

Linezolid ordered:
- a trough on record: the current TDM advice (the same words as the TDM report's suggestion);
- no trough yet: the risk of under- and overexposure before the first dose (genotype, age, renal function,
  rifampicin), and when to draw the first trough; a suggestion to order that trough (a draft ServiceRequest) on the
  risk card when a risk is high, else on the timing card.
A drug that lowers magnesium ordered while the latest serum magnesium is low: a warning (critical when severe)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from labinterp.extract.facts import MedicationExposure
from labinterp.rules import Findings
from labinterp.rules.magnesium import named_causes
from labinterp.server.cds.cards import Card, CardContext, detail, paragraph, risk_indicator, section, suggestion, worst
from labinterp.server.cds.findings_cards import (
    exposure_sections,
    linezolid_card,
    magnesium_indicator,
    magnesium_lines,
    risk_words,
)
from labinterp.server.cds.orders import Draft, FirstTrough, first_trough, trough_request


def trough_suggestion(ctx: CardContext, patient_id: str, first: FirstTrough, draft: Draft) -> dict[str, Any]:
    """Create a draft ServiceRequest for the first trough, at the time the card gives, based on the order."""
    action = {
        "type": "create",
        "description": f"A draft ServiceRequest for a steady-state linezolid trough at {first.when}",
        "resource": trough_request(ctx.k, patient_id, first, draft.reference),
    }
    return suggestion("Order the first linezolid trough level", [action], recommended=True)


def linezolid_order_cards(
    ctx: CardContext, f: Findings, drafts: list[tuple[Draft, MedicationExposure]], patient_id: str, now: datetime
) -> list[Card]:
    orders = [(d, m) for d, m in drafts if "linezolid" in m.drugs]
    if not orders:
        return []
    draft, order = orders[0]
    lz = f.linezolid
    if lz is not None:  # a level on record: its TDM advice
        card = linezolid_card(ctx, f, lz, "linezolid-order-tdm")
        what = "level (not a trough)" if lz.timing.is_trough is False else "trough"
        card.summary = f"Linezolid order: latest {what} {lz.trough.original}, " + (
            lz.band.text if lz.band else lz.why_indeterminate
        )
        return [card]
    first = first_trough(f.record, ctx.k, order, now)
    request = [trough_suggestion(ctx, patient_id, first, draft)] if first is not None else []
    cards: list[Card] = []
    exposure = f.exposure
    high = exposure is not None and "high" in (exposure.under.risk, exposure.over.risk)
    if exposure is not None and (exposure.under.risk is not None or exposure.over.risk is not None or f.pgx is not None):
        cards.append(
            Card(
                "linezolid-order-risk",
                f"Linezolid order: {risk_words(exposure)}",
                detail(*exposure_sections(exposure), paragraph("First trough", first.text if first else "")),
                risk_indicator(exposure.under.risk, exposure.over.risk),
                "genotype" if f.pgx is not None else None,
                ctx.report_link("genotype") or ctx.report_link("exposure-risk"),
                request if high else [],
            )
        )
    if first is not None:
        cards.append(
            Card(
                "linezolid-order-first-trough",
                f"Linezolid order: draw the first trough at {first.when}, just before dose {first.dose}",
                detail(paragraph("First trough", first.text)),
                "info",
                "linezolid",
                [],
                [] if high else request,
            )
        )
    return cards


def magnesium_order_cards(ctx: CardContext, f: Findings, drafts: list[tuple[Draft, MedicationExposure]]) -> list[Card]:
    mg = f.magnesium
    if mg is None or not mg.hypo or mg.band is None:
        return []
    k = ctx.k
    ordered: list[str] = []
    digoxin = False
    for _draft, m in drafts:
        for label in named_causes(f.record, k, [m]):  # the magnesium rule's own list of causes (magnesium_causes.csv)
            ordered.append(label.removesuffix(f" ({m.kind} {m.source.reference}, status {m.status})"))
        digoxin = digoxin or "digoxin" in m.drugs
    if not ordered:
        return []
    classes = {label.split(": ", 1)[0] for label in ordered}
    # the clinical source of each class (its first part; the rest says where the ATC codes were verified)
    sources = list(dict.fromkeys(c.source.split(";", 1)[0] for c in k.mg_causes if c.display in classes))
    category = mg.band.text.split(":", 1)[0]
    text = detail(
        paragraph("Ordered", "; ".join(ordered) + ": can lower serum magnesium further."),
        paragraph(
            "Latest serum magnesium", f"{mg.mg.original} ({mg.mg.time.text if mg.mg.time else 'undated'}): {mg.band.text}."
        ),
        paragraph("Digoxin", f"{k.magnesium.digoxin.text} ({k.magnesium.digoxin.source})" if digoxin else ""),
        section("Causes of hypomagnesemia: sources", sources),
        *magnesium_lines(mg),
    )
    names = ", ".join(label.split(": ", 1)[-1] for label in ordered)
    return [
        Card(
            "magnesium-order",
            f"{names} ordered with low serum magnesium {mg.mg.original} ({category})",
            text,
            worst(magnesium_indicator(mg), "warning"),
            "magnesium",
            ctx.report_link("magnesium"),
        )
    ]
