"""Hostile and messy input to microsphere formulation QC (SPEC section 5), as a QC pharmacist, an integration engineer
and an attacker who can write to the FHIR server would send it. Every test starts from the example Bundle
(service/labinterp/examples/batches.json) and mutates it.

Tests pin behaviour that is right; those named after a defect (conflicting results, a stability study without
day 0, a dropped last point, pooled media, a falling profile, ...) were written failing by the review that found
it, and pass since it was mended."""

from __future__ import annotations

import base64
import copy
import json
import math
import random
import subprocess
import sys
import time
import xml.dom.minidom
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from labinterp.knowledge import Knowledge, load_knowledge
from labinterp.pipeline import RunResult, interpret_bundle
from labinterp.rules.qc import FAIL, INCOMPLETE, MISSING, NOT_RELEASED, PASS, RELEASED, BatchFinding, MeasureResult
from labinterp.validate import validate_bundle

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "mappings" / "sites" / "example-compounding-lab"
EXAMPLE = ROOT / "service" / "labinterp" / "examples" / "batches.json"
NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
UCUM = "http://unitsofmeasure.org"
A = "kms-01-2608a"  # the example's first batch: released as sent
B = "kms-01-2609b"
VMD = f"{A}-volume-mean-diameter-001"
ZETA = f"{A}-zeta-potential-044"
OVEN = "40 ± 2 °C"
PH74 = "pH 7.4 phosphate buffer"
HOSTILE = "<script>alert(1)</script></div><img src=x onerror=alert(2)>\"'&amp;"


@pytest.fixture(scope="module")
def k() -> Knowledge:
    return load_knowledge(SITE)


@pytest.fixture(scope="module")
def example() -> dict[str, Any]:
    return json.loads(EXAMPLE.read_text(encoding="utf-8"))


def batch_a(example: dict[str, Any]) -> dict[str, Any]:
    """The example Bundle with batch A only (its Substance, Specimens, Observations and document)."""
    b = copy.deepcopy(example)
    b["entry"] = [e for e in b["entry"] if e["resource"].get("id", "").startswith(A)]
    return b


def res(bundle: dict[str, Any], rid: str) -> dict[str, Any]:
    return next(e["resource"] for e in bundle["entry"] if e["resource"].get("id") == rid)


def obs(bundle: dict[str, Any], part: str) -> Iterator[dict[str, Any]]:
    """The Observations whose id contains `part` (e.g. "drug-released"), in Bundle order."""
    return (
        e["resource"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Observation" and part in e["resource"].get("id", "")
    )


def component(o: dict[str, Any], code: str) -> dict[str, Any]:
    return next(c for c in o["component"] if c["code"]["coding"][0]["code"] == code)


def run(bundle: dict[str, Any], k: Knowledge, **kw: Any) -> RunResult:
    """interpret_bundle, which validates every written Bundle (fhir.resources R4B) unless told not to."""
    return interpret_bundle(bundle, k, NOW, **kw)


def finding(r: RunResult, sid: str = A) -> BatchFinding:
    return next(b.finding for b in r.batches if b.finding.record.batch.id == sid)


def report(r: RunResult, sid: str = A) -> dict[str, Any]:
    written = next(b.written for b in r.batches if b.finding.record.batch.id == sid)
    return next(w.resource for w in written if w.resource["resourceType"] == "DiagnosticReport")


def only(f: BatchFinding, measure: str, detail: str = "") -> MeasureResult:
    hits = [m for m in f.result(measure) if detail in m.detail]
    assert len(hits) == 1, [(m.shown, m.detail) for m in hits]
    return hits[0]


def problems_text(f: BatchFinding) -> str:
    return " | ".join(f"{p.where}: {p.what}" for p in f.record.problems)


def add(bundle: dict[str, Any], resource: dict[str, Any]) -> None:
    bundle["entry"].append(
        {"fullUrl": f"http://example.org/fhir/{resource['resourceType']}/{resource['id']}", "resource": resource}
    )


# --- the baseline: the example batch as sent ---------------------------------------------------------------


def test_example_batch_a_is_released_and_its_bundle_validates(example: dict[str, Any], k: Knowledge) -> None:
    r = run(batch_a(example), k)
    f = finding(r)
    assert f.conclusion == RELEASED
    assert not f.record.problems
    assert only(f, "volume_mean_diameter").shown == "149 µm"
    assert only(f, "entrapment_efficiency").shown == "91.2 %"
    validate_bundle(r.bundle)


# --- units ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "quantity",
    [
        {"value": 148.6, "unit": "μm"},  # Greek mu, not the micro sign
        {"value": 148.6, "unit": "µm"},
        {"value": 148.6, "unit": "micron"},
        {"value": 148.6, "code": "um"},  # a code without a system
        {"value": 0.1486, "unit": "mm", "system": UCUM, "code": "mm"},
        {"value": 148600, "unit": "nm", "system": UCUM, "code": "nm"},
    ],
)
def test_diameter_spellings_and_units_give_the_same_result(
    example: dict[str, Any], k: Knowledge, quantity: dict[str, Any]
) -> None:
    b = batch_a(example)
    res(b, VMD)["valueQuantity"] = quantity
    f = finding(run(b, k, render=False))
    m = only(f, "volume_mean_diameter")
    assert m.status == PASS and math.isclose(m.value or 0, 148.6, rel_tol=1e-9)
    assert not f.record.problems


