"""The PDF rendering of a report view (laid out and written here, with reportlab's font metrics): the patient's identification, a
PRELIMINARY banner and "page x of y" on every page; deterministic bytes. Pure: the PDF is built in memory."""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reportlab.lib import colors as _colors

from labinterp import __version__
from labinterp.compose.view import GENOTYPE_HEADER, LEVELS_HEADER, PRELIMINARY_NOTE, RISK_HEADER, Plot, Section, View, when

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


MM = 72 / 25.4
A4 = (210 * MM, 297 * MM)

# colours as PDF operands (r g b), never reportlab Color objects: the PDF is written here
GREY = (0.5, 0.5, 0.5)  # reportlab's colors.grey
RED = (1.0, 0.0, 0.0)
SHADE = (0xEE / 255, 0xEE / 255, 0xEE / 255)
RANGE_GREEN = (0x99 / 255, 0xCC / 255, 0x99 / 255)
BANNER_FILL = (1.0, 0xE0 / 255, 0xE0 / 255)
BANNER_STROKE = (0xB0 / 255, 0.0, 0.0)
PRELIM_RED = (0x90 / 255, 0.0, 0.0)
FONTS = {"Helvetica": "/F1", "Helvetica-Bold": "/F2"}
_ESCAPE = str.maketrans({"\\": "\\\\", "(": "\\(", ")": "\\)", "\r": "\\r", "\n": "\\n"})
# characters WinAnsiEncoding lacks that have a plain equivalent (the rest become "?"): the minus sign of equations
_PLAIN = str.maketrans({"\u2212": "-"})


def _n(x: float) -> str:
    """A number as a PDF operand, to a hundredth of a point."""
    return f"{x:.2f}"


def _rgb(c: tuple[float, float, float]) -> str:
    return f"{_n(c[0])} {_n(c[1])} {_n(c[2])}"


_TEXTS: dict[str, str] = {}  # most lines recur in every report: encoded once


def _pdf_text(text: str) -> str:
    """A PDF literal string's body in WinAnsiEncoding (what the standard Type 1 fonts read), as latin-1 characters
    of the content stream; a character the encoding lacks becomes "?"."""
    out = _TEXTS.get(text)
    if out is None:
        if len(_TEXTS) >= 50_000:
            _TEXTS.clear()
        out = _TEXTS[text] = text.translate(_PLAIN).encode("cp1252", "replace").decode("latin-1").translate(_ESCAPE)
    return out


def _info_text(text: str) -> str:
    """A document-information string: UTF-16BE with its byte-order mark, as a hex string (any character)."""
    return "<FEFF" + text.encode("utf-16-be").hex().upper() + ">"


