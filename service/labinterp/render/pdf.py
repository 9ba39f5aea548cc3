"""The PDF rendering of a report view (reportlab): the patient's identification, a PRELIMINARY banner and
"page x of y" on every page; deterministic bytes. Pure: the PDF is built in memory."""

from __future__ import annotations

import io
from typing import Any

from reportlab.lib import colors as _colors

from labinterp import __version__
from labinterp.compose.view import GENOTYPE_HEADER, LEVELS_HEADER, PRELIMINARY_NOTE, RISK_HEADER, Section, View, when

# reportlab fills its table of named colours lazily and without a lock: the first PDFs of a process rendered by
# several worker threads at once failed with "Invalid color value" and their patient got no reports. Filled here,
# once, under the import lock.
_colors.getAllNamedColors()

PDF_MARGIN = 18 * 72 / 25.4  # 18 mm in points
FOOTER_Y = 8 * 72 / 25.4
PRELIM_RED_HEX = "#900000"
TEXT_WIDTH_MM = 172  # A4 less the margins, less a little room
# column widths (mm) of the tables whose header is known; any other table shares the width equally
WIDTHS_MM: dict[tuple[str, ...], list[float]] = {
    tuple(GENOTYPE_HEADER): [20, 34, 38, 48, 32],
    tuple(RISK_HEADER): [35, 22, 20, 95],
    tuple(LEVELS_HEADER): [60, 60, 52],
}


_STYLES: dict[str, Any] = {}


def _styles() -> Any:
    """reportlab's stylesheet, built once per process."""
    if not _STYLES:
        from reportlab.lib.styles import getSampleStyleSheet

        sheet = getSampleStyleSheet()
        sheet.add(sheet["BodyText"].clone("small", fontSize=8, leading=10))
        _STYLES["sheet"] = sheet
    return _STYLES["sheet"]


_CANVAS: dict[str, Any] = {}


def _numbered_canvas() -> Any:
    """A reportlab canvas that holds its pages back until the document is complete, then writes
    "Page x of y" on each (the second pass of the page count), built once per process."""
    if not _CANVAS:
        from reportlab.pdfgen.canvas import Canvas

        class NumberedCanvas(Canvas):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self._pages: list[dict[str, Any]] = []

            def showPage(self) -> None:
                self._pages.append(dict(self.__dict__))
                self._startPage()

            def save(self) -> None:
                total = len(self._pages)
                for state in self._pages:
                    self.__dict__.update(state)
                    self.setFont("Helvetica", 8)
                    self.setFillGray(0.25)
                    self.drawRightString(self._pagesize[0] - PDF_MARGIN, FOOTER_Y, f"Page {self._pageNumber} of {total}")
                    Canvas.showPage(self)
                Canvas.save(self)

        _CANVAS["cls"] = NumberedCanvas
    return _CANVAS["cls"]


def render_pdf(view: View) -> bytes:
    """The report as PDF bytes: the same view gives the same bytes."""
    from reportlab import rl_config

    rl_config.invariant = 1  # no creation date or random id in the file: same findings, same bytes
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.units import mm
    from reportlab.platypus import SimpleDocTemplate

    banner_h = BANNER_MM * mm if view.preliminary else 0.0
    buffer = io.BytesIO()
    decorate = _decorate(view, banner_h)
    SimpleDocTemplate(
        buffer,
        pagesize=A4,
        title=view.title,
        author="labinterp",
        leftMargin=PDF_MARGIN,
        rightMargin=PDF_MARGIN,
        topMargin=16 * mm + banner_h + (3 * mm if banner_h else 0),
        bottomMargin=16 * mm,
    ).build(_story(view), onFirstPage=decorate, onLaterPages=decorate, canvasmaker=_numbered_canvas())
    return buffer.getvalue()


BANNER_MM = 9
CELL_LINES = 50  # a table row cannot split across pages: no cell taller than about 50 lines (a page holds ~70)
CUT = " … [cut here: the HTML and the narrative carry it whole]"


def one_line(text: str, font: str, size: float, room_pt: float) -> str:
    """`text` cut with an ellipsis to fit `room_pt` on one line (the running header's patient line)."""
    from reportlab.pdfbase.pdfmetrics import stringWidth

    if stringWidth(text, font, size) <= room_pt:
        return text
    lo, hi = 0, len(text)
    while lo < hi:  # the longest prefix that fits with its ellipsis
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if stringWidth(text[:mid] + "…", font, size) <= room_pt else (lo, mid - 1)
    return text[:lo] + "…"


