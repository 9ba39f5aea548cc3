"""A formulation batch read from a Bundle (SPEC section 5, docs/formulation-qc.md): each measure read and
converted to labinterp's unit, the particle count, the components, the qualitative findings; an unusable
Observation is left out with a Problem that names it and never quotes free text, and the batch's other measures
are still read; a batch found through its specimen only; a patient's Observation is never a batch's."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from labinterp.errors import BundleError
from labinterp.extract.batch import BatchInput, extract_batch, is_batch_resource, split_batches
from labinterp.extract.batch_facts import BatchRecord
from labinterp.extract.bundle import _entries, _index
from labinterp.knowledge import Knowledge, load_knowledge
from labinterp.knowledge.loader import package_mappings_dir
from tests.data.make_batches import PH74, QC, Batch, comp_qty, comp_text, elapsed, qty

SITE = package_mappings_dir() / "sites" / "example-compounding-lab"
EXAMPLES = Path(__file__).resolve().parents[2] / "service" / "labinterp" / "examples" / "batches.json"


@pytest.fixture(scope="module")
def qk() -> Knowledge:
    return load_knowledge()


@pytest.fixture(scope="module")
def lab_k() -> Knowledge:
    return load_knowledge(SITE)


def new_batch(bid: str = "b1") -> tuple[Batch, str]:
    b = Batch(bid, "KMS-01", "Ketoprofen microspheres 10 %", "LOT-1", "2026-08-28T10:00:00+02:00")
    return b, b.specimen("s1", "microspheres, batch sample", b.made)


def bundle_of(*batches: Batch, extra: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    entries = [e for b in batches for e in b.entries()]
    entries += [{"fullUrl": f"http://example.org/fhir/{r['resourceType']}/{r['id']}", "resource": r} for r in extra or []]
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def read(b: Batch, k: Knowledge, extra: list[dict[str, Any]] | None = None) -> BatchRecord:
    found, problems = split_batches(bundle_of(b, extra=extra))
    assert not problems and len(found) == 1
    return extract_batch(found[0], k)


def only(record: BatchRecord, measure: str) -> Any:
    values = record.of(measure)
    assert len(values) == 1, (measure, record.values, record.problems)
    return values[0]


# --- each measure ------------------------------------------------------------------------------------------


def test_batch_identity(qk: Knowledge) -> None:
    b, sid = new_batch()
    b.obs("zeta-potential", "Zeta potential", b.made, sid, qty(-12.5, "mV"))
    r = read(b, qk)
    assert (r.product_system, r.product_code, r.product_name, r.lot) == (
        "urn:example:compounding-lab:products",
        "KMS-01",
        "Ketoprofen microspheres 10 %",
        "LOT-1",
    )
    assert r.batch.reference == "Substance/b1" and [s.reference for s in r.specimens] == ["Specimen/b1-s1"]
    zeta = only(r, "zeta_potential")
    assert zeta.value == -12.5 and zeta.unit == "mV"  # signed: a negative zeta potential is a value
    assert zeta.time is not None and zeta.status == "final" and not r.problems


@pytest.mark.parametrize(
    ("value", "unit", "um"), [(148.6, "um", 148.6), (0.152, "mm", 152.0), (152000.0, "nm", 152.0), (0.0152, "cm", 152.0)]
)
def test_volume_mean_diameter_in_micrometres(qk: Knowledge, value: float, unit: str, um: float) -> None:
    b, sid = new_batch()
    b.obs("volume-mean-diameter", "VMD", b.made, sid, qty(value, unit, 6))
    v = only(read(b, qk), "volume_mean_diameter")
    assert v.value == pytest.approx(um) and v.unit == "um" and v.original == f"{value:g} {unit}"


def test_unit_spelling_without_code(qk: Knowledge) -> None:
    b, sid = new_batch()
    b.obs("volume-mean-diameter", "VMD", b.made, sid, {"value": 150.0, "unit": "µm"})
    assert only(read(b, qk), "volume_mean_diameter").value == 150.0


def test_release_time_in_hours(qk: Knowledge) -> None:
    b, sid = new_batch()
    b.obs("drug-released", "Released", b.made, sid, qty(20.0, "%"), [elapsed(1.5, "min"), comp_text("medium", PH74)])
    b.obs("drug-released", "Released", b.made, sid, qty(90.0, "%"), [comp_qty("elapsed-time", 1, "d")])
    b.obs("drug-released", "Released", b.made, sid, qty(40.0, "%"), [comp_qty("elapsed-time", 4, "h")])
    r = read(b, qk)
    got = sorted((v.elapsed_h, v.value, v.medium) for v in r.of("drug_released"))
    assert got == [(pytest.approx(1.5), 20.0, PH74), (4.0, 40.0, ""), (24.0, 90.0, "")]
    assert not r.problems


def test_swelling_weights_and_components(qk: Knowledge) -> None:
    b, sid = new_batch()
    b.obs(
        "swollen-weight",
        "Swollen weight",
        b.made,
        sid,
        qty(0.25, "g"),
        [
            elapsed(2),
            {"code": {"coding": [{"system": QC, "code": "medium"}]}, "valueString": "  distilled   water "},
            comp_qty("temperature", 37, "Cel"),
            comp_qty("dry-weight", 0.1, "g"),
        ],
    )
    b.obs("swelling-index", "Swelling index", b.made, sid, qty(140.0, "%"), [elapsed(0.5, "min"), comp_text("medium", PH74)])
    r = read(b, qk)
    w = only(r, "swollen_weight")
    assert (w.value, w.unit, w.elapsed_h, w.medium, w.temperature_c, w.dry_weight_mg) == (
        250.0,
        "mg",
        2.0,
        "distilled water",
        37.0,
        100.0,
    )
    si = only(r, "swelling_index")
    assert (si.value, si.elapsed_h, si.medium) == (140.0, 0.5, PH74)


@pytest.mark.parametrize(("amount", "unit", "days"), [(60, "d", 60.0), (4, "wk", 28.0), (2, "mo", 60.875), (36, "h", 1.5)])
def test_stability_storage_time_in_days(qk: Knowledge, amount: float, unit: str, days: float) -> None:
    b, sid = new_batch()
    b.obs(
        "stability-drug-content",
        "Drug content",
        b.made,
        sid,
        qty(96.1, "%"),
        [comp_qty("storage-time", amount, unit), comp_text("storage-condition", "40 ± 2 °C"), comp_qty("temperature", 40, "Cel")],
    )
    v = only(read(b, qk), "stability_drug_content")
    assert (v.value, v.unit, v.condition, v.temperature_c) == (96.1, "%", "40 ± 2 °C", 40.0)
    assert v.elapsed_d == pytest.approx(days)


def test_drug_content_in_one_unit(qk: Knowledge) -> None:
    b, sid = new_batch()
    b.obs("drug-content-actual", "Actual", b.made, sid, qty(45.6, "mg"))
    b.obs("drug-content-theoretical", "Theoretical", b.made, sid, qty(0.05, "g"))
    r = read(b, qk)
    assert (only(r, "drug_content_actual").value, only(r, "drug_content_actual").unit) == (45.6, "mg")
    assert only(r, "drug_content_theoretical").value == pytest.approx(50.0) and only(r, "drug_content_theoretical").unit == "mg"
    b, sid = new_batch()
    b.obs("drug-content-actual", "Actual", b.made, sid, qty(91.2, "mg/g"))
    b.obs("drug-content-theoretical", "Theoretical", b.made, sid, qty(10.0, "%"))
    r = read(b, qk)
    assert only(r, "drug_content_actual").value == pytest.approx(9.12) and only(r, "drug_content_actual").unit == "%"
    assert not r.problems


def test_drug_contents_that_cannot_be_compared(qk: Knowledge) -> None:
    b, sid = new_batch()
    b.obs("drug-content-actual", "Actual", b.made, sid, qty(45.6, "mg"))
    b.obs("drug-content-theoretical", "Theoretical", b.made, sid, qty(10.0, "%"))
    b.obs("entrapment-efficiency", "EE", b.made, sid, qty(88.0, "%"))
    r = read(b, qk)
    assert only(r, "drug_content_actual").unit == "mg" and r.of("drug_content_theoretical") == []
    assert len(r.problems) == 1 and "cannot be compared" in r.problems[0].what
    assert r.problems[0].where == "Observation/b1-drug-content-theoretical-002 (Bundle.entry[3])"
    assert only(r, "entrapment_efficiency").value == 88.0


def test_particle_count(qk: Knowledge) -> None:
    b, sid = new_batch()
    comps = [comp_qty("particle-diameter", d, "um") for d in (120.0, 95.5, 301.0)]
    comps.append(comp_qty("particle-diameter", 0.2, "mm"))
    comps.append({"code": {"text": "magnification"}, "valueQuantity": qty(450, "1")})  # not a diameter: not read
    b.obs("particle-size-microscopy", "Count", b.made, sid, components=comps, status="preliminary")
    r = read(b, qk)
    assert len(r.counts) == 1 and not r.problems
    count = r.counts[0]
    assert count.diameters_um == pytest.approx((120.0, 95.5, 301.0, 200.0))
    assert count.status == "preliminary" and "um" in count.original_unit and "mm" in count.original_unit


def test_particle_count_with_a_bad_diameter_is_left_out(qk: Knowledge) -> None:
    b, sid = new_batch()
    comps = [comp_qty("particle-diameter", 120.0, "um"), comp_qty("particle-diameter", 3.0, "furlong")]
    b.obs("particle-size-microscopy", "Count", b.made, sid, components=comps)
    b.obs("volume-mean-diameter", "VMD", b.made, sid, qty(140.0, "um"))
    r = read(b, qk)
    assert r.counts == [] and only(r, "volume_mean_diameter").value == 140.0
    assert len(r.problems) == 1 and "component[1].valueQuantity.unit" in r.problems[0].what and "'furlong'" in r.problems[0].what
    b, sid = new_batch()
    b.obs("particle-size-microscopy", "Count", b.made, sid)
    r = read(b, qk)
    assert r.counts == [] and "no particle diameter" in r.problems[0].what


def test_qualitative_findings(qk: Knowledge) -> None:
    b, sid = new_batch()
    doc = {
        "resourceType": "DocumentReference",
        "id": "sem-img",
        "status": "current",
        "content": [{"attachment": {"contentType": "image/tiff", "title": "SEM micrographs 500x"}}],
    }
    b.obs(
        "sem",
        "SEM",
        b.made,
        sid,
        valueString="Smooth spherical particles.",
        derivedFrom=[{"reference": "DocumentReference/sem-img"}],
    )
    b.obs("xrd", "XRD", b.made, sid, valueString="Amorphous drug.")
    b.obs("ftir", "FTIR", b.made, sid, valueCodeableConcept={"text": "No interaction."})
    r = read(b, qk, extra=[doc])
    found = {(q.method, q.text, q.attachment_title) for q in r.qualitative}
    assert found == {
        ("sem", "Smooth spherical particles.", "SEM micrographs 500x"),
        ("xrd", "Amorphous drug.", ""),
        ("ftir", "No interaction.", ""),
    }
    assert r.values == [] and not r.problems


# --- problems: left out, named, never quoting free text; the other measures still read ----------------------


def test_unusable_observations_are_problems_and_the_rest_is_read(qk: Knowledge) -> None:
    b, sid = new_batch()
    b.obs("volume-mean-diameter", "VMD", b.made, sid, qty(150.0, "furlong"))  # unknown unit
    b.obs("drug-released", "Released", b.made, sid, qty(30.0, "%"), [comp_text("medium", PH74)])  # no elapsed time
    b.obs("entrapment-efficiency", "EE", b.made, sid, {"value": "high", "unit": "%"})  # not a number
    b.obs("zeta-potential", "Zeta", b.made, sid, {"value": math.nan, "unit": "mV"})  # not finite
    b.obs("swelling-index", "SI", b.made, sid, qty(10.0, "%"), [elapsed(1)])  # no medium
    b.obs("t50", "t50", b.made, sid, qty(7.0, "h"))  # derived: computed, never read
    b.obs("volume-mean-diameter", "VMD", b.made, sid, {"value": 150.0, "comparator": "<", "unit": "um", "code": "um"})
    b.obs("volume-mean-diameter", "VMD", b.made, sid)  # no value
    unknown = b.obs("zeta-potential", "Zeta", b.made, sid, qty(20.0, "mV"))
    unknown["code"] = {"coding": [{"system": "http://lab.example/x", "code": "ZP"}], "text": "Zeta of Jane Roe's batch"}
    b.obs("drug-released", "Released", b.made, sid, qty(45.0, "%"), [elapsed(4)])  # fine
    b.obs("volume-mean-diameter", "VMD", b.made, sid, qty(0.15, "mm"))  # fine
    r = read(b, qk)
    assert [(v.measure, v.value) for v in r.values] == [("drug_released", 45.0), ("volume_mean_diameter", pytest.approx(150.0))]
    whats = {p.where.split(" ")[0].removeprefix("Observation/b1-"): p.what for p in r.problems}
    assert "unknown unit 'furlong'" in whats["volume-mean-diameter-001"]
    assert "no time since the start of the test" in whats["drug-released-002"]
    assert "expected a number" in whats["entrapment-efficiency-003"]
    assert "not a finite number" in whats["zeta-potential-004"]
    assert "no medium" in whats["swelling-index-005"]
    assert "computed by labinterp" in whats["t50-006"]
    assert "exact value" in whats["volume-mean-diameter-007"]
    assert "no value" in whats["volume-mean-diameter-008"]
    assert "not a formulation QC code" in whats["zeta-potential-009"] and "'ZP'" in whats["zeta-potential-009"]
    assert len(r.problems) == 9
    for p in r.problems:
        assert p.where.startswith("Observation/b1-") and "(Bundle.entry[" in p.where and p.source is not None
        assert "Jane" not in p.what and "Roe" not in p.what


def test_free_text_is_never_quoted(qk: Knowledge) -> None:
    b, sid = new_batch()
    b.obs("volume-mean-diameter", "VMD", b.made, sid, {"value": 150.0, "unit": "measured by John Smith"})
    b.obs("drug-released", "Released", b.made, sid, {"value": "about forty per cent", "unit": "%"}, [elapsed(1)])
    r = read(b, qk)
    assert len(r.problems) == 2
    assert all("John" not in p.what and "forty" not in p.what for p in r.problems)


def test_statuses(qk: Knowledge) -> None:
    b, sid = new_batch()
    b.obs("zeta-potential", "Zeta", b.made, sid, qty(20.0, "mV"), status="preliminary")
    b.obs("zeta-potential", "Zeta", b.made, sid, qty(21.0, "mV"), status="entered-in-error")
    b.obs("zeta-potential", "Zeta", b.made, sid, qty(22.0, "mV"), status="cancelled")
    b.obs("zeta-potential", "Zeta", b.made, sid, qty(23.0, "mV"), status="bogus")
    b.obs("volume-mean-diameter", "VMD", b.made, sid, dataAbsentReason={"text": "instrument fault"})
    r = read(b, qk)
    assert [(v.value, v.status) for v in r.values] == [(20.0, "preliminary")]
    assert len(r.problems) == 1 and "not a FHIR Observation status" in r.problems[0].what


def test_site_code(qk: Knowledge, lab_k: Knowledge) -> None:
    b, sid = new_batch()
    ee = b.obs("entrapment-efficiency", "EE", b.made, sid, qty(82.0, "%"))
    ee["code"] = {"coding": [{"system": "urn:example:compounding-lab:tests", "code": "EE-UV"}]}
    assert only(read(b, lab_k), "entrapment_efficiency").value == 82.0
    r = read(b, qk)  # without the site's mapping the code is unknown
    assert r.values == [] and "mapped in the site's QC settings" in r.problems[0].what


# --- which resources are a batch's ---------------------------------------------------------------------------


def test_batch_found_via_specimen_only(qk: Knowledge) -> None:
    b, sid = new_batch()
    b.obs("volume-mean-diameter", "VMD", b.made, sid, qty(150.0, "um"), focus=False)
    r = read(b, qk)
    assert only(r, "volume_mean_diameter").value == 150.0


def test_patient_observation_is_not_a_batch_resource(qk: Knowledge) -> None:
    b, sid = new_batch()
    b.obs("volume-mean-diameter", "VMD", b.made, sid, qty(150.0, "um"))
    patient = {"resourceType": "Patient", "id": "p1"}
    theirs = {
        "resourceType": "Observation",
        "id": "p1-mg",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "19123-9"}]},
        "subject": {"reference": "Patient/p1"},
        "focus": [{"reference": "Substance/b1"}],
        "specimen": {"reference": f"Specimen/{sid}"},
        "valueQuantity": qty(1.9, "mg/dL"),
    }
    bundle = bundle_of(b, extra=[patient, theirs])
    found, problems = split_batches(bundle)
    assert not problems and len(found) == 1
    assert [ref.id for _res, ref in found[0].observations] == ["b1-volume-mean-diameter-001"]
    ordered, urls = _entries("collection", bundle["entry"], [])
    index, _ = _index(ordered, urls)
    claimed = {res["id"] for res, _ref, _w in ordered if is_batch_resource(res, index)}
    assert claimed == {"b1", "b1-s1", "b1-volume-mean-diameter-001"}


def test_a_substance_nobody_points_at_is_no_batch_and_a_missing_one_is_a_problem() -> None:
    lone = {"resourceType": "Substance", "id": "excipient", "code": {"text": "lactose"}}
    orphan = {
        "resourceType": "Observation",
        "id": "orphan",
        "status": "final",
        "code": {"coding": [{"system": QC, "code": "zeta-potential"}]},
        "focus": [{"reference": "Substance/missing"}],
        "valueQuantity": qty(20.0, "mV"),
    }
    found, problems = split_batches(bundle_of(extra=[lone, orphan]))
    assert found == []
    assert len(problems) == 1 and problems[0].where == "Observation/orphan (Bundle.entry[1])"
    assert "not in this bundle" in problems[0].what


def test_not_a_bundle() -> None:
    with pytest.raises(BundleError):
        split_batches({"resourceType": "Observation"})
    with pytest.raises(BundleError):
        split_batches([])


def test_two_batches_are_kept_apart(qk: Knowledge) -> None:
    one, s1 = new_batch("b1")
    two, s2 = new_batch("b2")
    one.obs("zeta-potential", "Zeta", one.made, s1, qty(20.0, "mV"))
    two.obs("zeta-potential", "Zeta", two.made, s2, qty(30.0, "mV"), focus=False)
    found, problems = split_batches(bundle_of(one, two))
    assert not problems
    by_ref = {bi.substance_ref.reference: bi for bi in found}
    assert isinstance(by_ref["Substance/b2"], BatchInput)
    assert [v.value for v in extract_batch(by_ref["Substance/b1"], qk).values] == [20.0]
    assert [v.value for v in extract_batch(by_ref["Substance/b2"], qk).values] == [30.0]


# --- the example batches --------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["package", "site"])
def test_examples_all_extract(qk: Knowledge, lab_k: Knowledge, which: str) -> None:
    k = qk if which == "package" else lab_k
    bundle = json.loads(EXAMPLES.read_text(encoding="utf-8"))
    found, problems = split_batches(bundle)
    assert not problems
    records = {r.batch.id: r for r in (extract_batch(bi, k) for bi in found)}
    assert set(records) == {"kms-01-2608a", "kms-01-2609b", "kms-01-2610a", "dms-02-2609a"}
    for r in records.values():
        assert not r.problems, r.problems
        assert r.values and r.counts and r.qualitative and r.lot
    good, bad, partial = records["kms-01-2608a"], records["kms-01-2609b"], records["kms-01-2610a"]
    assert len(good.counts[0].diameters_um) == 100 and all(1 <= d <= 1000 for d in good.counts[0].diameters_um)
    assert sum(d > 1000 for d in bad.counts[0].diameters_um) >= 3
    assert {v.condition for v in good.of("stability_drug_content")} == {"27 ± 2 °C room", "40 ± 2 °C", "refrigerated 2–8 °C"}
    assert max(v.elapsed_d or 0 for v in good.of("stability_drug_content")) == 60.0
    assert max(v.elapsed_d or 0 for v in partial.of("stability_drug_content")) == 30.0
    assert {v.medium for v in good.of("swollen_weight")} == {
        "distilled water",
        "pH 1.2 hydrochloric acid buffer",
        "pH 4.5 acetate buffer",
        PH74,
    }
    assert only(partial, "volume_mean_diameter").original.endswith("mm")
    assert max(v.elapsed_h or 0 for v in bad.of("drug_released")) == 24.0  # sent in minutes
    assert records["dms-02-2609a"].product_code == "DMS-02" and k.qc_product(
        records["dms-02-2609a"].product_system, "KMS-01"
    ) is (None if which == "package" else k.qc_product("urn:example:compounding-lab:products", "KMS-01"))


def test_examples_are_reproducible() -> None:
    from tests.data.make_batches import bundle

    assert json.loads(EXAMPLES.read_text(encoding="utf-8")) == bundle()
    assert EXAMPLES.stat().st_size < 300_000


def test_the_documented_example_reads_without_problems(qk: Knowledge) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "formulation-qc.md").read_text(encoding="utf-8")
    block = doc.split("```json\n", 1)[1].split("\n```", 1)[0]
    found, problems = split_batches(json.loads(block))
    assert not problems and len(found) == 1
    r = extract_batch(found[0], qk)
    assert not r.problems, r.problems
    assert {v.measure for v in r.values} == {
        "volume_mean_diameter",
        "drug_content_actual",
        "drug_content_theoretical",
        "swollen_weight",
        "drug_released",
        "stability_drug_content",
        "zeta_potential",
    }
    assert only(r, "drug_released").elapsed_h == 12.0 and only(r, "zeta_potential").status == "preliminary"
    assert r.counts[0].diameters_um == (131.2, 97.4, 176.9)
    assert [(q.method, q.attachment_title) for q in r.qualitative] == [("sem", "SEM micrographs, 500x and 2000x")]