@pytest.mark.parametrize(("factor", "code"), [(60.0, "min"), (1 / 24, "d"), (3600.0, "s")])
def test_release_time_in_minutes_days_or_seconds_gives_the_same_t50(
    example: dict[str, Any], k: Knowledge, factor: float, code: str
) -> None:
    b = batch_a(example)
    for o in obs(b, "drug-released"):
        q = component(o, "elapsed-time")["valueQuantity"]
        q.update(value=q["value"] * factor, unit=code, code=code)
    f = finding(run(b, k, render=False))
    assert only(f, "t50").shown == "7.4 h"
    assert only(f, "drug_released").shown == "66.6 %"


def test_stability_time_in_weeks_gives_the_same_retained_content(example: dict[str, Any], k: Knowledge) -> None:
    b = batch_a(example)
    for o in obs(b, "stability"):
        q = component(o, "storage-time")["valueQuantity"]
        q.update(value=q["value"] / 7, unit="weeks", code="wk")
    f = finding(run(b, k, render=False))
    assert only(f, "retained_drug_content", OVEN).shown == "91 %"
    assert f.conclusion == RELEASED


def test_stability_in_months_is_read_as_ucum_months_and_not_graded_at_60_days(example: dict[str, Any], k: Knowledge) -> None:
    """Documented decision: 2 mo = 60.875 d, which is not the limit's 60 days: missing, never a pass."""
    b = batch_a(example)
    for o in obs(b, "stability"):
        q = component(o, "storage-time")["valueQuantity"]
        q.update(value=q["value"] / 30, unit="months", code="mo")
    f = finding(run(b, k, render=False))
    assert only(f, "retained_drug_content", OVEN).status == MISSING
    assert f.conclusion == INCOMPLETE


def test_drug_content_in_grams_gives_the_same_entrapment(example: dict[str, Any], k: Knowledge) -> None:
    b = batch_a(example)
    q = next(obs(b, "drug-content-actual"))["valueQuantity"]
    q.update(value=q["value"] / 1000, unit="g", code="g")
    assert only(finding(run(b, k, render=False)), "entrapment_efficiency").shown == "91.2 %"


def test_drug_contents_in_mass_and_percent_are_not_divided(example: dict[str, Any], k: Knowledge) -> None:
    b = batch_a(example)
    next(obs(b, "drug-content-actual"))["valueQuantity"].update(unit="% w/w", code="%")
    f = finding(run(b, k, render=False))
    assert only(f, "entrapment_efficiency").status == MISSING
    assert "cannot be compared" in problems_text(f)
    assert f.conclusion == INCOMPLETE


def test_unknown_unit_on_one_result_leaves_out_only_that_result(example: dict[str, Any], k: Knowledge) -> None:
    b = copy.deepcopy(example)
    res(b, VMD)["valueQuantity"].update(unit="furlong", code="[fur_us]")
    r = run(b, k)
    f = finding(r)
    assert only(f, "volume_mean_diameter").status == MISSING
    assert only(f, "entrapment_efficiency").status == PASS  # the batch's other measures are read
    assert [p.where for p in r.problems] == [f"Observation/{VMD} (Bundle.entry[3])"]
    assert "'[fur_us]'" in r.problems[0].what
    div = report(r)["text"]["div"]
    assert "Not used" in div and VMD in div
    # another batch of the Bundle is untouched
    assert finding(r, B).conclusion == finding(run(copy.deepcopy(example), k, render=False), B).conclusion
    assert len([b_ for b_ in r.batches if b_.written]) == 4


