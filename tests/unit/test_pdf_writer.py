"""labinterp's own PDF writer (labinterp.render.pdf.PdfCanvas): valid PDF that pypdf reads back, text escaped and
encoded for the standard fonts, "Page x of y" on every page, the same bytes for the same drawing."""

from __future__ import annotations

import io

from pypdf import PdfReader

from labinterp.render.pdf import PdfCanvas


def _draw(texts: list[str], pages: int = 1) -> bytes:
    c = PdfCanvas()
    c.title = "Serum magnesium (µ) — test"
    c.author = "labinterp"
    for page in range(pages):
        c.setFont("Helvetica-Bold", 10)
        c.setFillGray(0)
        for i, text in enumerate(texts):
            c.drawString(50, 700 - 14 * i, f"{page}: {text}")
        c.setStrokeColor((0.5, 0.5, 0.5))
        c.rect(40, 100, 100, 20, stroke=1, fill=0)
        c.line(40, 90, 140, 90)
        c.showPage()
    return c.save()


def test_the_pdf_reads_back_with_its_text_pages_and_title() -> None:
    texts = ["plain", "paren (a) and \\ backslash", "é … • · µ", "Łódź 李"]
    reader = PdfReader(io.BytesIO(_draw(texts, pages=3)))
    assert len(reader.pages) == 3
    page_texts = [page.extract_text() for page in reader.pages]
    for n, text in enumerate(page_texts):
        assert f"{n}: plain" in text
        assert "paren (a) and \\ backslash" in text
        assert "é … • · µ" in text
        assert "?ód? ?" in text  # characters WinAnsiEncoding lacks: "?", never an error
        assert f"Page {n + 1} of 3" in text
    assert reader.metadata is not None and reader.metadata.title == "Serum magnesium (µ) — test"


def test_the_same_drawing_gives_the_same_bytes() -> None:
    assert _draw(["a", "b"], 2) == _draw(["a", "b"], 2)


def test_an_empty_canvas_is_one_blank_page() -> None:
    assert len(PdfReader(io.BytesIO(PdfCanvas().save())).pages) == 1
