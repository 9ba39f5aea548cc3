"""Issue 9 point 5: a record as US EHRs and Synthea export it (tests/data/uscore: one patient, five years, ~300
resources, US Core profiles, a transaction Bundle with urn:uuid fullUrls and references) is read in full: the
linezolid, genotype, renal and magnesium reports, and the odd old results listed under "Not used" (SPEC 7: one
unusable resource is left out and named, never blocking the rest)."""

from __future__ import annotations

import copy
import importlib.util
import json
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from labinterp.extract import extract_patient, split_bundle
from labinterp.knowledge import Knowledge
from labinterp.pipeline import interpret_bundle
from tests.conftest import ROOT

DATA = ROOT / "tests" / "data" / "uscore"
RECORD = DATA / "uscore-record.json"
NOW = datetime(2025, 6, 14, 12, 0, tzinfo=UTC)  # four hours after the trough was drawn
US_CORE = "http://hl7.org/fhir/us/core/StructureDefinition/"


def record() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(RECORD.read_text(encoding="utf-8"))
    return data


def generator() -> Any:
    spec = importlib.util.spec_from_file_location("make_record", DATA / "make_record.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def find(bundle: dict[str, Any], rtype: str, code: str) -> list[dict[str, Any]]:
    return [
        e["resource"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == rtype
        and any(c.get("code") == code for c in e["resource"].get("code", {}).get("coding", []))
    ]


# --- the record is what it claims to be ------------------------------------------------------------------


def test_the_checked_in_record_is_what_the_generator_makes() -> None:
    assert generator().make() == record()  # seeded: regenerating changes nothing


def test_the_record_looks_like_a_us_core_export() -> None:
    bundle = record()
    assert bundle["type"] == "transaction"
    entries = bundle["entry"]
    assert len(entries) >= 300
    types = Counter(e["resource"]["resourceType"] for e in entries)
    for rtype in ("Patient", "Encounter", "Condition", "Immunization", "Procedure", "MedicationRequest", "DiagnosticReport"):
        assert types[rtype] >= 1, rtype
    assert types["Observation"] >= 200 and types["Encounter"] >= 20
    urls = {e["fullUrl"] for e in entries}
    assert all(u.startswith("urn:uuid:") for u in urls) and len(urls) == len(entries)
    for e in entries:
        r = e["resource"]
        assert e["request"] == {"method": "POST", "url": r["resourceType"]}
        if r["resourceType"] != "MedicationAdministration":  # US Core has no MedicationAdministration profile
            assert r["meta"]["profile"][0].startswith(US_CORE), r["resourceType"]
    text = json.dumps(bundle)
    assert set(_references(bundle)) <= urls  # every reference a urn:uuid of this Bundle
    assert "us-core-race" in text and "us-core-ethnicity" in text
    years = {e["resource"].get("effectiveDateTime", "")[:4] for e in entries} - {""}
    assert len(years) >= 5
    creatinines = find(bundle, "Observation", "2160-0") + find(bundle, "Observation", "14682-9")
    assert len(creatinines) >= 15


def _references(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = [value["reference"]] if isinstance(value.get("reference"), str) else []
        return found + [r for v in value.values() for r in _references(v)]
    if isinstance(value, list):
        return [r for v in value for r in _references(v)]
    return []


# --- the engine reads it in full -------------------------------------------------------------------------


def test_every_report_is_made_from_the_record(k: Knowledge) -> None:
    result = interpret_bundle(record(), k, NOW, render=False)
    (patient,) = result.patients
    f = patient.findings
    assert f.linezolid is not None and f.linezolid.band is not None and f.linezolid.band.interpretation == "H"
    assert f.linezolid.timing.status == "valid" and f.linezolid.trough.original == "9.6 mg/L"
    assert f.pgx is not None and set(f.pgx.genes) == {"CYP3A5"} and f.pgx.genes["CYP3A5"].stars == ("*1", "*3")
    assert f.renal is not None and f.renal.egfr is not None and 50 < f.renal.egfr < 65 and f.renal.crcl is not None
    assert f.magnesium is not None and f.magnesium.band is not None and f.magnesium.band.interpretation == "L"
    reports = {
        e["resource"]["code"]["text"] for e in result.bundle["entry"] if e["resource"]["resourceType"] == "DiagnosticReport"
    }
    assert reports == {
        "Linezolid therapeutic drug monitoring",
        "Pharmacogenetic genotype interpretation (linezolid)",
        "Renal function (estimated GFR)",
        "Serum magnesium interpretation",
    }


def test_the_odd_old_results_are_listed_and_block_nothing(k: Knowledge) -> None:
    bundle = record()
    parsed = split_bundle(bundle)
    assert not parsed.problems and len(parsed.patients) == 1
    rec = extract_patient(parsed.patients[0], parsed.medications, k, NOW)
    cancelled = find(bundle, "Observation", "19123-9")
    odd_unit = next(r for r in cancelled if r.get("valueQuantity", {}).get("unit") == "mg/100mL")
    cancelled_mg = next(r for r in cancelled if r["status"] == "cancelled")
    assert [p.where for p in rec.problems] == [f"Observation/{odd_unit['id']} valueQuantity.unit"]
    assert "unknown unit 'mg/100mL'" in rec.problems[0].what
    assert [i.source.reference for i in rec.ignored] == [f"Observation/{cancelled_mg['id']}"]
    # the old creatinine in µmol/L (a display unit, no UCUM code) is converted, not left out
    micro = next(m for m in rec.measurements if m.reported and m.reported[1] == "µmol/L")
    assert micro.analyte == "creatinine" and micro.unit == "mg/dL" and micro.value is not None
    assert 0.7 < micro.value < 1.5
    counts = Counter(m.analyte for m in rec.measurements)
    assert counts["creatinine"] >= 15 and counts["magnesium"] >= 5 and counts["weight"] >= 20
    assert counts["linezolid"] == 1
    assert sum(1 for m in rec.medications if "linezolid" in m.drugs) == 9  # the order and 8 administrations


def test_not_used_is_on_every_report(k: Knowledge) -> None:
    result = interpret_bundle(record(), k, NOW, render=False)
    assert len(result.problems) == 1
    for e in result.bundle["entry"]:
        if e["resource"]["resourceType"] == "DiagnosticReport":
            div = e["resource"]["text"]["div"]
            assert "Not used" in div and "mg/100mL" in div and "status cancelled" in div


def test_resources_with_a_fullurl_only_are_read_through_their_urn_uuid(k: Knowledge) -> None:
    """Many exporters send POST entries without resource.id: every reference is then a urn:uuid only."""
    bundle = copy.deepcopy(record())
    for e in bundle["entry"]:
        e["resource"].pop("id")
    parsed = split_bundle(bundle)
    (pinput,) = parsed.patients
    assert pinput.patient_ref.reference.startswith("urn:uuid:")
    rec = extract_patient(pinput, parsed.medications, k, NOW)
    assert len(rec.problems) == 1 and len(rec.ignored) == 1
    assert rec.of("linezolid") and rec.genotypes and len(rec.of("creatinine")) >= 15


def test_the_strict_mode_names_the_odd_result(k: Knowledge) -> None:
    from labinterp.errors import LabinterpError

    with pytest.raises(LabinterpError) as raised:
        interpret_bundle(record(), k, NOW, strict=True, render=False)
    assert "mg/100mL" in str(raised.value)
