"""What a rendered report shows, as plain data (a View), and how times are written: shared by the HTML and
the PDF renderings. Pure."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

XHTML = "http://www.w3.org/1999/xhtml"
NOT_RECORDED = "not recorded"
PRELIMINARY_NOTE = "based on preliminary results: values and interpretation may change; a final report will follow."


@dataclass
class RangeBar:
    label: str
    value: float
    unit: str
    low: float
    high: float
    top: float  # right end of the scale
    comparator: str = ""  # a censored result (">8") is shown with its comparator, never as the bare number

    def position(self, v: float) -> float:
        """0..100 on a log scale from top/100 to top (troughs and concentrations span decades)."""
        lo = self.top / 100.0
        v = min(max(v, lo), self.top)
        return round(100.0 * (math.log(v) - math.log(lo)) / (math.log(self.top) - math.log(lo)), 1)


@dataclass
class View:
    title: str
    patient: str  # the patient line of the PDF's running header: name, identifier, birth date
    sample: str
    issued: str
    status: str
    headline: str
    header: list[tuple[str, str]] = field(default_factory=list)  # (label, value) of the report's heading block
    preliminary: bool = False
    bar: RangeBar | None = None
    interpretation: list[str] = field(default_factory=list)
    genotypes: list[list[str]] = field(default_factory=list)
    risks: list[list[str]] = field(default_factory=list)
    suggestion: str = ""
    egfr: str = ""
    basis: list[str] = field(default_factory=list)
    not_used: list[str] = field(default_factory=list)
    footer: str = ""

    def header_rows(self) -> list[list[tuple[str, str, int]]]:
        """The heading block two (label, value) pairs a row; a last lone pair spans the row (colspan 3)."""
        rows = []
        for i in range(0, len(self.header), 2):
            pair = self.header[i : i + 2]
            rows.append([(label, value, 1 if len(pair) == 2 else 3) for label, value in pair])
        return rows


GENOTYPE_HEADER = ["Gene", "Genotype", "Phenotype", "Cohort group"]
RISK_HEADER = ["Risk", "Level", "Probability", "Basis and source"]


def when(text: str | None) -> str:
    """A FHIR date/dateTime/instant as a report prints it: "2026-01-15 08:00 (UTC+01:00)"; dates as they are."""
    if not text:
        return ""
    if "T" not in text:
        return text
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    clock = t.strftime("%Y-%m-%d %H:%M") + (t.strftime(":%S") if t.second else "")
    offset = t.strftime("%z")
    if not offset:
        return clock
    return clock + (" UTC" if offset == "+0000" else f" (UTC{offset[:3]}:{offset[3:]})")
