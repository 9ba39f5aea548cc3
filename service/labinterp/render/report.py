"""Rendered reports a clinician reads, from the view each report's composer built (Written.view;
labinterp.compose.view): the narrative (Resource.text) on every path, and, when asked, the HTML page (Jinja2) and
the PDF (reportlab) as presentedForm. Laid out as a laboratory report: a PRELIMINARY banner when the report is
preliminary; the patient (name, identifier, birth date, sex and age), the specimen and its collection time, the
performer where given, the issue time and status; then the result against its range (a small range bar), the
interpretation, the report's tables (levels, genotypes with phenotypes, risks with their basis and sources) and
its sections (the suggestion or guidance, renal function, basis, what was not used), and the rule set's
version. The PDF repeats the patient's identification, the banner and "page x of y" on every page.

The narrative is the HTML page's body, valid FHIR XHTML (no empty elements: servers re-serialize XHTML and an
empty <div></div> comes back as <div/>, which an HTML parser reads as an open tag; only elements and attributes
the FHIR narrative allows, no <html>/<head>). Render reads the view only, never the resource's conclusion or the
findings: what a report shows is decided once, by compose. Deterministic: the same view gives the same bytes.
Pure: no I/O, no clock; the patient's name and identifier go into the rendering only, never into a log.

Sources are cited in readers' words: the knowledge loader has already replaced every source key of mappings/
by its citation (mappings/sources.toml), and nothing here names a source file or key."""

from __future__ import annotations

import base64
from typing import Any

from markupsafe import Markup

from labinterp.compose.common import Written
from labinterp.compose.view import PRELIMINARY_NOTE, View, when
from labinterp.jinja import template
from labinterp.render.pdf import render_pdf

__all__ = ["XHTML", "attach", "narrative", "presented_forms", "render_fragment", "render_html", "render_reports", "when"]

XHTML = "http://www.w3.org/1999/xhtml"

_FRAGMENT = template("report_fragment.html")  # compiled once: compiling per report cost ~70 % of the rendering time
_PAGE = template("report_page.html")


def render_fragment(view: View) -> str:
    return _FRAGMENT.render(v=view, xhtml=XHTML, note=PRELIMINARY_NOTE)


def render_html(view: View, fragment: str | None = None) -> str:
    return _PAGE.render(v=view, fragment=Markup(fragment if fragment is not None else render_fragment(view)))


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
