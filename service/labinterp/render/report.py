"""Rendered reports a clinician reads, from the view each report's composer built (Written.view;
labinterp.compose.view): the narrative (Resource.text) on every path, and, when asked, the HTML page (Jinja2) and
the PDF (reportlab) as presentedForm. Laid out as a laboratory report: a PRELIMINARY banner when the report is
preliminary; the patient (name, identifier, birth date, sex and age), the specimen and its collection time, the
performer where given, the issue time and status; then the result against its range (a small range bar), the
interpretation, the report's tables (levels, genotypes with phenotypes, risks with their basis and sources) and
its sections (the suggestion or guidance, renal function, basis, what was not used), and the rule set's
version. The PDF repeats the patient's identification, the banner and "page x of y" on every page.

A view's plots (a batch's release profile with its fitted models) are drawn in the HTML page, as inline SVG after
the narrative (`svg_plot`, template report_plot.svg.html: SVG elements and presentation attributes only, no script,
style or reference to anything outside it, every label autoescaped text), and in the PDF as lines; never in the
narrative, whose XHTML allows no SVG.

The narrative is the HTML page's body, valid FHIR XHTML (no empty elements: servers re-serialize XHTML and an
empty <div></div> comes back as <div/>, which an HTML parser reads as an open tag; only elements and attributes
the FHIR narrative allows, no <html>/<head>). Render reads the view only, never the resource's conclusion or the
findings: what a report shows is decided once, by compose. Deterministic: the same view gives the same bytes.
Pure: no I/O, no clock; the patient's name and identifier go into the rendering only, never into a log.

Sources are cited in readers' words: the knowledge loader has already replaced every source key of mappings/
by its citation (mappings/sources.toml), and nothing here names a source file or key."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup

from labinterp.compose.common import Written
from labinterp.compose.view import PRELIMINARY_NOTE, Plot, View, when
from labinterp.jinja import template
from labinterp.render.pdf import CLIP_MARGIN, axis_top, curve_styles, legend_label, plot_points, render_pdf, ticks

__all__ = [
    "XHTML",
    "SvgPlot",
    "attach",
    "narrative",
    "presented_forms",
    "render_fragment",
    "render_html",
    "render_reports",
    "render_svg",
    "svg_plot",
    "when",
]

XHTML = "http://www.w3.org/1999/xhtml"

_FRAGMENT = template("report_fragment.html")  # compiled once: compiling per report cost ~70 % of the rendering time
_PAGE = template("report_page.html")
_PLOT = template("report_plot.svg.html")

# the SVG's geometry (user units = CSS pixels): the plot area, then the x axis' labels and the legend under it
SVG_WIDTH = 560
SVG_AREA = (56.0, 40.0, 540.0, 260.0)  # left, top, right, bottom
SVG_LEGEND_ROW = 16.0


def _f(x: float) -> str:
    return f"{x:.1f}"


@dataclass(frozen=True)
class SvgCurve:
    label: str
    colour: str
    dash: str  # stroke-dasharray; "" solid
    points: str  # the polyline's points attribute
    markers: list[tuple[str, str]]  # (cx, cy) of each observed point; none for a model
    legend_y: str  # the legend row's baseline
    legend_line_y: str  # its sample line's height


@dataclass(frozen=True)
class SvgPlot:
    """One plot as the SVG template draws it: every coordinate a formatted number, every text plain (escaped by
    the template)."""

    title: str
    x_label: str
    y_label: str
    width: int
    height: int
    left: str
    top: str
    right: str
    bottom: str
    middle: str  # the x axis' label's centre
    x_tick_end: str  # tick marks run from the axis to here (x axis) ...
    y_tick_start: str  # ... and from here to the axis (y axis)
    x_tick_text_y: str
    y_tick_text_x: str
    x_label_y: str
    legend_x: tuple[str, str, str, str]  # the sample line's start, middle (a marker), end; the label's start
    clip: tuple[str, str, str, str]  # x, y, width, height of the curves' viewport (the area and a small margin)
    x_ticks: list[tuple[str, str]]  # (x, label)
    y_ticks: list[tuple[str, str]]  # (y, label)
    curves: list[SvgCurve]


def svg_plot(plot: Plot) -> SvgPlot:
    left, top, right, bottom = SVG_AREA
    width, height = right - left, bottom - top
    curves = []
    for i, (curve, style) in enumerate(zip(plot.curves, curve_styles(plot), strict=True)):
        points = [(left + fx * width, bottom - fy * height) for fx, fy in plot_points(curve.points, plot.x_max, plot.y_max)]
        curves.append(
            SvgCurve(
                label=legend_label(curve.label),
                colour=style.colour,
                dash=" ".join(f"{d:g}" for d in style.dash),
                points=" ".join(f"{_f(x)},{_f(y)}" for x, y in points),
                markers=[(_f(x), _f(y)) for x, y in points] if style.markers else [],
                legend_y=_f(bottom + 52 + SVG_LEGEND_ROW * i),
                legend_line_y=_f(bottom + 48 + SVG_LEGEND_ROW * i),
            )
        )
    return SvgPlot(
        title=plot.title,
        x_label=plot.x_label,
        y_label=plot.y_label,
        width=SVG_WIDTH,
        height=int(bottom + 52 + SVG_LEGEND_ROW * max(len(plot.curves) - 1, 0) + 10),
        left=_f(left),
        top=_f(top),
        right=_f(right),
        bottom=_f(bottom),
        middle=_f(left + width / 2),
        x_tick_end=_f(bottom + 4),
        y_tick_start=_f(left - 4),
        x_tick_text_y=_f(bottom + 16),
        y_tick_text_x=_f(left - 7),
        x_label_y=_f(bottom + 32),
        legend_x=(_f(left), _f(left + 12), _f(left + 24), _f(left + 32)),
        clip=(_f(left - CLIP_MARGIN), _f(top - CLIP_MARGIN), _f(width + 2 * CLIP_MARGIN), _f(height + 2 * CLIP_MARGIN)),
        x_ticks=[(_f(left + width * v / axis_top(plot.x_max)), label) for v, label in ticks(plot.x_max)],
        y_ticks=[(_f(bottom - height * v / axis_top(plot.y_max)), label) for v, label in ticks(plot.y_max)],
        curves=curves,
    )


def render_svg(plot: Plot, css_class: str = "plot") -> Markup:
    """One plot as an inline SVG element (for an HTML page: no XML namespace declaration needed there)."""
    return Markup(_PLOT.render(g=svg_plot(plot), css_class=css_class))


def render_fragment(view: View) -> str:
    return _FRAGMENT.render(v=view, xhtml=XHTML, note=PRELIMINARY_NOTE)


def render_html(view: View, fragment: str | None = None) -> str:
    return _PAGE.render(
        v=view,
        fragment=Markup(fragment if fragment is not None else render_fragment(view)),
        plots=[render_svg(p) for p in view.plots],
    )


def narrative(view: View) -> dict[str, str]:
    return {"status": "generated", "div": render_fragment(view)}


def presented_forms(view: View, fragment: str) -> list[dict[str, Any]]:
    """The HTML page and the PDF, as DiagnosticReport.presentedForm attachments. The PDF's layout cannot fail on
    long data (labinterp.render.pdf cuts a cell to a page and a word to a line), so it never blocks the report."""
    forms = [
        ("text/html", "HTML", render_html(view, fragment).encode("utf-8")),
        ("application/pdf", "PDF", render_pdf(view)),
    ]
    return [
        {"contentType": ct, "language": "en", "data": base64.b64encode(data).decode("ascii"), "title": f"{view.title} ({name})"}
        for ct, name, data in forms
    ]


def attach(w: Written, forms: bool = True) -> None:
    """The report's narrative from its view; with `forms`, presentedForm with the HTML page and the PDF too."""
    if w.view is None:
        raise ValueError(f"{w.kind} {w.full_url} has no view to render")
    text = narrative(w.view)
    w.resource["text"] = text
    if forms:
        w.resource["presentedForm"] = presented_forms(w.view, text["div"])


def render_reports(written: list[Written], forms: bool = True) -> None:
    """Every report's narrative; with `forms` (rendering asked for), its HTML page and PDF as well."""
    for w in written:
        if w.view is not None:
            attach(w, forms)