@pytest.mark.parametrize(
    "payload",
    ["not json", '{"resourceType": "Bundle", "type": "collection", "entry": "x"}'],
)
def test_input_that_is_not_a_fhir_bundle_exits_2_with_one_line(tmp_path: Path, payload: str) -> None:
    src = tmp_path / "in.json"
    src.write_text(payload, encoding="utf-8")
    cli = Path(sys.executable).parent / "labinterp"
    args = ["interpret", "--bundle", str(src), "--mappings", str(SITE), "--summary", "--now", "2026-03-01T12:00:00Z"]
    done = subprocess.run(
        [str(cli), *args, "--out", str(tmp_path / "x.json")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.json").exists()


# --- numbers ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -5.0, "148.6", True, None])
def test_unusable_value_is_left_out_with_a_problem(example: dict[str, Any], k: Knowledge, value: Any) -> None:
    b = batch_a(example)
    res(b, VMD)["valueQuantity"]["value"] = value
    r = run(b, k, render=False)
    f = finding(r)
    assert only(f, "volume_mean_diameter").status == MISSING
    assert f.conclusion == INCOMPLETE
    assert any(VMD in p.where for p in r.problems)
    validate_bundle(r.bundle)


def test_negative_zeta_potential_is_a_value(example: dict[str, Any], k: Knowledge) -> None:
    b = batch_a(example)
    res(b, ZETA)["valueQuantity"]["value"] = -31.4
    m = only(finding(run(b, k, render=False)), "zeta_potential")
    assert m.value == -31.4 and m.status == FAIL


def test_value_that_overflows_on_conversion_is_left_out(example: dict[str, Any], k: Knowledge) -> None:
    b = batch_a(example)
    res(b, VMD)["valueQuantity"] = {"value": 1e308, "unit": "mm", "system": UCUM, "code": "mm"}
    f = finding(run(b, k, render=False))
    m = only(f, "volume_mean_diameter")
    assert m.value is None or math.isfinite(m.value)
    assert "inf" not in m.shown


@pytest.mark.parametrize(
    ("part", "setter", "said"),
    [
        ("drug-content-theoretical", lambda o: o["valueQuantity"].update(value=0), "theoretical drug content must be positive"),
        (
            "swollen-weight-015",
            lambda o: component(o, "dry-weight")["valueQuantity"].update(value=0),
            "dry weight must be positive",
        ),
        ("stability-drug-content-035", lambda o: o["valueQuantity"].update(value=0), "initial value must be positive"),
    ],
)
def test_zero_denominators_are_problems_not_crashes(
    example: dict[str, Any], k: Knowledge, part: str, setter: Callable[[dict[str, Any]], None], said: str
) -> None:
    b = batch_a(example)
    setter(next(obs(b, part)))
    r = run(b, k)
    assert said in problems_text(finding(r))
    validate_bundle(r.bundle)


def test_one_particle_is_a_problem_and_keeps_the_analyzer_result(example: dict[str, Any], k: Knowledge) -> None:
    b = batch_a(example)
    count = next(obs(b, "particle-size-microscopy"))
    count["component"] = count["component"][:1]
    f = finding(run(b, k, render=False))
    assert "at least 2 particle diameters" in problems_text(f)
    assert only(f, "span").status == MISSING
    assert only(f, "volume_mean_diameter").status == PASS
    assert f.conclusion == INCOMPLETE


def test_zero_particle_diameter_leaves_the_whole_count_out(example: dict[str, Any], k: Knowledge) -> None:
    b = batch_a(example)
    next(obs(b, "particle-size-microscopy"))["component"][5]["valueQuantity"]["value"] = 0
    f = finding(run(b, k, render=False))
    assert "must be above 0" in problems_text(f)
    assert f.size is None


def test_hundred_thousand_particles_is_fast(example: dict[str, Any], k: Knowledge) -> None:
    b = batch_a(example)
    count = next(obs(b, "particle-size-microscopy"))
    comps = count["component"]
    count["component"] = [comps[i % len(comps)] for i in range(100_000)]  # shared: read only
    start = time.perf_counter()
    f = finding(run(b, k, render=False, validate=False))
    assert time.perf_counter() - start < 10
    assert f.size is not None and f.size.n == 100_000


def test_two_release_points_are_too_few_for_the_limits(example: dict[str, Any], k: Knowledge) -> None:
    b = batch_a(example)
    keep = {o["id"] for o in list(obs(b, "drug-released"))[:2]}
    b["entry"] = [e for e in b["entry"] if "drug-released" not in e["resource"]["id"] or e["resource"]["id"] in keep]
    f = finding(run(b, k))
    assert only(f, "t50").status == MISSING
    assert only(f, "drug_released").status == MISSING  # 12 h is beyond the last point: never extrapolated
    assert f.fits == [] and f.peppas is None


def test_replicate_release_points_at_one_time_are_averaged(example: dict[str, Any], k: Knowledge) -> None:
    b = batch_a(example)
    for o in list(obs(b, "drug-released")):
        twin = copy.deepcopy(o)
        twin["id"] = o["id"] + "-r2"
        add(b, twin)
    f = finding(run(b, k, render=False))
    assert only(f, "t50").shown == "7.4 h"
    assert len(f.release.points) == 10  # type: ignore[union-attr]


def test_decreasing_cumulative_release_is_flagged(example: dict[str, Any], k: Knowledge) -> None:
    b = batch_a(example)
    for i, o in enumerate(obs(b, "drug-released")):
        o["valueQuantity"]["value"] = 100 - 10 * i
    f = finding(run(b, k, render=False))
    assert f.record.problems, "a cumulative release that falls from 100 % to 10 % is not a release profile"


# --- grading ----------------------------------------------------------------------------------------------


def test_value_exactly_at_the_limit_passes(example: dict[str, Any], k: Knowledge) -> None:
    b = batch_a(example)
    next(obs(b, "drug-content-actual"))["valueQuantity"]["value"] = 37.5  # 37.5 / 50 = 75.0 %, limit >= 75 %
    f = finding(run(b, k, render=False))
    assert only(f, "entrapment_efficiency").status == PASS
    assert f.conclusion == RELEASED


def test_failing_value_is_never_printed_as_its_limit(example: dict[str, Any], k: Knowledge) -> None:
    b = batch_a(example)
    next(obs(b, "drug-content-actual"))["valueQuantity"]["value"] = 37.498  # 74.996 %
    f = finding(run(b, k, render=False))
    m = only(f, "entrapment_efficiency")
    assert m.status == FAIL
    assert m.shown != m.bounds.removeprefix(">= "), f"{m.shown!r} FAIL against {m.bounds!r}"


def test_preliminary_result_makes_the_batch_incomplete_and_the_report_preliminary(example: dict[str, Any], k: Knowledge) -> None:
    b = batch_a(example)
    res(b, VMD)["status"] = "preliminary"
    r = run(b, k)
    assert finding(r).conclusion == INCOMPLETE
    assert report(r)["status"] == "preliminary"


def test_product_code_of_another_system_gets_no_limits(example: dict[str, Any], k: Knowledge) -> None:
    b = batch_a(example)
    res(b, A)["code"]["coding"][0]["system"] = "urn:another:lab:products"
    f = finding(run(b, k, render=False))
    assert f.specification == "" and f.conclusion == INCOMPLETE


def test_product_coding_that_is_not_the_first_is_matched(example: dict[str, Any], k: Knowledge) -> None:
    b = batch_a(example)
    res(b, A)["code"]["coding"].insert(0, {"system": "http://snomed.info/sct", "code": "386832008"})
    f = finding(run(b, k, render=False))
    assert "KMS-01" in f.specification


def test_two_substances_with_one_lot_get_two_reports(example: dict[str, Any], k: Knowledge) -> None:
    b = copy.deepcopy(example)
    res(b, B)["instance"][0]["identifier"]["value"] = res(b, A)["instance"][0]["identifier"]["value"]
    r = run(b, k, render=False)
    ids = [tuple(i["value"] for i in report(r, sid)["identifier"]) for sid in (A, B)]
    assert ids[0] != ids[1]


def test_batch_without_results_writes_nothing(example: dict[str, Any], k: Knowledge) -> None:
    b = batch_a(example)
    b["entry"] = [e for e in b["entry"] if e["resource"]["resourceType"] != "Observation"]
    r = run(b, k)
    assert [bb.written for bb in r.batches] == [[]]
    assert r.bundle.get("entry", []) == []


def test_observation_with_a_patient_subject_is_never_batch_data(example: dict[str, Any], k: Knowledge) -> None:
    b = batch_a(example)
    add(b, {"resourceType": "Patient", "id": "p1"})
    z = res(b, ZETA)
    z["subject"] = {"reference": "Patient/p1"}
    z["valueQuantity"]["value"] = 1.0  # would fail the batch's >= 20 mV
    f = finding(run(b, k, render=False))
    assert only(f, "zeta_potential").status == MISSING
    assert f.conclusion == INCOMPLETE


def test_stability_without_day_zero_is_never_a_pass(example: dict[str, Any], k: Knowledge) -> None:
    b = batch_a(example)
    b["entry"] = [
        e
        for e in b["entry"]
        if "stability" not in e["resource"]["id"] or component(e["resource"], "storage-time")["valueQuantity"]["value"] == 60
    ]
    for o in obs(b, "stability"):
        o["valueQuantity"]["value"] = 50.0  # half the label claim after 60 days
    f = finding(run(b, k, render=False))
    assert only(f, "retained_drug_content", OVEN).status != PASS
    assert f.conclusion != RELEASED


def test_storage_condition_spelled_otherwise_leaves_its_limit_missing(example: dict[str, Any], k: Knowledge) -> None:
    """Documented: conditions are compared as sent (spaces collapsed): '40±2°C' is not '40 ± 2 °C'; fail-safe."""
    b = batch_a(example)
    for o in obs(b, "stability"):
        concept = component(o, "storage-condition")["valueCodeableConcept"]
        if concept["text"] == OVEN:
            concept["text"] = "40±2°C"
    f = finding(run(b, k, render=False))
    assert only(f, "retained_drug_content", OVEN).status == MISSING
    assert f.conclusion == INCOMPLETE


def test_release_in_a_second_medium_does_not_change_the_first(example: dict[str, Any], k: Knowledge) -> None:
    """Profiles in different media are never pooled: each is summarised and graded on its own (a limit without a
    medium applies to every medium, so the acid profile fails it on its own values)."""
    b = batch_a(example)
    for o in list(obs(b, "drug-released")):
        acid = copy.deepcopy(o)
        acid["id"] = o["id"] + "-acid"
        component(acid, "medium")["valueCodeableConcept"]["text"] = "pH 1.2 hydrochloric acid buffer"
        acid["valueQuantity"]["value"] = o["valueQuantity"]["value"] / 5
        add(b, acid)
    f = finding(run(b, k, render=False))
    at12 = {m.detail: m.shown for m in f.result("drug_released")}
    assert len(at12) == 2 and "66.6 %" in at12.values()  # the buffer's own value, not an average with the acid's
    assert sorted(f.releases) == ["pH 1.2 hydrochloric acid buffer", next(m for m in f.releases if m.startswith("pH 7"))]
    assert f.conclusion == NOT_RELEASED


def test_dropped_last_swelling_point_does_not_release_the_batch(example: dict[str, Any], k: Knowledge) -> None:
    b = batch_a(example)
    points = [o for o in obs(b, "swollen-weight") if component(o, "medium")["valueCodeableConcept"]["text"] == PH74]
    last = max(points, key=lambda o: component(o, "elapsed-time")["valueQuantity"]["value"])
    last["valueQuantity"]["value"] = 900.0  # 800 % at 6 h: fails <= 350 %
    assert finding(run(copy.deepcopy(b), k, render=False)).conclusion == NOT_RELEASED
    last["valueQuantity"].update(unit="lb", code="[lb_av]")  # the same result, now unreadable
    f = finding(run(b, k, render=False))
    assert f.record.problems
    assert f.conclusion != RELEASED, [(m.shown, m.detail) for m in f.result("swelling_index")]


def test_conflicting_results_at_one_time_do_not_depend_on_bundle_order(example: dict[str, Any], k: Knowledge) -> None:
    conclusions = set()
    for offset in (0, 1):
        b = batch_a(example)
        twin = copy.deepcopy(res(b, VMD))
        twin["id"] = "vmd-retest"
        twin["valueQuantity"]["value"] = 300.0  # fails <= 250 um, same effectiveDateTime
        at = next(i for i, e in enumerate(b["entry"]) if e["resource"]["id"] == VMD)
        b["entry"].insert(at + offset, {"fullUrl": "http://example.org/fhir/Observation/vmd-retest", "resource": twin})
        conclusions.add(finding(run(b, k, render=False)).conclusion)
    assert len(conclusions) == 1


def test_two_particle_counts_do_not_depend_on_bundle_order(example: dict[str, Any], k: Knowledge) -> None:
    spans = set()
    for offset in (0, 1):
        b = batch_a(example)
        count = next(obs(b, "particle-size-microscopy"))
        wide = copy.deepcopy(count)
        wide["id"] = "count-2"
        for i, comp in enumerate(wide["component"]):
            comp["valueQuantity"]["value"] = round(10.0 * 1.05**i, 2)  # span about 6.7
        at = next(i for i, e in enumerate(b["entry"]) if e["resource"] is count)
        b["entry"].insert(at + offset, {"fullUrl": "http://example.org/fhir/Observation/count-2", "resource": wide})
        spans.add(only(finding(run(b, k, render=False)), "span").status)
    assert len(spans) == 1


@pytest.mark.parametrize(
    ("status", "used"), [("amended", True), ("corrected", True), ("entered-in-error", False), ("cancelled", False)]
)
def test_statuses_of_a_result(example: dict[str, Any], k: Knowledge, status: str, used: bool) -> None:
    b = batch_a(example)
    res(b, VMD)["status"] = status
    f = finding(run(b, k, render=False))
    assert (only(f, "volume_mean_diameter").status == PASS) is used
    assert not f.record.problems


def test_t50_not_reached_is_reported_as_beyond_the_last_point(example: dict[str, Any], k: Knowledge) -> None:
    b = batch_a(example)
    for o in obs(b, "drug-released"):
        o["valueQuantity"]["value"] *= 0.5  # 42.7 % at 24 h: t50 is beyond 24 h
    m = only(finding(run(b, k, render=False)), "t50")
    assert m.shown != "not measured"
    assert m.status == PASS  # limit t50 >= 6 h, and t50 > 24 h


# --- cross-batch mixing and references ---------------------------------------------------------------------


def test_observation_of_another_batchs_sample_is_not_taken(example: dict[str, Any], k: Knowledge) -> None:
    b = copy.deepcopy(example)
    other = res(b, f"{B}-volume-mean-diameter-001")  # specimen: B's sample
    other["focus"] = [{"reference": f"Substance/{A}"}]
    other["valueQuantity"]["value"] = 999.0
    f = finding(run(b, k, render=False))
    assert only(f, "volume_mean_diameter").shown == "149 µm"
    assert f.record.problems


def test_observation_through_a_sample_belongs_to_the_samples_batch(example: dict[str, Any], k: Knowledge) -> None:
    b = copy.deepcopy(example)
    o = res(b, f"{B}-zeta-potential-029")
    del o["focus"]
    o["specimen"] = {"reference": f"Specimen/{A}-s1"}
    r = run(b, k, render=False)
    assert f"Observation/{B}-zeta-potential-029" in [s.reference for m in finding(r).result("zeta_potential") for s in m.sources]
    assert only(finding(r, B), "zeta_potential").status == MISSING


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: res(b, f"{A}-s1").__setitem__("subject", {"reference": f"Specimen/{A}-s1"}),  # a loop
        lambda b: res(b, f"{A}-s1").__setitem__("subject", {"reference": f"Observation/{ZETA}"}),
        lambda b: res(b, f"{A}-sem-045").__setitem__("derivedFrom", [{"reference": f"Observation/{A}-sem-045"}]),
        lambda b: res(b, ZETA).__setitem__("focus", "Substance/kms-01-2608a"),
        lambda b: res(b, A).__setitem__("instance", {"identifier": {"value": "x"}}),
        lambda b: res(b, A).__setitem__("code", "KMS-01"),
    ],
)
def test_odd_references_and_shapes_do_not_crash(
    example: dict[str, Any], k: Knowledge, mutate: Callable[[dict[str, Any]], None]
) -> None:
    b = batch_a(example)
    mutate(b)
    r = run(b, k, render=False)
    validate_bundle(r.bundle)


