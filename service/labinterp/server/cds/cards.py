"""The CDS Hooks card: its parts and the rules every card follows (CDS Hooks 2.0, Card Attributes).

- `uuid`: a random UUID per card (and per suggestion): feedback refers to it; nothing about the patient is in it.
- `summary`: one sentence under 140 characters, cut at a word with an ellipsis when longer; the finding and its level
  first (the result as its report shows it, with the value in the range's unit beside it), the drug's short name
  after: the EHR's own drug text goes into the detail, where its length can push nothing out.
- `detail`: GitHub-flavoured markdown; the findings' words are escaped, so a genotype's `*1/*3` stays as written.
- `indicator`: from the finding's severity, through the v3 ObservationInterpretation code the report carries
  (INDICATORS) or the risk level; `info` when nothing is out of range.
- `source`: labinterp and its rule set, with a link to the labinterp Device on the FHIR server (the software and
  rule set the card comes from) and the report's LOINC code as `topic`; the cited sources are in the detail.
- `links`: the labinterp report on the FHIR server (by its series identifier: the latest report of that kind).
- `overrideReasons`: Codings of the local code system OVERRIDE_SYSTEM (docs/cds-hooks.md)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from labinterp import __version__
from labinterp.compose.common import Written
from labinterp.knowledge import Knowledge

SUMMARY_MAX = 139  # CDS Hooks: a "<140-character" summary
OVERRIDE_SYSTEM = "urn:labinterp:cds-override-reason"
OVERRIDE_REASONS = (
    ("already-addressed", "Already addressed (level ordered, dose reviewed or monitoring in place)"),
    ("not-applicable", "Not applicable to this patient or this order"),
    ("benefit-outweighs-risk", "Benefit outweighs the risk; the patient will be monitored"),
    ("data-incorrect", "The result or data the card is based on is incorrect"),
)
# v3 ObservationInterpretation code of a finding -> card indicator
INDICATORS = {"N": "info", "L": "warning", "H": "warning", "<": "warning", ">": "critical", "LL": "critical", "HH": "critical"}
_MARKDOWN = re.compile(r"([\\`*_\[\]<>#|~])")


def summary_text(text: str) -> str:
    """One line under 140 characters: whitespace collapsed, cut at a word boundary with an ellipsis."""
    text = " ".join(text.split())
    if len(text) <= SUMMARY_MAX:
        return text
    cut = text[: SUMMARY_MAX - 1]
    space = cut.rfind(" ")
    if space > SUMMARY_MAX // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:.-(") + "…"


def md(text: str) -> str:
    """Plain words as markdown that shows them as they are."""
    return _MARKDOWN.sub(r"\\\1", text)


def plain(markdown: str) -> str:
    """The words of `md` output again (for comparing a card with a report)."""
    return re.sub(r"\\([\\`*_\[\]<>#|~])", r"\1", markdown)


def section(title: str, lines: Iterable[str]) -> str:
    """A bold title and a bullet list of plain lines; "" when there are none."""
    items = [line for line in lines if line]
    if not items:
        return ""
    return f"**{md(title)}**\n\n" + "\n".join(f"- {md(line)}" for line in items)


def paragraph(title: str, text: str) -> str:
    return f"**{md(title)}:** {md(text)}" if text else ""


def detail(*parts: str) -> str:
    return "\n\n".join(p for p in parts if p)


def worst(*indicators: str) -> str:
    order = ("info", "warning", "critical")
    return max(indicators, key=order.index, default="info")


def risk_indicator(*risks: str | None) -> str:
    return "warning" if "high" in risks else "info"


@dataclass
class Card:
    kind: str  # "linezolid-tdm", "magnesium-order", ...: stored with the card's uuid for feedback
    summary: str
    detail: str
    indicator: str
    topic: str | None = None  # the report kind whose LOINC code is the card's topic
    links: list[dict[str, str]] = field(default_factory=list)
    suggestions: list[dict[str, Any]] = field(default_factory=list)
    uuid: str = field(default_factory=lambda: str(uuid.uuid4()))


def suggestion(label: str, actions: list[dict[str, Any]], recommended: bool = False) -> dict[str, Any]:
    return {"label": label, "uuid": str(uuid.uuid4()), "isRecommended": recommended, "actions": actions}


@dataclass
class CardContext:
    """What every card of one call shares: the knowledge, labinterp's FHIR server (for links), the composed reports."""

    k: Knowledge
    fhir_base: str
    written: list[Written] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)  # a draft order's local reference -> the client's words

    def words(self, text: str) -> str:
        for local, shown in self.aliases.items():
            text = text.replace(local, shown)
        return text

    def report_link(self, kind: str) -> list[dict[str, str]]:
        """A link to the labinterp report of this kind on the FHIR server: a search by its series identifier."""
        series = self.k.output.systems["series_identifier"]
        for w in self.written:
            if w.kind != kind:
                continue
            value = next((i["value"] for i in w.resource.get("identifier", []) if i.get("system") == series), None)
            if value is None:
                return []
            rtype = w.resource["resourceType"]
            title = self.k.output.reports[kind].title if kind in self.k.output.reports else rtype
            url = f"{self.fhir_base}/{rtype}?identifier={quote(f'{series}|{value}', safe='')}"
            return [{"label": f"labinterp report: {title} (latest, on the FHIR server)", "url": url, "type": "absolute"}]
        return []

    def as_reported(self, kind: str, words: str) -> str:
        """`words` ("Serum magnesium 0.55 mmol/L") with the value in the range's unit beside it as the report of that
        kind shows it in its headline ("Serum magnesium 0.55 mmol/L (1.337 mg/dL)"): taken from the report's view,
        never recomputed; `words` as they are when the report shows no converted value."""
        for w in self.written:
            if w.kind == kind and w.view is not None:
                found = re.match(re.escape(words) + r"( \([^()]+\))(?=:|$)", w.view.headline)
                return words + found.group(1) if found else words
        return words

    def conclusion(self, kind: str) -> str:
        for w in self.written:
            if w.kind == kind:
                return str(w.resource.get("conclusion", ""))
        return ""

    def source(self, topic: str | None) -> dict[str, Any]:
        device = self.k.output.systems["device_identifier"]
        value = f"labinterp-{__version__}-ruleset-{self.k.ruleset_version}"
        out: dict[str, Any] = {
            "label": f"labinterp {__version__} (rule set {self.k.ruleset_version})",
            "url": f"{self.fhir_base}/Device?identifier={quote(f'{device}|{value}', safe='')}",
        }
        report = self.k.output.reports.get(topic) if topic else None
        if report is not None:
            out["topic"] = {"system": self.k.output.systems["loinc"], "code": report.loinc, "display": report.loinc_display}
        return out

    def render(self, card: Card) -> dict[str, Any]:
        """The card as CDS Hooks JSON: optional members left out when empty (no empty arrays)."""
        out: dict[str, Any] = {
            "uuid": card.uuid,
            "summary": summary_text(self.words(card.summary)),
            "indicator": card.indicator,
            "source": self.source(card.topic),
        }
        if card.detail:
            out["detail"] = self.words(card.detail)
        if card.suggestions:
            out["suggestions"] = card.suggestions
            out["selectionBehavior"] = "at-most-one"
        if card.links:
            out["links"] = card.links
        if card.indicator != "info" or card.suggestions:
            out["overrideReasons"] = [{"system": OVERRIDE_SYSTEM, "code": c, "display": d} for c, d in OVERRIDE_REASONS]
        return out