class PdfCanvas:
    """The few drawing operations the layout uses, written straight into PDF content streams: reportlab's canvas
    cost ~4 ms a report (a text object, font and encoding bookkeeping and number formatting per call, then its
    document object model serialised), this well under 1 ms for the same page. Text in the 14 standard fonts
    (Helvetica and Helvetica-Bold, not embedded), WinAnsiEncoding, each page's stream Flate-compressed. After the
    last page it writes "Page x of y" on every page. Deterministic: no dates, no random ids."""

    def __init__(self, pagesize: tuple[float, float] = A4) -> None:
        self._pagesize = pagesize
        self._pages: list[list[str]] = []
        self._ops: list[str] = []
        self._font = ("Helvetica", 10.0)
        self._fill: str | None = None  # the current fill operator; None: not known (a new page)
        self._saved: list[str | None] = []
        self.title = ""
        self.author = ""

    # --- state ---
    def saveState(self) -> None:
        self._ops.append("q")
        self._saved.append(self._fill)

    def restoreState(self) -> None:
        self._ops.append("Q")
        self._fill = self._saved.pop()

    def setFont(self, font: str, size: float) -> None:
        self._font = (font, size)

    def fill(self, op: str) -> None:
        """Set the fill colour (a PDF operator), unless it is already the current one."""
        if op != self._fill:
            self._ops.append(op)
            self._fill = op

    def setFillGray(self, g: float) -> None:
        self.fill(f"{_n(g)} g")

    def setFillColor(self, c: tuple[float, float, float]) -> None:
        self.fill(f"{_rgb(c)} rg")

    def setStrokeGray(self, g: float) -> None:
        self._ops.append(f"{_n(g)} G")

    def setStrokeColor(self, c: tuple[float, float, float]) -> None:
        self._ops.append(f"{_rgb(c)} RG")

    def setLineWidth(self, w: float) -> None:
        self._ops.append(f"{_n(w)} w")

    def setDash(self, pattern: Sequence[float] = ()) -> None:
        """A dash pattern of on/off lengths (points); () draws solid lines again."""
        self._ops.append(f"[{' '.join(_n(x) for x in pattern)}] 0 d")

    # --- drawing ---
    def drawString(self, x: float, y: float, text: str) -> None:
        font, size = self._font
        self._ops.append(f"BT {FONTS[font]} {_n(size)} Tf 1 0 0 1 {_n(x)} {_n(y)} Tm ({_pdf_text(text)}) Tj ET")

    def drawRightString(self, x: float, y: float, text: str) -> None:
        font, size = self._font
        self.drawString(x - _width(text, font, size), y, text)

    def stringWidth(self, text: str, font: str, size: float) -> float:
        return _width(text, font, size)

    def line(self, x1: float, y1: float, x2: float, y2: float) -> None:
        self._ops.append(f"{_n(x1)} {_n(y1)} m {_n(x2)} {_n(y2)} l S")

    def polyline(self, points: Sequence[tuple[float, float]]) -> None:
        """An open path through the points, stroked (nothing for fewer than two points)."""
        if len(points) < 2:
            return
        path = " ".join(f"{_n(x)} {_n(y)} {'m' if i == 0 else 'l'}" for i, (x, y) in enumerate(points))
        self._ops.append(f"{path} S")

    def circle(self, x: float, y: float, r: float, stroke: int = 0, fill: int = 1) -> None:
        """A circle as four Bezier arcs (PDF has no circle operator)."""
        k = 0.5523 * r  # the usual control-point distance of a quarter circle
        op = "B" if stroke and fill else "f" if fill else "S" if stroke else "n"
        self._ops.append(
            f"{_n(x + r)} {_n(y)} m {_n(x + r)} {_n(y + k)} {_n(x + k)} {_n(y + r)} {_n(x)} {_n(y + r)} c "
            f"{_n(x - k)} {_n(y + r)} {_n(x - r)} {_n(y + k)} {_n(x - r)} {_n(y)} c "
            f"{_n(x - r)} {_n(y - k)} {_n(x - k)} {_n(y - r)} {_n(x)} {_n(y - r)} c "
            f"{_n(x + k)} {_n(y - r)} {_n(x + r)} {_n(y - k)} {_n(x + r)} {_n(y)} c {op}"
        )

    def clipRect(self, x: float, y: float, w: float, h: float) -> None:
        """Cut what is drawn next to the rectangle, until the state saved before is restored."""
        self._ops.append(f"{_n(x)} {_n(y)} {_n(w)} {_n(h)} re W n")

    def rect(self, x: float, y: float, w: float, h: float, stroke: int = 1, fill: int = 0) -> None:
        op = "B" if stroke and fill else "f" if fill else "S" if stroke else "n"
        self._ops.append(f"{_n(x)} {_n(y)} {_n(w)} {_n(h)} re {op}")

    def showPage(self) -> None:
        self._pages.append(self._ops)
        self._ops = []
        self._fill = None

    # --- the document ---
    def save(self) -> bytes:
        """The PDF: catalog, page tree, the two fonts, the document information, each page and its content."""
        if self._ops or not self._pages:
            self.showPage()
        total = len(self._pages)
        w, h = self._pagesize
        objects: list[bytes] = []  # object i + 1
        first_page = 6
        kids = " ".join(f"{first_page + 2 * i} 0 R" for i in range(total))
        objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
        objects.append(f"<< /Type /Pages /Kids [ {kids} ] /Count {total} >>".encode())
        for base in ("Helvetica", "Helvetica-Bold"):
            objects.append(f"<< /Type /Font /Subtype /Type1 /BaseFont /{base} /Encoding /WinAnsiEncoding >>".encode())
        info = f"<< /Title {_info_text(self.title)} /Author {_info_text(self.author)} /Producer (labinterp) >>"
        objects.append(info.encode())
        resources = "<< /Font << /F1 3 0 R /F2 4 0 R >> /ProcSet [ /PDF /Text ] >>"
        for number, ops in enumerate(self._pages, 1):
            page = len(objects) + 1
            self._ops, self._fill = ops, None
            self.setFont("Helvetica", 8)
            self.setFillGray(0.25)
            self.drawRightString(w - PDF_MARGIN, FOOTER_Y, f"Page {number} of {total}")
            stream = zlib.compress("\n".join(ops).encode("latin-1"), 1)  # level 1: a tenth of level 6's time, a few % larger
            objects.append(
                f"<< /Type /Page /Parent 2 0 R /MediaBox [ 0 0 {_n(w)} {_n(h)} ] /Resources {resources} "
                f"/Contents {page + 1} 0 R >>".encode()
            )
            objects.append(b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(stream), stream))
        out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
        offsets = []
        for i, body in enumerate(objects, 1):
            offsets.append(len(out))
            out += b"%d 0 obj\n%s\nendobj\n" % (i, body)
        xref = len(out)
        out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
        out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
        out += b"trailer\n<< /Size %d /Root 1 0 R /Info 5 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
        return bytes(out)