@pytest.mark.parametrize("status", [["final"], {"code": "final"}])
def test_status_that_is_not_a_string_is_a_problem(example: dict[str, Any], k: Knowledge, status: Any) -> None:
    b = copy.deepcopy(example)
    res(b, ZETA)["status"] = status
    r = run(b, k, render=False)
    assert any(ZETA in p.where for p in r.problems)
    assert finding(r, B).conclusion == NOT_RELEASED  # the other batches still get their reports


def test_substance_with_a_bad_id_is_named_as_the_problem(example: dict[str, Any], k: Knowledge) -> None:
    b = batch_a(example)
    res(b, A)["id"] = "bad id/<x>"
    r = run(b, k, render=False)
    assert not any("subject.reference is missing" in p.what for p in r.problems)


# --- free text: narrative, HTML page, PDF -----------------------------------------------------------------


def hostile_batch(example: dict[str, Any], text: str) -> dict[str, Any]:
    """Batch A with `text` as its product name, lot, SEM finding, attachment title and (appended) its media."""
    b = batch_a(example)
    sub = res(b, A)
    sub["code"]["text"] = text
    sub["instance"][0]["identifier"]["value"] = text
    res(b, f"{A}-sem-045")["valueString"] = text
    res(b, f"{A}-sem-image")["content"][0]["attachment"]["title"] = text
    for o in obs(b, "drug-released"):
        component(o, "medium")["valueCodeableConcept"]["text"] = f"{PH74} {text}"
    return b


