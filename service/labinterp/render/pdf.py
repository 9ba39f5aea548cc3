"""The PDF rendering of a report view (reportlab's canvas, laid out here): the patient's identification, a
PRELIMINARY banner and "page x of y" on every page; deterministic bytes. Pure: the PDF is built in memory."""

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
    """The report as PDF bytes: the same view gives the same bytes. Laid out here, straight onto reportlab's canvas
    (text wrapped with its font metrics, each word measured once per process): reportlab's platypus (Paragraph
    markup parsing, line breaking, Table geometry) cost ~11 ms a report, this ~3 ms, with the same layout."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.units import mm

    banner_h = BANNER_MM * mm if view.preliminary else 0.0
    buffer = io.BytesIO()
    canvas = _numbered_canvas()(buffer, pagesize=A4, invariant=1)
    canvas.setTitle(view.title)
    canvas.setAuthor("labinterp")
    page = _Page(canvas, _decorate(view, banner_h), top=A4[1] - (16 * mm + banner_h + (3 * mm if banner_h else 0)))
    _story(view, page)
    canvas.showPage()
    canvas.save()
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


Run = tuple[str, str]  # (text, font name)
BODY = (10.0, 12.0)  # font size, leading (points): reportlab's BodyText
SMALL = (8.0, 10.0)
TITLE = (14.0, 18.0)  # Heading2
SPACE_BEFORE = 6.0  # a paragraph's space before (BodyText's); none at the top of a page
PAD_X, PAD_Y = 4.0, 3.0  # a table cell's padding


_WIDTHS: dict[tuple[str, str, float], float] = {}  # the same words recur in every report: measured once


def _width(text: str, font: str, size: float) -> float:
    key = (text, font, size)
    w = _WIDTHS.get(key)
    if w is None:
        from reportlab.pdfbase.pdfmetrics import stringWidth

        if len(_WIDTHS) >= 100_000:
            _WIDTHS.clear()
        w = _WIDTHS[key] = float(stringWidth(text, font, size))
    return w


def _split_word(word: str, font: str, size: float, room: float) -> list[str]:
    """A word wider than the line cut into pieces that fit (a 3,000-letter name)."""
    pieces = []
    while word:
        lo, hi = 1, len(word)
        while lo < hi:  # the longest prefix that fits (at least one character)
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if _width(word[:mid], font, size) <= room else (lo, mid - 1)
        pieces.append(word[:lo])
        word = word[lo:]
    return pieces


def wrap(runs: list[Run], size: float, room: float) -> list[list[Run]]:
    """Runs of text (each in its font) broken into lines no wider than `room` at spaces (a word wider than a line is
    cut); each line a list of runs, consecutive words of one font joined."""
    lines: list[list[Run]] = []
    line: list[Run] = []
    x = 0.0
    for text, font in runs:
        space = _width(" ", font, size)
        for word in text.split(" "):
            if not word:
                continue
            w = _width(word, font, size)
            pieces = [word] if w <= room else _split_word(word, font, size, room)
            for piece in pieces:
                w = _width(piece, font, size) if len(pieces) > 1 else w
                gap = space if line else 0.0
                if line and x + gap + w > room:
                    lines.append(line)
                    line, x, gap = [], 0.0, 0.0
                if line and line[-1][1] == font:
                    line[-1] = (f"{line[-1][0]} {piece}", font)
                else:
                    line.append((f" {piece}" if line else piece, font))
                x += gap + w
    if line:
        lines.append(line)
    return lines


class _Page:
    """Where the next thing goes on the current page; a new page (decorated) when it does not fit."""

    def __init__(self, canvas: Any, decorate: Any, top: float) -> None:
        from reportlab.lib.units import mm

        self.c, self.decorate, self.top, self.bottom = canvas, decorate, top, 16 * mm
        self.left = PDF_MARGIN
        self.width = canvas._pagesize[0] - 2 * PDF_MARGIN
        self.y = top
        decorate(canvas, None)

    def space(self, h: float) -> None:
        if self.y < self.top:  # no space at the top of a page
            self.y = max(self.y - h, self.bottom)

    def need(self, h: float) -> None:
        if self.y - h < self.bottom and self.y < self.top:
            self.c.showPage()
            self.decorate(self.c, None)
            self.y = self.top

    def text_line(self, line: list[Run], x: float, size: float, color: Any = None) -> None:
        """One line of runs with its top at self.y (the caller moves y)."""
        c = self.c
        if color is not None:
            c.setFillColor(color)
        else:
            c.setFillGray(0)
        for text, font in line:
            c.setFont(font, size)
            c.drawString(x, self.y - size, text)
            x += _width(text, font, size)

    def paragraph(self, runs: list[Run], style: tuple[float, float], space_before: float = SPACE_BEFORE) -> None:
        size, leading = style
        self.space(space_before)
        for line in wrap(runs, size, self.width):
            self.need(leading)
            self.text_line(line, self.left, size)
            self.y -= leading


def _table(page: _Page, header: list[str], rows: list[list[str]], widths_mm: list[float]) -> None:
    """A grid with a bold header row on a grey ground, repeated on every page the table runs onto; cells wrap
    (clipped first: no row taller than a page)."""
    from reportlab.lib import colors
    from reportlab.lib.units import mm

    size, leading = SMALL
    widths = [w * mm for w in widths_mm]
    rooms = [w - 2 * PAD_X for w in widths]

    def cells(row: list[str], font: str) -> list[list[list[Run]]]:
        return [wrap([(clipped(text, rooms[i]), font)], size, rooms[i]) for i, text in enumerate(row)]

    def height(wrapped: list[list[list[Run]]]) -> float:
        return max((len(lines) for lines in wrapped), default=1) * leading + 2 * PAD_Y

    def draw(wrapped: list[list[list[Run]]], h: float, shaded: bool) -> None:
        c, x = page.c, page.left
        c.setStrokeColor(colors.grey)
        c.setLineWidth(0.4)
        if shaded:
            c.setFillColor(colors.HexColor("#eeeeee"))
        c.rect(x, page.y - h, sum(widths), h, stroke=1, fill=1 if shaded else 0)
        top = page.y
        for i, lines in enumerate(wrapped):
            if i:
                c.line(x, top, x, top - h)
            page.y = top - PAD_Y
            for line in lines:
                page.text_line(line, x + PAD_X, size)
                page.y -= leading
            x += widths[i]
        page.y = top - h

    head = cells(header, "Helvetica-Bold")
    head_h = height(head)
    body = [cells(row, "Helvetica") for row in rows]
    page.space(SPACE_BEFORE / 2)
    page.need(head_h + (height(body[0]) if body else 0))
    draw(head, head_h, True)
    for wrapped in body:
        h = min(height(wrapped), page.top - page.bottom - head_h)
        if page.y - h < page.bottom:
            page.need(page.top)  # a new page, the header again
            draw(head, head_h, True)
        draw(wrapped, h, False)


def _heading(page: _Page, view: View) -> None:
    """The heading block: two (label, value) pairs a row, labels bold, a lone last pair spanning the row; a line
    under it. The status in red when preliminary."""
    from reportlab.lib import colors
    from reportlab.lib.units import mm

    size, leading = SMALL
    widths = [24 * mm, 62 * mm, 24 * mm, 64 * mm]
    page.space(SPACE_BEFORE)
    for row in view.header_rows():
        placed: list[tuple[float, list[list[Run]], Any]] = []
        x = page.left
        for label, value, span in row:
            room = widths[1] + (widths[2] + widths[3] if span > 1 else 0) - 6
            red = label == "Status" and view.preliminary
            placed.append((x, wrap([(label, "Helvetica-Bold")], size, widths[0] - 6), None))
            font = "Helvetica-Bold" if red else "Helvetica"
            placed.append((x + widths[0], wrap([(clipped(value, room), font)], size, room), PRELIM_RED_HEX if red else None))
            x += widths[0] + widths[1]
        h = max(len(lines) for _, lines, _ in placed) * leading + 2
        page.need(h)
        top = page.y
        for x, lines, color in placed:
            page.y = top - 1
            for line in lines:
                page.text_line(line, x, size, colors.HexColor(color) if color else None)
                page.y -= leading
        page.y = top - h
    page.c.setStrokeColor(colors.grey)
    page.c.setLineWidth(0.5)
    page.c.line(page.left, page.y, page.left + sum(widths), page.y)


def _bar(page: _Page, view: View) -> None:
    """The result against its range: a log-scale bar with the range in green and the result in red."""
    from reportlab.lib import colors
    from reportlab.lib.units import mm

    bar, width = view.bar, 120 * mm
    if bar is None:
        return
    page.space(2 * mm)
    page.need(8 * mm)
    c, x, base = page.c, page.left, page.y - 8 * mm
    c.setStrokeColor(colors.grey)
    c.setLineWidth(1)
    c.setFillColor(colors.HexColor("#eeeeee"))
    c.rect(x, base + 2 * mm, width, 4 * mm, stroke=1, fill=1)
    x0, x1 = width * bar.position(bar.low) / 100, width * bar.position(bar.high) / 100
    c.setFillColor(colors.HexColor("#99cc99"))
    c.rect(x + x0, base + 2 * mm, x1 - x0, 4 * mm, stroke=0, fill=1)
    xv = x + width * bar.position(bar.value) / 100
    c.setStrokeColor(colors.red)
    c.setLineWidth(2)
    c.line(xv, base + 0.5 * mm, xv, base + 7.5 * mm)
    page.y = base
    censored = " (censored: the marker is at the limit)" if bar.comparator else ""
    words = f"{bar.label}: {bar.comparator}{bar.value} {bar.unit}{censored}; range {bar.low}-{bar.high} {bar.unit}"
    page.paragraph([(words, "Helvetica")], SMALL)


BULLET = "\u2022 "


def _section(page: _Page, section: Section) -> None:
    """A titled list; a section of one line is one paragraph ("Title: line"), as in the narrative."""
    from reportlab.lib.units import mm

    page.space(3 * mm)
    if len(section.lines) == 1:
        page.paragraph([(f"{section.title}:", "Helvetica-Bold"), (section.lines[0], "Helvetica")], BODY)
        return
    page.paragraph([(section.title, "Helvetica-Bold")], BODY)
    for line in section.lines:
        page.paragraph([(BULLET + line, "Helvetica")], SMALL)


def _story(view: View, page: _Page) -> None:
    """The report, top to bottom: the narrative's parts in the narrative's order."""
    from reportlab.lib.units import mm

    page.paragraph([(view.title, "Helvetica-Bold")], TITLE, space_before=0)
    page.y -= 6  # Heading2's space after
    _heading(page, view)
    page.space(3 * mm)
    page.paragraph([(view.headline, "Helvetica-Bold")], BODY)
    _bar(page, view)
    if view.interpretation:
        page.space(3 * mm)
        page.paragraph([("Interpretation", "Helvetica-Bold")], BODY)
        for line in view.interpretation:
            page.paragraph([(BULLET + line, "Helvetica")], BODY)
    for t in view.tables:
        widths = WIDTHS_MM.get(tuple(t.header)) or [TEXT_WIDTH_MM / len(t.header)] * len(t.header)
        page.space(3 * mm)
        page.paragraph([(t.title, "Helvetica-Bold")], BODY)
        _table(page, t.header, t.rows, widths)
    for section in view.sections:
        _section(page, section)
    page.space(6 * mm)
    page.paragraph([(view.footer, "Helvetica")], SMALL)