def clipped(text: str, room_pt: float) -> str:
    """`text` cut to what a cell `room_pt` wide shows in CELL_LINES lines of 8-point type (about 4 points a
    character). Data from the FHIR server (a 3,000-character name, a genotype's reported text) once made one row
    taller than a page, and the whole report failed."""
    limit = max(40, int(room_pt / 4.0) * CELL_LINES)
    return text if len(text) <= limit else text[:limit] + CUT


def _decorate(view: View, banner_h: float) -> Any:
    """What every page carries: the patient's identification and the title at the top, the PRELIMINARY banner
    when the report is preliminary, and the issue line at the bottom ("Page x of y" is the canvas's)."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.units import mm

    page_w, page_h = A4
    margin = PDF_MARGIN

    def decorate(canvas: Any, _doc: Any) -> None:
        canvas.saveState()
        top = page_h - 10 * mm
        canvas.setFont("Helvetica-Bold", 8)
        canvas.setFillGray(0.2)
        canvas.drawString(margin, top, one_line(view.patient, "Helvetica-Bold", 8, (page_w - 2 * margin) * 0.6))
        canvas.setFont("Helvetica", 8)
        canvas.drawRightString(page_w - margin, top, view.title)
        canvas.setStrokeGray(0.6)
        canvas.setLineWidth(0.5)
        canvas.line(margin, top - 2 * mm, page_w - margin, top - 2 * mm)
        if view.preliminary:
            y = top - 3.5 * mm - banner_h
            canvas.setFillColor(colors.HexColor("#ffe0e0"))
            canvas.setStrokeColor(colors.HexColor("#b00000"))
            canvas.setLineWidth(1.5)
            canvas.rect(margin, y, page_w - 2 * margin, banner_h, stroke=1, fill=1)
            canvas.setFillColor(colors.HexColor("#900000"))
            canvas.setFont("Helvetica-Bold", 12)
            canvas.drawString(margin + 3 * mm, y + 3.2 * mm, "PRELIMINARY REPORT")
            x = margin + 6 * mm + canvas.stringWidth("PRELIMINARY REPORT", "Helvetica-Bold", 12)
            canvas.setFont("Helvetica", 7.5)
            canvas.drawString(x, y + 3.4 * mm, PRELIMINARY_NOTE)
        canvas.setStrokeGray(0.6)
        canvas.setLineWidth(0.5)
        canvas.line(margin, 12 * mm, page_w - margin, 12 * mm)
        canvas.setFont("Helvetica", 8)
        canvas.setFillGray(0.25)
        canvas.drawString(margin, FOOTER_Y, f"labinterp {__version__} · issued {when(view.issued) or '-'} · status {view.status}")
        canvas.restoreState()

    return decorate


def _table(header: list[str], rows: list[list[str]], widths: list[float]) -> Any:
    """A grid with a bold header row. Cells are plain strings, as in the heading block; a cell too wide for its
    column becomes a wrapping Paragraph, so that nothing is cut."""
    from xml.sax.saxutils import escape

    from reportlab.lib import colors
    from reportlab.lib.units import mm
    from reportlab.pdfbase.pdfmetrics import stringWidth
    from reportlab.platypus import Paragraph, Table, TableStyle

    small = _styles()["small"]
    room = [w * mm - 6 for w in widths]  # less the cell's padding

    def cell(text: str, col: int, font: str) -> Any:
        text = clipped(text, room[col])
        if stringWidth(text, font, 8) <= room[col]:
            return text
        return Paragraph(f"<b>{escape(text)}</b>" if font.endswith("Bold") else escape(text), small)

    data = [[cell(h, i, "Helvetica-Bold") for i, h in enumerate(header)]]
    data += [[cell(c, i, "Helvetica") for i, c in enumerate(row)] for row in rows]
    t = Table(data, colWidths=[w * mm for w in widths], repeatRows=1)
    t.setStyle(
        TableStyle(
            [
                ("FONT", (0, 0), (-1, -1), "Helvetica", 8, 10),
                ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 8, 10),
                ("GRID", (0, 0), (-1, -1), 0.4, colors.grey),
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eeeeee")),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ]
        )
    )
    return t


def _heading(view: View) -> Any:
    """The heading block as plain-string cells (a Paragraph per cell doubled the PDF's cost); a value too wide
    for its column becomes a wrapping Paragraph so that nothing is cut."""
    from xml.sax.saxutils import escape

    from reportlab.lib import colors
    from reportlab.lib.units import mm
    from reportlab.pdfbase.pdfmetrics import stringWidth
    from reportlab.platypus import Paragraph, Table, TableStyle

    small = _styles()["small"]
    widths = [24 * mm, 62 * mm, 24 * mm, 64 * mm]
    rows: list[list[Any]] = []
    style: list[tuple[Any, ...]] = [
        ("FONT", (0, 0), (-1, -1), "Helvetica", 8, 10),
        ("FONT", (0, 0), (0, -1), "Helvetica-Bold", 8, 10),
        ("FONT", (2, 0), (2, -1), "Helvetica-Bold", 8, 10),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LEFTPADDING", (0, 0), (-1, -1), 0),
        ("TOPPADDING", (0, 0), (-1, -1), 1),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 1),
        ("LINEBELOW", (0, -1), (-1, -1), 0.5, colors.grey),
    ]
    for i, row in enumerate(view.header_rows()):
        cells: list[Any] = []
        for label, value, span in row:
            col = len(cells) + 1
            room = widths[col] + (widths[2] + widths[3] if span > 1 else 0) - 6
            value = clipped(value, room)
            wide = stringWidth(value, "Helvetica", 8) > room
            cells += [label, Paragraph(escape(value), small) if wide else value]
            if label == "Status" and view.preliminary:
                style += [
                    ("FONT", (col, i), (col, i), "Helvetica-Bold", 8, 10),
                    ("TEXTCOLOR", (col, i), (col, i), colors.HexColor(PRELIM_RED_HEX)),
                ]
            if span > 1:
                cells += ["", ""]
                style.append(("SPAN", (1, i), (3, i)))
        rows.append(cells)
    heading = Table(rows, colWidths=widths, hAlign="LEFT")
    heading.setStyle(TableStyle(style))
    return heading


def _bar(view: View) -> list[Any]:
    """The result against its range: a log-scale bar with the range in green and the result in red."""
    from xml.sax.saxutils import escape

    from reportlab.graphics.shapes import Drawing, Line, Rect
    from reportlab.lib import colors
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, Spacer

    bar, width = view.bar, 120 * mm
    if bar is None:
        return []
    d = Drawing(width, 8 * mm)
    d.add(Rect(0, 2 * mm, width, 4 * mm, fillColor=colors.HexColor("#eeeeee"), strokeColor=colors.grey))
    x0, x1 = width * bar.position(bar.low) / 100, width * bar.position(bar.high) / 100
    d.add(Rect(x0, 2 * mm, x1 - x0, 4 * mm, fillColor=colors.HexColor("#99cc99"), strokeColor=None))
    xv = width * bar.position(bar.value) / 100
    d.add(Line(xv, 0.5 * mm, xv, 7.5 * mm, strokeColor=colors.red, strokeWidth=2))
    censored = " (censored: the marker is at the limit)" if bar.comparator else ""
    words = f"{bar.label}: {bar.comparator}{bar.value} {bar.unit}{censored}; range {bar.low}-{bar.high} {bar.unit}"
    return [Spacer(1, 2 * mm), d, Paragraph(escape(words), _styles()["small"])]


def _section(section: Section) -> list[Any]:
    """A titled list; a section of one line is one paragraph ("Title: line"), as in the narrative."""
    from xml.sax.saxutils import escape

    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, Spacer

    styles = _styles()
    body, small = styles["BodyText"], styles["small"]
    if len(section.lines) == 1:
        return [Spacer(1, 3 * mm), Paragraph(f"<b>{escape(section.title)}</b>: {escape(section.lines[0])}", body)]
    return [Spacer(1, 3 * mm), Paragraph(f"<b>{escape(section.title)}</b>", body)] + [
        Paragraph("&#8226; " + escape(line), small) for line in section.lines
    ]


def _story(view: View) -> list[Any]:
    """The flowables of the report, top to bottom: the narrative's parts in the narrative's order."""
    from xml.sax.saxutils import escape

    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, Spacer

    styles = _styles()
    body, small = styles["BodyText"], styles["small"]
    story: list[Any] = [
        Paragraph(escape(view.title), styles["Heading2"]),
        _heading(view),
        Spacer(1, 3 * mm),
        Paragraph(f"<b>{escape(view.headline)}</b>", body),
        *_bar(view),
    ]
    if view.interpretation:
        story += [Spacer(1, 3 * mm), Paragraph("<b>Interpretation</b>", body)]
        story += [Paragraph("&#8226; " + escape(line), body) for line in view.interpretation]
    for t in view.tables:
        widths = WIDTHS_MM.get(tuple(t.header)) or [TEXT_WIDTH_MM / len(t.header)] * len(t.header)
        story += [Spacer(1, 3 * mm), Paragraph(f"<b>{escape(t.title)}</b>", body), _table(t.header, t.rows, widths)]
    for section in view.sections:
        story += _section(section)
    story += [Spacer(1, 6 * mm), Paragraph(escape(view.footer), small)]
    return story