def forms(rep: dict[str, Any]) -> dict[str, bytes]:
    return {p["contentType"]: base64.b64decode(p["data"]) for p in rep.get("presentedForm", [])}


@pytest.mark.parametrize(
    "text",
    [HOSTILE, "酮洛芬微球 كيتوبروفين 💊🧪", "\u202eRTL override\u202c & <b>bold</b>"],
)
def test_free_text_is_escaped_in_narrative_html_and_pdf(example: dict[str, Any], k: Knowledge, text: str) -> None:
    r = run(hostile_batch(example, text), k)  # validates the written Bundle
    rep = report(r)
    div = rep["text"]["div"]
    xml.dom.minidom.parseString(div)  # well-formed XHTML
    assert "<script" not in div and "<img" not in div and "<b>bold" not in div
    shown = forms(rep)
    html = shown["text/html"].decode("utf-8")
    assert "<script" not in html and "<img" not in html and "onerror=" not in html.replace("onerror=alert", "")
    assert shown["application/pdf"].startswith(b"%PDF")
    assert finding(r).record.product_name == text


def test_hundred_kilobyte_product_name_does_not_hang(example: dict[str, Any], k: Knowledge) -> None:
    b = batch_a(example)
    res(b, A)["code"]["text"] = "A" * 100_000
    start = time.perf_counter()
    r = run(b, k, render=False)
    assert time.perf_counter() - start < 5
    assert report(r)["conclusion"]


