"""A view's plots (a batch's release profile with its fitted models) are drawn in the HTML page as inline SVG and in
the PDF as lines, never in the narrative (FHIR narrative XHTML allows no SVG); every label is text, escaped; the
same view gives the same bytes, and a view without plots renders as before."""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from dataclasses import replace
from html.parser import HTMLParser

import pytest
from pypdf import PdfReader

from labinterp.compose.view import Curve, Plot, Section, Table, View
from labinterp.render.pdf import nice_step, render_pdf, ticks
from labinterp.render.report import XHTML, narrative, render_fragment, render_html, svg_plot

HOSTILE = '<script>alert("x")</script> & " \' </svg><b>'
OBSERVED = ((0.5, 12.0), (1.0, 20.5), (2.0, 33.0), (4.0, 51.0), (8.0, 72.0), (12.0, 85.0), (24.0, 97.0))


def release_plot(observed_label: str = "Observed (lot 7)") -> Plot:
    return Plot(
        title="In-vitro release, lot 7",
        x_label="Time (h)",
        y_label="Released (%)",
        curves=(
            Curve(observed_label, OBSERVED),
            Curve("Zero order", tuple((t, 4.1 * t) for t in (0.0, 6.0, 12.0, 18.0, 24.0, 30.0)), "model"),
            Curve("Higuchi", tuple((float(t), 20.0 * t**0.5) for t in range(0, 25, 2)), "model"),
            Curve("Korsmeyer-Peppas (n = 0.45)", tuple((float(t), 21.0 * t**0.45) for t in range(0, 25, 2)), "model"),
        ),
        x_max=24.0,
        y_max=100.0,
    )


def view(plots: list[Plot] | None = None) -> View:
    return View(
        title="Formulation QC: Ketoprofen microspheres",
        patient="Batch KMS lot 7",
        issued="2026-01-20T12:00:00Z",
        status="final",
        headline="Released: every limited measure is within its limit",
        header=[("Product", "Ketoprofen microspheres"), ("Lot", "7")],
        tables=[Table("Measures", ["Measure", "Value", "Status"], [["D50", "152 µm", "pass"]])],
        sections=[Section("Basis", ["specification KMS-01 version 3"])],
        footer="labinterp rules",
        plots=plots or [],
    )


class Elements(HTMLParser):
    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def svg_part(html: str) -> str:
    m = re.search(r"<svg class=\"plot\".*?</svg></div>", html, re.S)
    assert m is not None
    return m.group(0)


def test_the_page_draws_each_plot_as_svg_with_its_points_and_curves() -> None:
    html = render_html(view([release_plot(), release_plot()]))
    assert html.count('<svg class="plot"') == 2
    svg = svg_part(html)
    tags = Elements(svg).tags
    assert len([t for t, _ in tags if t == "polyline"]) == 4  # one a curve
    # each observed point a marker, and one more on the observed curve's legend line
    assert len([t for t, _ in tags if t == "circle"]) == len(OBSERVED) + 1
    dashes = [a.get("stroke-dasharray", "") for t, a in tags if t == "polyline"]
    assert dashes[0] == "" and len(set(dashes[1:])) == 3 and "" not in dashes[1:]  # each model its own dash
    colours = [a["stroke"] for t, a in tags if t == "polyline"]
    assert len(set(colours)) == 4
    text = "".join(Elements(svg).text)
    for label in ("In-vitro release, lot 7", "Time (h)", "Released (%)", "Zero order", "Higuchi", "Korsmeyer-Peppas (n = 0.45)"):
        assert label in text
    for tick in ("0", "5", "10", "15", "20", "40", "60", "80", "100"):
        assert f">{tick}</text>" in svg
    ET.fromstring(svg.removesuffix("</div>"))  # well-formed XML too


def test_nothing_in_the_svg_runs_or_loads() -> None:
    svg = svg_part(render_html(view([release_plot(HOSTILE)])))
    tags = Elements(svg).tags
    allowed = {"svg", "g", "rect", "line", "polyline", "circle", "text"}
    assert {t for t, _ in tags} <= allowed
    for _, attrs in tags:
        assert not [a for a in attrs if a.startswith("on") or a in ("style", "href", "xlink:href", "src")], attrs
    assert "url(" not in svg and "xmlns" not in svg


def test_a_hostile_label_is_text() -> None:
    plot = replace(release_plot(HOSTILE), title=HOSTILE, x_label=HOSTILE, y_label='"><script>y</script>')
    html = render_html(view([plot]))
    assert "<script" not in html and "</svg><b>" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &#34; &#39; &lt;/svg&gt;&lt;b&gt;" in html
    parsed = Elements(svg_part(html))
    assert "".join(parsed.text).count(HOSTILE) == 3  # title, x label and legend, as text
    assert [a["aria-label"] for t, a in parsed.tags if t == "svg" and "aria-label" in a] == [HOSTILE]


