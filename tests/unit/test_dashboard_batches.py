"""The dashboard's batch comparison (/dashboard/batches): one row per recent formulation batch with its conclusion and
key measures, each with its status, and the release profiles overlaid as inline SVG; everything read from the FHIR
server is text (a hostile product name included), a Substance id that is not a FHIR id is never linked, the page
carries the Content-Security-Policy, and a FHIR server that fails gives a page that says so (never a 500)."""

from __future__ import annotations

import re
from datetime import datetime
from html import unescape
from pathlib import Path
from typing import Any

import pytest

from labinterp.errors import FhirError, FhirTemporaryError
from labinterp.extract.batch_facts import BatchRecord
from labinterp.extract.facts import SourceRef
from labinterp.knowledge import Knowledge
from labinterp.rules.qc import (
    FAIL,
    INCOMPLETE,
    MISSING,
    NO_LIMIT,
    NOT_RELEASED,
    PASS,
    RELEASED,
    BatchFinding,
    MeasureResult,
)
from labinterp.rules.qc_math import ModelFit, ReleaseSummary
from labinterp.server.app import create_app
from tests.conftest import NOW, SITE
from tests.contract.test_api import BASE
from tests.contract.test_dashboard_xss import assert_nothing_executable

HOSTILE = "<script>alert('p')</script>\"><img src=x onerror=alert(1)> & Co"
PROFILE_A = ((0.5, 14.0), (1.0, 24.0), (2.0, 38.0), (4.0, 57.0), (8.0, 79.0), (12.0, 90.0), (24.0, 98.0))
PROFILE_B = ((1.0, 9.0), (2.0, 15.0), (4.0, 26.0), (8.0, 41.0), (24.0, 63.0))


def result(measure: str, value: float | None, shown: str, status: str, detail: str = "") -> MeasureResult:
    limit = "<= 200 µm (KMS-01 version 3)" if status in (PASS, FAIL, MISSING) else ""
    return MeasureResult(measure, measure.replace("_", " "), value, "", shown, status, limit, detail)


def finding(
    sid: str,
    product: str,
    lot: str,
    conclusion: str,
    results: list[MeasureResult],
    profile: tuple[tuple[float, float], ...] | None = None,
    n: float | None = None,
) -> BatchFinding:
    ref = SourceRef("Substance", sid, "1", f"Substance/{sid}")
    record = BatchRecord(batch=ref, product_code="KMS", product_system="", product_name=product, lot=lot)
    f = BatchFinding(record, NOW, "Ketoprofen microspheres 10 %, specification KMS-01 version 3", results=results)
    f.conclusion = conclusion
    f.reasons = [f"because of {product}"]
    if profile is not None:
        f.release = ReleaseSummary(profile, max(y for _, y in profile), None, None)
        f.best_model = "Higuchi"
    if n is not None:
        f.peppas = ModelFit("Korsmeyer-Peppas", "F = kKP·t^n", {"kKP": 20.0, "n": n}, 5, 0.99, 0.98, -10.0)
    return f


def batches() -> list[BatchFinding]:
    released = finding(
        "kms-007",
        "Ketoprofen microspheres",
        "L007",
        RELEASED,
        [
            result("volume_mean_diameter", 152.0, "152 µm", PASS),
            result("d50", 148.0, "148 µm", PASS),
            result("span", 0.82, "0.82", PASS),
            result("share_outside_range", 0.0, "0 %", PASS),
            result("entrapment_efficiency", 87.4, "87.4 %", PASS),
            result("t50", 3.4, "3.4 h", NO_LIMIT),
            result("t80", 8.3, "8.3 h", PASS),
            result("release_exponent", 0.47, "0.47", NO_LIMIT),
            result("retained_drug_content", 99.1, "99.1 %", PASS, "25 °C / 60 % RH, at 90 days, relative to day 0"),
            result("retained_drug_content", 96.2, "96.2 %", PASS, "40 ± 2 °C / 75 % RH, at 90 days, relative to day 0"),
        ],
        PROFILE_A,
        0.47,
    )
    failed = finding(
        "kms-008",
        HOSTILE,
        "L008</td><td>",
        NOT_RELEASED,
        [
            result("volume_mean_diameter", 240.0, "240 µm", FAIL),
            result("entrapment_efficiency", None, "not measured", MISSING),
            result("t50", 12.0, "12 h", NO_LIMIT),
        ],
        PROFILE_B,
        0.61,
    )
    odd_id = finding("bad id/../x", "Placebo microspheres", "L009", INCOMPLETE, [])
    return [released, failed, odd_id]


@pytest.fixture
def client(tmp_path: Path) -> Any:
    return create_app({"FHIR_BASE_URL": BASE, "MAPPINGS_DIR": str(SITE), "QUEUE_PATH": str(tmp_path / "q.db")}).test_client()


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    calls: list[tuple[Any, ...]] = []

    def recent_batches(client: Any, k: Knowledge, now: datetime, count: int) -> list[BatchFinding]:
        calls.append((client, k, now, count))
        return batches()

    monkeypatch.setattr("labinterp.pipeline.recent_batches", recent_batches, raising=False)
    return calls


def cells(html: str) -> list[list[str]]:
    """The comparison table's rows, each cell's text (tags dropped, entities read)."""
    table = html.split('<table class="batches">')[1].split("</table>")[0]
    return [
        [" ".join(unescape(re.sub(r"<[^>]+>", " ", "<td" + cell)).split()) for cell in row.split("<td")[1:]]
        for row in table.split("<tr")[2:]
    ]