def test_control_characters_leave_the_narrative_well_formed(example: dict[str, Any], k: Knowledge) -> None:
    b = batch_a(example)
    res(b, A)["code"]["text"] = "Ketoprofen\x00\x07\x1b[31m\x0b microspheres"
    rep = report(run(b, k))
    xml.dom.minidom.parseString(rep["text"]["div"])
    assert not any(ord(c) < 32 and c not in "\t\n\r" for c in rep["conclusion"])


# --- determinism -----------------------------------------------------------------------------------------


def test_same_input_twice_is_byte_identical(example: dict[str, Any], k: Knowledge) -> None:
    one = json.dumps(run(copy.deepcopy(example), k).bundle, sort_keys=True)
    two = json.dumps(run(copy.deepcopy(example), k).bundle, sort_keys=True)
    assert one == two


def test_reordered_bundle_gives_the_same_identifiers_and_conclusions(example: dict[str, Any], k: Knowledge) -> None:
    shuffled = copy.deepcopy(example)
    random.Random(7).shuffle(shuffled["entry"])
    runs = [run(copy.deepcopy(example), k, render=False), run(shuffled, k, render=False)]

    def summary(r: RunResult) -> list[tuple[str, tuple[str, ...], str]]:
        return sorted(
            (
                bb.finding.record.batch.id,
                tuple(i["value"] for i in report(r, bb.finding.record.batch.id)["identifier"]),
                bb.finding.conclusion,
            )
            for bb in r.batches
        )

    assert summary(runs[0]) == summary(runs[1])