def render_pdf(view: View) -> bytes:
    """The report as PDF bytes: the same view gives the same bytes. Laid out here (text wrapped with reportlab's font
    metrics, each word measured once per process) and written by PdfCanvas: reportlab's platypus (Paragraph markup
    parsing, line breaking, Table geometry) cost ~11 ms a report, its canvas ~4 ms, this ~0.5 ms, same layout."""
    banner_h = BANNER_MM * MM if view.preliminary else 0.0
    canvas = PdfCanvas(A4)
    canvas.title = view.title
    canvas.author = "labinterp"
    page = _Page(canvas, _decorate(view, banner_h), top=A4[1] - (16 * MM + banner_h + (3 * MM if banner_h else 0)))
    _story(view, page)
    return canvas.save()


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
    page_w, page_h = A4
    margin = PDF_MARGIN

    def decorate(canvas: Any, _doc: Any) -> None:
        canvas.saveState()
        top = page_h - 10 * MM
        canvas.setFont("Helvetica-Bold", 8)
        canvas.setFillGray(0.2)
        patient = one_line(view.patient, "Helvetica-Bold", 8, (page_w - 2 * margin) * 0.6)
        canvas.drawString(margin, top, patient)
        canvas.setFont("Helvetica", 8)
        # the title in the room the patient line leaves (a batch's long title once ran over it)
        room = page_w - 2 * margin - _width(patient, "Helvetica-Bold", 8) - 4 * MM
        canvas.drawRightString(page_w - margin, top, one_line(view.title, "Helvetica", 8, room))
        canvas.setStrokeGray(0.6)
        canvas.setLineWidth(0.5)
        canvas.line(margin, top - 2 * MM, page_w - margin, top - 2 * MM)
        if view.preliminary:
            y = top - 3.5 * MM - banner_h
            canvas.setFillColor(BANNER_FILL)
            canvas.setStrokeColor(BANNER_STROKE)
            canvas.setLineWidth(1.5)
            canvas.rect(margin, y, page_w - 2 * margin, banner_h, stroke=1, fill=1)
            canvas.setFillColor(PRELIM_RED)
            canvas.setFont("Helvetica-Bold", 12)
            canvas.drawString(margin + 3 * MM, y + 3.2 * MM, "PRELIMINARY REPORT")
            x = margin + 6 * MM + canvas.stringWidth("PRELIMINARY REPORT", "Helvetica-Bold", 12)
            canvas.setFont("Helvetica", 7.5)
            canvas.drawString(x, y + 3.4 * MM, PRELIMINARY_NOTE)
        canvas.setStrokeGray(0.6)
        canvas.setLineWidth(0.5)
        canvas.line(margin, 12 * MM, page_w - margin, 12 * MM)
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


_WRAPPED: dict[tuple[tuple[Run, ...], float, float], list[list[Run]]] = {}


def wrap(runs: list[Run], size: float, room: float) -> list[list[Run]]:
    """Runs of text (each in its font) broken into lines no wider than `room` at spaces (a word wider than a line is
    cut); each line a list of runs, consecutive words of one font joined. Most paragraphs and cells recur from
    report to report (labels, knowledge-derived lines): each is broken once per process (read-only results)."""
    key = (tuple(runs), size, room)
    lines = _WRAPPED.get(key)
    if lines is None:
        if len(_WRAPPED) >= 20_000:
            _WRAPPED.clear()
        lines = _WRAPPED[key] = _wrap(runs, size, room)
    return lines


