"""The engine's own speed without changing what it writes (issue 10): composing without rendering gives the same
identifiers and resources as rendering at once, and rendering afterwards any subset gives the same bytes; the
faster uuid5 is uuid.uuid5; an NDJSON cohort is read patient by patient, grouped or not, as the whole file is."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from labinterp.cli.main import read_json
from labinterp.cohort.analytics import analyze, table_from_bundle, table_from_records
from labinterp.cohort.io import is_ndjson, ndjson_patients, read_cohort_file, write_cohort
from labinterp.cohort.synth import table2_patients
from labinterp.compose.ids import NAMESPACE, uuid5
from labinterp.errors import InputError
from labinterp.extract.fhirtime import parse_fhir_time
from labinterp.knowledge import Knowledge
from labinterp.pipeline import interpret_bundle, records_of
from labinterp.render.report import render_reports
from tests.builders import ATC, MG, P
from tests.conftest import NOW
from tests.golden_tool import PATIENTS


@pytest.mark.parametrize("name", ["", "a", "series\nlinezolid\nPatient/p1", "é ünïcode ✓", "x" * 500])
def test_uuid5_is_the_standard_one(name: str) -> None:
    assert uuid5(name) == str(uuid.uuid5(NAMESPACE, name))


def test_a_cached_time_is_the_parsed_time() -> None:
    first = parse_fhir_time("2026-01-15T08:00:00+01:00", "x")
    assert parse_fhir_time("2026-01-15T08:00:00+01:00", "y") == first and first.precision == "time"
    with pytest.raises(InputError):
        parse_fhir_time("2026-01-15T08:00", "Observation/o effectiveDateTime")
    with pytest.raises(InputError):  # a bad value is never cached as good
        parse_fhir_time("2026-01-15T08:00", "Observation/o effectiveDateTime")


@pytest.mark.parametrize("pid", sorted(p.stem for p in PATIENTS.glob("*.json")))
def test_composing_without_rendering_then_rendering_a_subset_gives_the_same_resources(site_k: Knowledge, pid: str) -> None:
    data = read_json(str(PATIENTS / f"{pid}.json"))
    whole = interpret_bundle(copy.deepcopy(data), site_k, NOW, validate=False)
    bare = interpret_bundle(copy.deepcopy(data), site_k, NOW, validate=False, narrative=False)
    assert [e.get("request") for e in bare.bundle.get("entry", [])] == [e.get("request") for e in whole.bundle.get("entry", [])]
    for before, after in zip(bare.patients, whole.patients, strict=True):
        assert [w.uuid for w in before.written] == [w.uuid for w in after.written]  # no identifier depends on rendering
        for w in before.written:
            if w.view is not None:
                assert "text" not in w.resource and "presentedForm" not in w.resource
        reports = [w for w in before.written if w.view is not None]
        render_reports(reports[::2], forms=True)  # any subset, afterwards
        for w, full in zip(before.written, after.written, strict=True):
            if w.view is None or w in reports[::2]:
                assert w.resource == full.resource, w.kind


def test_render_false_still_means_the_narrative_without_forms(site_k: Knowledge) -> None:
    run = interpret_bundle(read_json(str(PATIENTS / "p01.json")), site_k, NOW, validate=False, render=False)
    reports = [w.resource for p in run.patients for w in p.written if w.view is not None]
    assert reports and all("text" in r and "presentedForm" not in r for r in reports)


def _ndjson(path: Path, resources: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in resources), encoding="utf-8")
    return path


def _resources_of(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"]]


def test_a_grouped_ndjson_cohort_streams_as_the_whole_file_reads(k: Knowledge, tmp_path: Path) -> None:
    path = tmp_path / "cohort.ndjson"
    write_cohort(table2_patients(k), k, path, "ndjson")
    assert is_ndjson(path)
    groups = list(ndjson_patients(path))
    assert len(groups) == 200 and all(_resources_of(g)[0]["resourceType"] == "Patient" for g in groups)
    streamed = analyze(table_from_records((r for g in groups for r in records_of(g, k)), k), k)
    whole = analyze(table_from_bundle(read_cohort_file(path), k), k)
    assert streamed == whole


def test_an_ndjson_file_not_grouped_by_patient_is_indexed_on_disk(k: Knowledge, tmp_path: Path) -> None:
    a, b = P("a", "female", "1950-01-01", ""), P("b", "male", "1960-01-01", "")
    a.lab(MG, 1.1, "mg/dL", "2026-01-15T08:00:00+01:00")
    b.lab(MG, 2.0, "mg/dL", "2026-01-15T08:00:00+01:00")
    a.med("MedicationStatement", {"coding": [{"system": ATC, "code": "C03CA01"}]}, when="2025-12-01")
    by_type = sorted(a.resources + b.resources, key=lambda r: r["resourceType"] != "Observation")  # as a Bulk export
    index_dir = tmp_path / "index"
    index_dir.mkdir()
    groups = list(ndjson_patients(_ndjson(tmp_path / "bytype.ndjson", by_type), index_dir=str(index_dir)))
    assert [sorted(r["id"] for r in _resources_of(g)) for g in groups] == [
        sorted(r["id"] for r in a.resources),
        sorted(r["id"] for r in b.resources),
    ]
    assert not list(index_dir.iterdir())  # the index is removed when the reading ends
    one = interpret_bundle(groups[0], k, NOW, validate=False)
    whole = interpret_bundle(a.bundle(), k, NOW, validate=False)
    assert [w.uuid for w in one.patients[0].written] == [w.uuid for w in whole.patients[0].written]


def test_medications_are_added_to_the_patients_that_reference_them(tmp_path: Path) -> None:
    med = {"resourceType": "Medication", "id": "m1", "code": {"coding": [{"system": ATC, "code": "C03CA01"}]}}
    patients = [{"resourceType": "Patient", "id": pid} for pid in ("a", "b")]
    statement = {
        "resourceType": "MedicationStatement",
        "id": "s1",
        "status": "active",
        "subject": {"reference": "Patient/a"},
        "medicationReference": {"reference": "Medication/m1"},
    }
    groups = list(ndjson_patients(_ndjson(tmp_path / "m.ndjson", [patients[0], statement, med, patients[1]])))
    assert [[r["id"] for r in _resources_of(g)] for g in groups] == [["a", "s1", "m1"], ["b"]]


def test_a_broken_line_fails_before_any_patient_is_read(tmp_path: Path) -> None:
    path = tmp_path / "broken.ndjson"
    path.write_text('{"resourceType": "Patient", "id": "a"}\n[1, 2]\n', encoding="utf-8")
    stream = ndjson_patients(path)
    with pytest.raises(InputError, match="line 2"):
        next(stream)
