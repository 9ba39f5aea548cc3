"""Cards of the order hooks (order-select, order-sign), from the findings of the patient's data with the draft orders
read as active orders.

Linezolid ordered:
- a trough of the current course on record: the current TDM advice (the same words as the TDM report's suggestion);
- a trough of an earlier course only (orders.trough_course: the course has ended, or began after the trough): that
  trough as history, "it does not apply to the new order: draw a new trough at steady state", never its advice;
  then the cards of a new course, as below;
- no trough yet: the risk of under- and overexposure before the first dose (genotype, age, renal function,
  rifampicin), and when to draw the first trough; a suggestion to order that trough (a draft ServiceRequest) on the
  risk card when a risk is high, else on the timing card. When the time cannot be computed (rules.first_trough
  gives none, or fails), a timing card says so and how to draw it.
A drug that lowers magnesium ordered while the latest serum magnesium is low: a warning (critical when severe), its
summary the level and what to do first, the drug's short name after (the EHR's full text is in the detail)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from labinterp.compose.view import when as shown_time
from labinterp.errors import LabinterpError
from labinterp.extract.facts import MedicationExposure
from labinterp.knowledge import Knowledge
from labinterp.rules import Findings
from labinterp.rules.exposure import assess_exposure
from labinterp.rules.linezolid import LinezolidFinding
from labinterp.rules.magnesium import MagnesiumFinding, named_causes
from labinterp.server.cds.cards import Card, CardContext, detail, paragraph, risk_indicator, section, suggestion, worst
from labinterp.server.cds.findings_cards import (
    exposure_sections,
    linezolid_card,
    magnesium_indicator,
    magnesium_lines,
    magnesium_value,
    risk_words,
    trough_category,
    trough_kind,
    trough_value,
)
from labinterp.server.cds.orders import Draft, FirstTrough, TroughCourse, first_trough, trough_course, trough_request

log = logging.getLogger("labinterp.cds.cards")


def trough_suggestion(ctx: CardContext, patient_id: str, first: FirstTrough, draft: Draft) -> dict[str, Any]:
    """Create a draft ServiceRequest for the first trough, at the time the card gives, based on the order."""
    action = {
        "type": "create",
        "description": f"A draft ServiceRequest for a steady-state linezolid trough at {first.when}",
        "resource": trough_request(ctx.k, patient_id, first, draft.reference),
    }
    return suggestion("Order the first linezolid trough level", [action], recommended=True)


def planned_first_trough(ctx: CardContext, f: Findings, order: MedicationExposure, now: datetime) -> FirstTrough | None:
    """rules.first_trough for the order; None when it gives none or cannot compute one (never a 500)."""
    try:
        return first_trough(f.record, ctx.k, order, now)
    except (LabinterpError, OverflowError) as exc:
        log.warning("CDS: the first linezolid trough could not be computed (%s)", type(exc).__name__)
        return None


def no_first_trough(ctx: CardContext) -> Card:
    """The timing card when the time cannot be computed: how to draw the first trough, without a time."""
    t = ctx.k.linezolid.trough
    return Card(
        "linezolid-order-first-trough",
        "Linezolid order: the first trough time cannot be computed from this order; draw it at steady state",
        detail(
            paragraph(
                "First trough",
                "When to draw the first trough cannot be computed from this order (its start, dose interval or "
                f"schedule gives no time the trough-timing rule can plan on). Draw it at steady state (>= "
                f"{t.steady_state_h:g} h of therapy), one dosing interval +/- {t.tolerance_min:g} min after a dose, just "
                f"before the next one, and record the sampling and dose times ({t.source}).",
            )
        ),
        "info",
        "linezolid",
    )


def earlier_words(ctx: CardContext, lz: LinezolidFinding) -> str:
    sampled = shown_time(lz.trough.time.text) if lz.trough.time else "undated"
    return (
        f"The risks above are those before the first dose of this course. A {trough_kind(lz)} of an earlier course, "
        f"{sampled}: {trough_value(ctx, lz)}, {trough_category(lz)} (history: see its card)."
    )


def earlier_course_card(ctx: CardContext, lz: LinezolidFinding, course: TroughCourse) -> Card:
    """A trough of an earlier course, as history: its result and date, never its advice."""
    sampled = shown_time(lz.trough.time.text) if lz.trough.time else "undated"
    day = lz.trough.time.text[:10] if lz.trough.time else "undated"
    return Card(
        "linezolid-order-earlier-course",
        f"Linezolid order: the latest {trough_kind(lz)} ({day}) is of an earlier course; draw a new trough at steady state",
        detail(
            paragraph(
                "Earlier course",
                f"A {trough_kind(lz)} of an earlier course, {sampled}: {trough_value(ctx, lz)}, {trough_category(lz)}; "
                "it does not apply to the new order: draw a new trough at steady state.",
            ),
            paragraph("Course", f"{course.why}."),
            paragraph(
                "History",
                "The TDM advice given for that trough (in its report) was for the course it was drawn in, not for this order.",
            ),
        ),
        "info",
        "linezolid",
        ctx.report_link("linezolid"),
    )


def linezolid_order_cards(
    ctx: CardContext, f: Findings, drafts: list[tuple[Draft, MedicationExposure]], patient_id: str, now: datetime
) -> list[Card]:
    orders = [(d, m) for d, m in drafts if "linezolid" in m.drugs]
    if not orders:
        return []
    draft, order = orders[0]
    lz = f.linezolid
    history: list[Card] = []
    if lz is not None:
        course = trough_course(f.record, ctx.k, lz.trough, now)
        if course.current is not False:  # a level of the current course (or one that cannot be placed): its advice
            card = linezolid_card(ctx, f, lz, "linezolid-order-tdm")
            card.summary = f"Linezolid order: latest {trough_kind(lz)} {trough_value(ctx, lz)}, {trough_category(lz)}"
            if course.current is None:
                sampled = shown_time(lz.trough.time.text) if lz.trough.time else "undated"
                card.detail = detail(paragraph("Course", f"Sampled {sampled}; {course.why}."), card.detail)
            return [card]
        history.append(earlier_course_card(ctx, lz, course))  # a new course: the cards before its first dose follow
    first = planned_first_trough(ctx, f, order, now)
    request = [trough_suggestion(ctx, patient_id, first, draft)] if first is not None else []
    cards: list[Card] = []
    exposure = f.exposure
    if history:
        # the risk before the first dose of the new course: the exposure rule itself, the earlier course's trough set
        # aside (that trough, and the advice given for it, belong to its course: the history card shows them)
        age = f.record.patient.age_at(now.date())
        exposure = assess_exposure(f.record, None, f.pgx, f.renal, f.age if age is None else age, ctx.k)
    high = exposure is not None and "high" in (exposure.under.risk, exposure.over.risk)
    if exposure is not None and (exposure.under.risk is not None or exposure.over.risk is not None or f.pgx is not None):
        cards.append(
            Card(
                "linezolid-order-risk",
                f"Linezolid order: {risk_words(exposure)}",
                detail(
                    *exposure_sections(exposure),
                    paragraph("First trough", first.text if first else ""),
                    paragraph("Earlier course", earlier_words(ctx, lz) if history and lz is not None else ""),
                ),
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
    else:
        cards.append(no_first_trough(ctx))
    return cards + history


def short_name(k: Knowledge, m: MedicationExposure, display: str) -> str:
    """The drug's short name: the name of magnesium_causes.csv the order's text matched ("omeprazole"), else the drug
    keys the extraction recognised, else the class ("loop diuretic"); never the EHR's full prescription text."""
    words = m.name.lower()
    cause = next((c for c in k.mg_causes if c.display == display), None)
    named = next((n for n in cause.names if n in words), None) if cause is not None else None
    return named or ", ".join(sorted(m.drugs)) or display.lower()