def _wrap(runs: list[Run], size: float, room: float) -> list[list[Run]]:
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


_SHOWN: dict[tuple[tuple[Run, ...], float], str] = {}  # a line's text operators, made once per process


class _Page:
    """Where the next thing goes on the current page; a new page (decorated) when it does not fit."""

    def __init__(self, canvas: Any, decorate: Any, top: float) -> None:
        self.c, self.decorate, self.top, self.bottom = canvas, decorate, top, 16 * MM
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
            c.fill("0 g")
        key = (tuple(line), size)
        shown = _SHOWN.get(key)
        if shown is None:  # one text object a line: Tj moves along by the same font metrics the layout measures with
            if len(_SHOWN) >= 20_000:
                _SHOWN.clear()
            shown = _SHOWN[key] = " ".join(f"{FONTS[font]} {size:.2f} Tf ({_pdf_text(text)}) Tj" for text, font in line)
        c._ops.append(f"BT 1 0 0 1 {x:.2f} {self.y - size:.2f} Tm {shown} ET")

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
    size, leading = SMALL
    widths = [w * MM for w in widths_mm]
    rooms = [w - 2 * PAD_X for w in widths]

    def cells(row: list[str], font: str) -> list[list[list[Run]]]:
        return [wrap([(clipped(text, rooms[i]), font)], size, rooms[i]) for i, text in enumerate(row)]

    def height(wrapped: list[list[list[Run]]]) -> float:
        return max((len(lines) for lines in wrapped), default=1) * leading + 2 * PAD_Y

    def draw(wrapped: list[list[list[Run]]], h: float, shaded: bool) -> None:
        c, x = page.c, page.left
        c.setStrokeColor(GREY)
        c.setLineWidth(0.4)
        if shaded:
            c.setFillColor(SHADE)
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
    size, leading = SMALL
    widths = [24 * MM, 62 * MM, 24 * MM, 64 * MM]
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
                page.text_line(line, x, size, PRELIM_RED if color else None)
                page.y -= leading
        page.y = top - h
    page.c.setStrokeColor(GREY)
    page.c.setLineWidth(0.5)
    page.c.line(page.left, page.y, page.left + sum(widths), page.y)


def _bar(page: _Page, view: View) -> None:
    """The result against its range: a log-scale bar with the range in green and the result in red."""
    bar, width = view.bar, 120 * MM
    if bar is None:
        return
    page.space(2 * MM)
    page.need(8 * MM)
    c, x, base = page.c, page.left, page.y - 8 * MM
    c.setStrokeColor(GREY)
    c.setLineWidth(1)
    c.setFillColor(SHADE)
    c.rect(x, base + 2 * MM, width, 4 * MM, stroke=1, fill=1)
    x0, x1 = width * bar.position(bar.low) / 100, width * bar.position(bar.high) / 100
    c.setFillColor(RANGE_GREEN)
    c.rect(x + x0, base + 2 * MM, x1 - x0, 4 * MM, stroke=0, fill=1)
    xv = x + width * bar.position(bar.value) / 100
    c.setStrokeColor(RED)
    c.setLineWidth(2)
    c.line(xv, base + 0.5 * MM, xv, base + 7.5 * MM)
    page.y = base
    censored = " (censored: the marker is at the limit)" if bar.comparator else ""
    words = f"{bar.label}: {bar.comparator}{bar.value} {bar.unit}{censored}; range {bar.low}-{bar.high} {bar.unit}"
    page.paragraph([(words, "Helvetica")], SMALL)


BULLET = "\u2022 "


def _section(page: _Page, section: Section) -> None:
    """A titled list; a section of one line is one paragraph ("Title: line"), as in the narrative."""
    page.space(3 * MM)
    if len(section.lines) == 1:
        page.paragraph([(f"{section.title}:", "Helvetica-Bold"), (section.lines[0], "Helvetica")], BODY)
        return
    page.paragraph([(section.title, "Helvetica-Bold")], BODY)
    for line in section.lines:
        page.paragraph([(BULLET + line, "Helvetica")], SMALL)


# --- plots (View.plots) -------------------------------------------------------------------------------------------
# The geometry both drawings share: the HTML page's SVG (labinterp.render.report) and the PDF's lines below.