def test_the_narrative_keeps_the_tables_and_has_no_svg() -> None:
    v = view([release_plot()])
    fragment = render_fragment(v)
    assert "<svg" not in fragment and "polyline" not in fragment and "Measures" in fragment
    assert narrative(v)["div"] == fragment == render_fragment(view())
    assert ET.fromstring(fragment).tag == f"{{{XHTML}}}div"
    page = render_html(v)
    assert page.index(fragment) < page.index("<svg")


def test_a_view_without_plots_renders_the_page_as_before() -> None:
    v = view()
    assert render_html(v) == render_html(v, render_fragment(v))
    assert "<svg" not in render_html(v) and render_html(v).endswith(f"<body>{render_fragment(v)}</body></html>")


def test_the_pdf_draws_the_plot_on_one_page_with_its_legend() -> None:
    pdf = render_pdf(view([release_plot(HOSTILE)]))
    reader = PdfReader(io.BytesIO(pdf))
    assert len(reader.pages) == 1
    text = reader.pages[0].extract_text()
    for label in ("In-vitro release, lot 7", "Released (%)", "Time (h)", "Zero order", "Higuchi", "Korsmeyer-Peppas (n = 0.45)"):
        assert label in text
    assert "<script>alert" in text  # drawn as the text it is
    content = reader.pages[0].get_contents()
    assert content is not None
    ops = content.get_data().decode("latin-1")
    assert "[6.00 3.00] 0 d" in ops and "[2.00 2.00] 0 d" in ops and " re W n" in ops  # dashed models, cut at the area
    assert text.index("Basis") < text.index("In-vitro release") < text.index("labinterp rules")  # after the sections
    assert pdf == render_pdf(view([release_plot(HOSTILE)]))  # deterministic
    assert render_html(view([release_plot()])) == render_html(view([release_plot()]))


def test_a_plot_never_straddles_pages() -> None:
    plot_texts = ("In-vitro release, lot 7", "Released (%)", "Time (h)", "Korsmeyer-Peppas (n = 0.45)")
    moved = False
    for parts in range(12):  # the plot starting anywhere down the first page
        sections = [Section(f"Part {i}", [f"line {j} of part {i}" for j in range(4)]) for i in range(parts)]
        reader = PdfReader(io.BytesIO(render_pdf(replace(view([release_plot()]), sections=sections))))
        pages = [p.extract_text() for p in reader.pages]
        holding = [i for i, t in enumerate(pages) if any(x in t for x in plot_texts)]
        assert len(holding) == 1 and all(x in pages[holding[0]] for x in plot_texts), parts
        moved = moved or holding[0] > 0
    assert moved  # the last cases put the plot on the next page, whole


def test_the_plot_is_cut_at_its_axes() -> None:
    g = svg_plot(release_plot())
    zero_order = g.curves[1].points.split()
    assert zero_order[-1] == "661.0,-10.6"  # 30 h and 123 % lie beyond the axes: drawn, then cut by the viewport
    assert float(g.clip[0]) < float(g.left) and float(g.clip[2]) > float(g.right) - float(g.left)
    wild = Plot("p", "x", "y", (Curve("c", ((1e300, -1e300), (float("nan"), 1.0), (1.0, 1.0))),), 0.0, float("inf"))
    points = svg_plot(wild).curves[0].points.split()
    assert len(points) == 2 and all(len(p) < 20 for p in points)  # no number runs away; NaN left out
    assert len(PdfReader(io.BytesIO(render_pdf(view([wild])))).pages) == 1


@pytest.mark.parametrize(
    ("top", "step", "last"),
    [
        (100.0, 20.0, "100"),
        (24.0, 5.0, "20"),
        (8.0, 2.0, "8"),
        (1.0, 0.2, "1.0"),
        (0.6, 0.2, "0.6"),
        (12.0, 2.5, "10.0"),
        (1000.0, 200.0, "1000"),
        (7.0, 2.0, "6"),
        (0.0, 0.2, "1.0"),
    ],
)
def test_nice_ticks(top: float, step: float, last: str) -> None:
    assert nice_step(top) == pytest.approx(step)
    marks = ticks(top)
    assert marks[0][0] == 0 and marks[-1][1] == last and 3 <= len(marks) <= 6


def test_a_long_title_is_cut_in_the_running_header_not_drawn_over_the_batch() -> None:
    long = replace(view(), title="Microsphere formulation QC report: " + "Ketoprofen microspheres 10 %, lot KMS01 " * 4)
    reader = PdfReader(io.BytesIO(render_pdf(long)))
    first_line = reader.pages[0].extract_text().splitlines()[0]
    assert first_line.startswith("Batch KMS lot 7") and first_line.endswith("…")


def test_the_minus_sign_of_an_equation_is_kept() -> None:
    v = replace(view(), sections=[Section("Models", ["F = 100·(1 − e^(−k1·t))"])])
    text = PdfReader(io.BytesIO(render_pdf(v))).pages[0].extract_text()
    assert "F = 100·(1 - e^(-k1·t))" in text