def test_the_page_lists_the_batches_with_their_statuses(client: Any, served: list[tuple[Any, ...]]) -> None:
    r = client.get("/dashboard/batches")
    assert r.status_code == 200 and r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    assert len(served) == 1 and served[0][3] == 20 and served[0][2].tzinfo is not None
    rows = cells(html)
    assert len(rows) == 3
    first = rows[0]
    assert first[:4] == ["Ketoprofen microspheres", "L007", "kms-007", "released"]
    text = " | ".join(" ".join(row) for row in rows)
    for shown in ("152 µm pass", "148 µm pass", "0.82 pass", "87.4 % pass", "3.4 h no limit set", "Higuchi", "0.47 no limit set"):
        assert shown in text, shown
    # the lowest retained drug content, with its storage condition
    assert "96.2 % 40 ± 2 °C / 75 % RH, at 90 days, relative to day 0 pass" in " ".join(rows[0])
    assert "99.1 %" not in html
    second = " ".join(rows[1])
    assert "240 µm fail" in second and "not measured missing" in second and "not released" in second
    assert "0.61 no limit set" in second  # n from the Korsmeyer-Peppas fit when no result carries it
    third = " ".join(rows[2])
    assert "incomplete" in third and third.count("- missing") == 9  # nothing measured: each measure missing
    assert 'class="flag ok">released' in html and 'class="flag hi">not released' in html
    assert 'class="flag missing">incomplete' in html and 'class="flag status hi">fail' in html
    assert 'class="flag status nolimit">no limit set' in html and 'class="flag status missing">missing' in html
    for header in ("Volume mean diameter", "D50", "Span", "Outside 1-1000 µm", "Entrapment efficiency", "t50", "t80"):
        assert f"<th>{header}</th>" in html
    assert "<th>Best release model</th>" in html and "<th>Release exponent n</th>" in html
    assert 'title="limit &lt;= 200 µm (KMS-01 version 3)"' in html


def test_the_release_profiles_are_overlaid(client: Any, served: list[tuple[Any, ...]]) -> None:
    html = client.get("/dashboard/batches").get_data(as_text=True)
    assert html.count("<svg") == 2 and html.count('<svg class="plot"') == 1  # the plot and its clipping viewport
    svg = html.split('<svg class="plot"')[1]
    assert svg.count("<polyline") == 2  # the two batches with a profile
    assert svg.count("<circle") == len(PROFILE_A) + len(PROFILE_B) + 2  # and one on each legend line
    assert "Ketoprofen microspheres lot L007" in svg and "lot L008&lt;/td&gt;&lt;td&gt;" in svg


def test_everything_read_is_text(client: Any, served: list[tuple[Any, ...]]) -> None:
    html = client.get("/dashboard/batches").get_data(as_text=True)
    page = assert_nothing_executable(html)
    assert "<script" not in html and "<img" not in html and '</td><td>"' not in html
    assert "&lt;script&gt;alert(&#39;p&#39;)&lt;/script&gt;&#34;&gt;&lt;img src=x onerror=alert(1)&gt; &amp; Co" in html
    text = "".join(page.text)
    assert HOSTILE in text and "L008</td><td>" in text  # shown, as the text it is


def test_a_substance_id_that_is_not_a_fhir_id_is_never_linked(client: Any, served: list[tuple[Any, ...]]) -> None:
    html = client.get("/dashboard/batches").get_data(as_text=True)
    page = assert_nothing_executable(html)
    links = [a["href"] for t, a in page.tags if t == "a" and "batch-" in a["href"]]
    assert links == ["/dashboard/batches#batch-kms-007", "/dashboard/batches#batch-kms-008"]
    assert "bad id/../x" in "".join(page.text)
    assert [a["id"] for t, a in page.tags if t == "tr" and "id" in a] == ["batch-kms-007", "batch-kms-008"]


def test_the_page_carries_the_security_headers_and_is_linked(client: Any, served: list[tuple[Any, ...]]) -> None:
    r = client.get("/dashboard/batches")
    csp = r.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp and "style-src 'self'" in csp
    assert r.headers["X-Frame-Options"] == "DENY" and r.headers["Cache-Control"] == "no-store"
    assert 'style="' not in r.get_data(as_text=True)
    assert '<a href="/dashboard/batches">Batches</a>' in client.get("/dashboard/cohort").get_data(as_text=True)
    css = client.get("/dashboard/style.css").get_data(as_text=True)
    assert ".missing{" in css and ".nolimit{" in css


def test_no_batches_yet(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("labinterp.pipeline.recent_batches", lambda *a: [], raising=False)
    r = client.get("/dashboard/batches")
    assert r.status_code == 200 and "No formulation batches yet" in r.get_data(as_text=True)


@pytest.mark.parametrize(
    ("error", "status", "says"),
    [
        (FhirTemporaryError("GET", f"{BASE}/Substance", None, "timed out"), 504, "did not answer in time"),
        (FhirTemporaryError("GET", f"{BASE}/Substance", 503, "busy"), 503, "did not answer in time"),
        (FhirError("GET", f"{BASE}/Substance?secret=<b>x</b>", 500, "<b>boom</b>"), 502, "answered with an error"),
    ],
)
def test_a_fhir_server_error_gives_a_page_that_says_so(
    client: Any, monkeypatch: pytest.MonkeyPatch, error: FhirError, status: int, says: str
) -> None:
    def failing(*_: Any) -> list[BatchFinding]:
        raise error

    monkeypatch.setattr("labinterp.pipeline.recent_batches", failing, raising=False)
    r = client.get("/dashboard/batches")
    html = r.get_data(as_text=True)
    assert r.status_code == status and r.mimetype == "text/html"
    assert says in html and "boom" not in html and "secret" not in html
    assert_nothing_executable(html)
    assert "Content-Security-Policy" in r.headers