def magnesium_category(mg: MagnesiumFinding) -> str:
    """The band's name as the report codes it ("hypomagnesemia", "severe hypomagnesemia")."""
    return mg.band.text.split(":")[0].split(" (")[0] if mg.band else ""


def magnesium_order_cards(ctx: CardContext, f: Findings, drafts: list[tuple[Draft, MedicationExposure]]) -> list[Card]:
    mg = f.magnesium
    if mg is None or not mg.hypo or mg.band is None:
        return []
    k = ctx.k
    ordered: list[str] = []
    shorts: list[str] = []
    digoxin = False
    for _draft, m in drafts:
        for label in named_causes(f.record, k, [m]):  # the magnesium rule's own list of causes (magnesium_causes.csv)
            label = label.removesuffix(f" ({m.kind} {m.source.reference}, status {m.status})")
            ordered.append(label)
            shorts.append(short_name(k, m, label.split(": ", 1)[0]))
        digoxin = digoxin or "digoxin" in m.drugs
    if not ordered:
        return []
    classes = {label.split(": ", 1)[0] for label in ordered}
    # the clinical source of each class (its first part; the rest says where the ATC codes were verified)
    sources = list(dict.fromkeys(c.source.split(";", 1)[0] for c in k.mg_causes if c.display in classes))
    value = magnesium_value(ctx, mg)
    text = detail(
        paragraph("Ordered", "; ".join(ordered) + ": can lower serum magnesium further."),
        paragraph("Latest serum magnesium", f"{value} ({mg.mg.time.text if mg.mg.time else 'undated'}): {mg.band.text}."),
        paragraph("Digoxin", f"{k.magnesium.digoxin.text} ({k.magnesium.digoxin.source})" if digoxin else ""),
        section("Causes of hypomagnesemia: sources", sources),
        *magnesium_lines(mg),
    )
    names = list(dict.fromkeys(shorts))
    orders = "order" if len(names) == 1 else "orders"
    return [
        Card(
            "magnesium-order",
            # the level and what to do first: a long prescription text must not push them out of the summary
            f"Serum magnesium {value}, {magnesium_category(mg)}: review the {', '.join(names)} {orders} "
            "(can lower magnesium further)",
            text,
            worst(magnesium_indicator(mg), "warning"),
            "magnesium",
            ctx.report_link("magnesium"),
        )
    ]
