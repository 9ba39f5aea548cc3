"""The run's summary lines (labinterp.summary): what the CLI prints for each patient."""

from __future__ import annotations

from labinterp.knowledge import Knowledge
from labinterp.pipeline import interpret_bundle
from labinterp.summary import summarize
from tests.builders import MG, P
from tests.conftest import NOW

WHEN = "2026-01-15T08:00:00+01:00"


def test_a_registered_result_alone_writes_nothing_and_says_it_is_awaited(k: Knowledge) -> None:
    """A result ordered but not yet reported (status registered) is not a problem to answer with a report: nothing
    is written, and the run's summary says it is awaited (it is interpreted when the final result arrives)."""
    p = P("n5r", "male", "1960-01-01", "")
    p.lab(MG, 1.3, "mg/dL", WHEN, status="registered")
    result = interpret_bundle(p.bundle(), k, NOW)
    (patient,) = result.patients
    assert patient.written == [] and not result.problems
    lines = summarize(patient)
    assert any(line.strip().startswith("awaiting: 1 result(s) registered") for line in lines)
    assert lines[-1].strip() == "writes: nothing yet (results awaited)"


def test_a_final_result_beside_a_registered_one_is_interpreted(k: Knowledge) -> None:
    p = P("n5s", "male", "1960-01-01", "")
    p.lab(MG, 1.3, "mg/dL", WHEN, status="registered")
    p.lab(MG, 1.1, "mg/dL", "2026-01-14T08:00:00+01:00")
    (patient,) = interpret_bundle(p.bundle(), k, NOW).patients
    assert "magnesium" in [w.kind for w in patient.written]
    assert "awaiting: 1 result(s)" in "\n".join(summarize(patient))