PLOT_COLOURS = ("#222222", "#cc0000", "#0066cc", "#339933", "#dd8800", "#663399", "#009999", "#aa5500")
MODEL_DASHES: tuple[tuple[float, ...], ...] = ((6, 3), (2, 2), (8, 3, 2, 3), (4, 4), (1, 3), (10, 4))
LEGEND_CHARS = 120  # a legend label longer than this is cut (the SVG's text does not wrap)


@dataclass(frozen=True)
class CurveStyle:
    colour: str  # "#rrggbb"
    dash: tuple[float, ...]  # on/off lengths; () is a solid line
    markers: bool  # observed points are drawn as small circles


def curve_styles(plot: Plot) -> list[CurveStyle]:
    """Each curve's colour (by its place in the plot) and line: observed solid with markers, each model with its
    own dash pattern."""
    out: list[CurveStyle] = []
    models = 0
    for i, curve in enumerate(plot.curves):
        colour = PLOT_COLOURS[i % len(PLOT_COLOURS)]
        if curve.kind == "model":
            out.append(CurveStyle(colour, MODEL_DASHES[models % len(MODEL_DASHES)], False))
            models += 1
        else:
            out.append(CurveStyle(colour, (), True))
    return out


def axis_top(v: float) -> float:
    """An axis' upper end: the plot's maximum, or 1 when it is not a positive number."""
    return v if math.isfinite(v) and v > 0 else 1.0


def nice_step(top: float, target: int = 5) -> float:
    """The tick step for an axis from 0 to `top`: 1, 2, 2.5 or 5 times a power of ten, at most `target` steps."""
    raw = axis_top(top) / target
    magnitude = 10.0 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1.0, 2.0, 2.5, 5.0, 10.0) if raw <= m * magnitude * (1 + 1e-9))


def ticks(top: float) -> list[tuple[float, str]]:
    """(value, label) of the ticks from 0 to `top` (the last at or below it), labels with as many decimals as the
    step needs."""
    top = axis_top(top)
    step = nice_step(top)
    decimals = next(d for d in range(0, 12) if math.isclose(round(step, d), step, rel_tol=1e-9))
    count = math.floor(top / step + 1e-9)
    return [(i * step, f"{i * step:.{decimals}f}") for i in range(count + 1)]


CLIP_MARGIN = 3.5  # the drawing of the curves is cut this far outside the plot area (a marker on an axis is whole)


def plot_points(points: Sequence[tuple[float, float]], x_top: float, y_top: float) -> list[tuple[float, float]]:
    """Points as fractions of the axes (0..1 inside the plot area; the drawing is cut at the area, so a model that
    runs beyond an axis' end leaves it there); a point far outside is held at -1 or 2, one that is not a number is
    left out."""
    xt, yt = axis_top(x_top), axis_top(y_top)
    return [
        (min(max(x / xt, -1.0), 2.0), min(max(y / yt, -1.0), 2.0)) for x, y in points if math.isfinite(x) and math.isfinite(y)
    ]


def legend_label(label: str) -> str:
    return label if len(label) <= LEGEND_CHARS else label[:LEGEND_CHARS] + "…"


def _hex_rgb(colour: str) -> tuple[float, float, float]:
    return (int(colour[1:3], 16) / 255, int(colour[3:5], 16) / 255, int(colour[5:7], 16) / 255)


PLOT_AREA_H = 60 * MM
PLOT_AREA_W = 140 * MM
PLOT_TEXT = 7.0  # tick labels, axis labels and the legend
LEGEND_ROW = 10.0


