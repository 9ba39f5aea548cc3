"""One Jinja environment, templates as files, figures through matplotlib's object API (issue 8 point 3)."""

from __future__ import annotations

from tests.conftest import ROOT

PACKAGE = ROOT / "service" / "labinterp"


def test_one_jinja_environment_and_templates_as_files() -> None:
    sources = {p.relative_to(PACKAGE).as_posix(): p.read_text() for p in PACKAGE.rglob("*.py")}
    assert [name for name, text in sources.items() if "Environment(" in text] == ["jinja.py"]
    assert not [name for name, text in sources.items() if "from_string(" in text]
    names = {p.name for p in (PACKAGE / "templates").glob("*.html")}
    assert {"report_fragment.html", "report_page.html", "dashboard_layout.html", "cohort_report.html"} <= names


def test_no_pyplot_state_in_threaded_code() -> None:
    assert not [p.name for p in PACKAGE.rglob("*.py") if "pyplot" in p.read_text()]
