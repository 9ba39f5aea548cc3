"""Malformed FHIR, generated: the example patients' Bundles (service/labinterp/examples/patients.json) with fields
dropped or replaced by nulls, wrong types, huge numbers, empty and odd unicode text, then interpreted. Whatever the
input, labinterp either raises one of its own errors (labinterp.errors.LabinterpError) or composes a Bundle that
validates as FHIR R4B (validate=True: an invalid composition raises InvalidOutput, which fails here): never another
exception, never a partial or invalid write. Deterministic (derandomize): CI sees the same examples every run."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labinterp.errors import LabinterpError
from labinterp.knowledge import Knowledge, load_knowledge
from labinterp.pipeline import interpret_bundle
from labinterp.validate import validate_bundle
from tests.conftest import ROOT, SITE

EXAMPLES = ROOT / "service" / "labinterp" / "examples" / "patients.json"
NOW = datetime(2026, 1, 20, 12, 0, tzinfo=UTC)
FUZZ = settings(
    max_examples=500,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

Path = tuple[str | int, ...]


@cache
def knowledge() -> Knowledge:
    return load_knowledge(SITE)


@cache
def per_patient() -> tuple[str, ...]:
    """One collection Bundle per example patient (its Patient and every resource whose subject is that patient),
    as JSON text: small inputs make each example fast."""
    entries = json.loads(EXAMPLES.read_text())["entry"]
    out = []
    for e in entries:
        r = e["resource"]
        if r["resourceType"] != "Patient":
            continue
        ref = f"Patient/{r['id']}"
        mine = [x for x in entries if x is e or (x["resource"].get("subject") or {}).get("reference") == ref]
        out.append(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": mine}))
    return tuple(out)


def paths(node: Any, here: Path = ()) -> list[Path]:
    """Every path into the JSON tree, parents before children."""
    out: list[Path] = [here] if here else []
    if isinstance(node, dict):
        for key in sorted(node):
            out += paths(node[key], (*here, key))
    elif isinstance(node, list):
        for i, item in enumerate(node):
            out += paths(item, (*here, i))
    return out


def parent_of(tree: Any, path: Path) -> Any:
    for step in path[:-1]:
        tree = tree[step]
    return tree


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(["", " ", "null", "NaN", "-1", "1e309", "0x10", "<0.4", ">48", "2026-13-45", "T12:00", "Patient/", "/"]),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([10**308, -(10**308), 1e-320, 0, -0.0]),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=40),
    st.sampled_from(["\u202e\u0000evil", "💊" * 50, "e\u0301", "\ud7ff\ue000", "ß" * 1000]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=6,
)


# the elements whose values the rules read: a mutation there reaches the arithmetic, the dates and the genotypes
MEANINGFUL = {
    "value",
    "comparator",
    "unit",
    "code",
    "system",
    "valueString",
    "valueQuantity",
    "valueCodeableConcept",
    "birthDate",
    "gender",
    "effectiveDateTime",
    "effectivePeriod",
    "issued",
    "status",
    "reference",
    "id",
    "dosageInstruction",
    "dosage",
    "authoredOn",
    "effectiveInstant",
    "doseQuantity",
    "timing",
    "component",
}


@st.composite
def mutated_bundles(draw: st.DrawFn, focus: bool = False) -> dict[str, Any]:
    bundle = json.loads(draw(st.sampled_from(per_patient())))
    candidates = paths(bundle)
    if focus:
        candidates = [p for p in candidates if isinstance(p[-1], str) and p[-1] in MEANINGFUL]
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        if not candidates:
            break
        path = candidates[draw(st.integers(min_value=0, max_value=len(candidates) - 1))]
        try:
            parent, key = parent_of(bundle, path), path[-1]
            old = parent[key]
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or replaced the way there
        op = draw(st.sampled_from(["drop", "null", "replace", "wrap", "stringify", "empty"]))
        if op == "drop":
            del parent[key]
        elif op == "null":
            parent[key] = None
        elif op == "replace":
            parent[key] = draw(json_values)
        elif op == "wrap":
            parent[key] = [old]
        elif op == "stringify":
            parent[key] = json.dumps(old)
        else:
            parent[key] = type(old)() if isinstance(old, (dict, list, str)) else {}
    return bundle


def check(bundle: dict[str, Any], render: bool) -> None:
    try:
        result = interpret_bundle(bundle, knowledge(), NOW, validate=True, render=render)
    except LabinterpError:
        return  # refused with labinterp's own error: nothing composed, nothing written
    validate_bundle(result.bundle)  # what would be written is valid FHIR, every entry of it
    assert result.bundle.get("type") == "transaction", result.bundle


@FUZZ
@given(mutated_bundles())
def test_mutated_examples_raise_labinterp_errors_or_write_valid_fhir(bundle: dict[str, Any]) -> None:
    check(bundle, render=False)


@FUZZ
@given(mutated_bundles(focus=True))
def test_mutated_values_dates_and_codes_raise_labinterp_errors_or_write_valid_fhir(bundle: dict[str, Any]) -> None:
    check(bundle, render=False)


@settings(FUZZ, max_examples=40)
@given(mutated_bundles())
def test_mutated_examples_render_reports_or_refuse(bundle: dict[str, Any]) -> None:
    """The same with the HTML and PDF reports rendered (odd unicode reaches the PDF)."""
    check(bundle, render=True)


@FUZZ
@given(st.one_of(json_values, st.builds(lambda e: {"resourceType": "Bundle", "type": "collection", "entry": e}, json_values)))
def test_arbitrary_json_is_refused_with_a_labinterp_error_or_interpreted(data: Any) -> None:
    check(data, render=False)
