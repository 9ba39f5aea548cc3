"""What a report shows, as plain data: a View, built once by each report's composer from the lines and facts it
computes (never by reading its own text back), carried on the Written beside the resource. Render turns it into
the narrative, the HTML page and the PDF (labinterp.render). Pure.

A view carries everything a clinician is shown: the heading block, the headline and the range bar, the
interpretation, its tables (levels, genotypes, risks) and its titled sections (suggestion or guidance, renal
function, basis, what was not used), and the footer. Empty tables, sections and lines are left out here, so no
rendering ever has an empty element to write."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import lru_cache

NOT_RECORDED = "not recorded"
PRELIMINARY_NOTE = "based on preliminary results: values and interpretation may change; a final report will follow."
GENOTYPE_HEADER = ["Gene", "Genotype", "Phenotype", "Groups (linezolid cohort)", "Reported as"]
RISK_HEADER = ["Risk", "Level", "Probability", "Basis and source"]
LEVELS_HEADER = ["Sampled", "Result", "Status"]
SUGGESTION = "Suggestion for the clinician"
RENAL = "Renal function"
BASIS = "Basis"
NOT_USED = "Not used"


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class Table:
    title: str  # printed above it
    header: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Curve:
    """One line of a plot: observed points (drawn as markers joined by a line) or a fitted model (a line)."""

    label: str
    points: tuple[tuple[float, float], ...]  # (x, y), x ascending
    kind: str = "observed"  # "observed" | "model"


@dataclass(frozen=True)
class Plot:
    """A small x/y plot (a batch's release profile with its fitted models): data only, drawn by render as SVG in the
    HTML page and as lines in the PDF. Both axes start at 0."""

    title: str
    x_label: str  # with its unit: "Time (h)"
    y_label: str  # "Released (%)"
    curves: tuple[Curve, ...]
    x_max: float
    y_max: float


@dataclass(frozen=True)
class Section:
    title: str
    lines: list[str]


def lines(items: Iterable[str | None]) -> list[str]:
    """Non-empty strings only: an empty <li></li> would not survive a server's re-serialization."""
    return [x for x in items if x is not None and x.strip()]


def table(title: str, header: Sequence[str], rows: Iterable[Sequence[str | None]]) -> list[Table]:
    """A table as a list of none or one (to splice into View.tables); an empty cell is shown as "-"."""
    cells = [[c if c is not None and c.strip() else "-" for c in row] for row in rows]
    return [Table(title, list(header), cells)] if cells else []


def section(title: str, items: Iterable[str | None]) -> list[Section]:
    """A titled list as a list of none or one (to splice into View.sections); empty lines dropped."""
    kept = lines(items)
    return [Section(title, kept)] if kept else []


@dataclass(frozen=True)
class View:
    title: str
    patient: str  # the patient line of the PDF's running header: name, identifier, birth date
    issued: str  # FHIR instant
    status: str  # the report's status
    headline: str
    header: list[tuple[str, str]] = field(default_factory=list)  # (label, value) of the report's heading block
    footer: str = ""
    bar: RangeBar | None = None
    interpretation: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    plots: list[Plot] = field(default_factory=list)  # drawn in the HTML page and the PDF; the narrative has the tables

    @property
    def preliminary(self) -> bool:
        return self.status == "preliminary"

    def header_rows(self) -> list[list[tuple[str, str, int]]]:
        """The heading block two (label, value) pairs a row; a last lone pair spans the row (colspan 3)."""
        rows = []
        for i in range(0, len(self.header), 2):
            pair = self.header[i : i + 2]
            rows.append([(label, value, 1 if len(pair) == 2 else 3) for label, value in pair])
        return rows

    def with_status(self, status: str) -> View:
        """The same view of a report whose status changed since (a report written over an older one is "amended")."""
        if status == self.status:
            return self
        header = [(label, status_shown(status) if label == "Status" else value) for label, value in self.header]
        return replace(self, status=status, header=header)


def status_shown(status: str) -> str:
    return "PRELIMINARY" if status == "preliminary" else status


def when(text: str | None) -> str:
    """A FHIR date/dateTime/instant as a report prints it: "2026-01-15 08:00 (UTC+01:00)"; dates as they are."""
    return _when(text) if text else ""


@lru_cache(maxsize=4096)  # the same times recur on every report of a patient, and across patients
def _when(text: str) -> str:
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