def _plot(page: _Page, plot: Plot) -> None:
    """A plot as lines: title, the y axis' label above it, axes with ticks, light grid lines, each curve (observed
    points as dots joined by a line, each model dashed its own way), the x axis' label and a legend under it.
    Kept on one page."""
    c, styles = page.c, curve_styles(plot)
    head = 30.0  # the title's line, then the y axis' label
    h = head + PLOT_AREA_H + 26 + LEGEND_ROW * len(plot.curves)
    page.space(4 * MM)
    page.need(h)
    top = page.y
    left = page.left + 12 * MM
    right = left + min(PLOT_AREA_W, page.width - 14 * MM)
    area_top, bottom = top - head, top - head - PLOT_AREA_H
    width, height = right - left, area_top - bottom

    def at(fx: float, fy: float) -> tuple[float, float]:
        return left + fx * width, bottom + fy * height

    x_ticks = [(left + width * v / axis_top(plot.x_max), label) for v, label in ticks(plot.x_max)]
    y_ticks = [(bottom + height * v / axis_top(plot.y_max), label) for v, label in ticks(plot.y_max)]
    c.saveState()
    c.fill("0 g")
    c.setFont("Helvetica-Bold", 10)
    c.drawString(page.left, top - 10, one_line(plot.title, "Helvetica-Bold", 10, page.width))
    c.setFont("Helvetica", PLOT_TEXT)
    c.drawString(left - 10 * MM, area_top + 7, one_line(plot.y_label, "Helvetica", PLOT_TEXT, page.width - 2 * MM))
    c.setStrokeGray(0.88)
    c.setLineWidth(0.3)
    for x, _ in x_ticks[1:]:
        c.line(x, bottom, x, area_top)
    for y, _ in y_ticks[1:]:
        c.line(left, y, right, y)
    c.setStrokeGray(0.2)
    c.setLineWidth(0.6)
    c.line(left, bottom, right, bottom)
    c.line(left, bottom, left, area_top)
    for x, label in x_ticks:
        c.line(x, bottom, x, bottom - 3)
        c.drawString(x - _width(label, "Helvetica", PLOT_TEXT) / 2, bottom - 10, label)
    for y, label in y_ticks:
        c.line(left - 3, y, left, y)
        c.drawRightString(left - 5, y - 2.5, label)
    x_label = one_line(plot.x_label, "Helvetica", PLOT_TEXT, width)
    c.drawString(left + (width - _width(x_label, "Helvetica", PLOT_TEXT)) / 2, bottom - 19, x_label)
    c.saveState()
    c.clipRect(left - CLIP_MARGIN, bottom - CLIP_MARGIN, width + 2 * CLIP_MARGIN, height + 2 * CLIP_MARGIN)
    c.setLineWidth(1.0)
    for curve, style in zip(plot.curves, styles, strict=True):
        rgb = _hex_rgb(style.colour)
        points = [at(fx, fy) for fx, fy in plot_points(curve.points, plot.x_max, plot.y_max)]
        c.setStrokeColor(rgb)
        c.setDash(style.dash)
        c.polyline(points)
        if style.markers:
            c.setFillColor(rgb)
            for x, y in points:
                c.circle(x, y, 2.0)
    c.restoreState()
    c.setLineWidth(1.0)
    legend_top = bottom - 30
    for i, (curve, style) in enumerate(zip(plot.curves, styles, strict=True)):
        y = legend_top - LEGEND_ROW * i
        rgb = _hex_rgb(style.colour)
        c.setStrokeColor(rgb)
        c.setDash(style.dash)
        c.line(left, y + 2.5, left + 18, y + 2.5)
        if style.markers:
            c.setFillColor(rgb)
            c.circle(left + 9, y + 2.5, 2.0)
        c.fill("0 g")
        c.drawString(left + 24, y, one_line(curve.label, "Helvetica", PLOT_TEXT, page.width - 14 * MM - 24))
    c.restoreState()  # the dash pattern, line width and colours with it
    page.y = top - h


def _story(view: View, page: _Page) -> None:
    """The report, top to bottom: the narrative's parts in the narrative's order."""
    page.paragraph([(view.title, "Helvetica-Bold")], TITLE, space_before=0)
    page.y -= 6  # Heading2's space after
    _heading(page, view)
    page.space(3 * MM)
    page.paragraph([(view.headline, "Helvetica-Bold")], BODY)
    _bar(page, view)
    if view.interpretation:
        page.space(3 * MM)
        page.paragraph([("Interpretation", "Helvetica-Bold")], BODY)
        for line in view.interpretation:
            page.paragraph([(BULLET + line, "Helvetica")], BODY)
    for t in view.tables:
        widths = WIDTHS_MM.get(tuple(t.header)) or [TEXT_WIDTH_MM / len(t.header)] * len(t.header)
        page.space(3 * MM)
        page.paragraph([(t.title, "Helvetica-Bold")], BODY)
        _table(page, t.header, t.rows, widths)
    for section in view.sections:
        _section(page, section)
    for plot in view.plots:
        _plot(page, plot)
    page.space(6 * MM)
    page.paragraph([(view.footer, "Helvetica")], SMALL)
