"""Extraction: bundle shapes, statuses, comparators, units, dates, references, medications; bad input
names what and where."""

from __future__ import annotations

from typing import Any

import pytest

from labinterp.errors import BundleError
from labinterp.extract import split_bundle
from labinterp.extract.fhirtime import parse_fhir_time
from labinterp.knowledge import Knowledge
from tests.builders import ATC, LZD, MG, RXNORM, SCR, P, lzd_site
from tests.conftest import record_of

WHEN = "2026-01-15T09:00:00+01:00"


@pytest.mark.parametrize("btype", ["collection", "searchset", "transaction", "batch"])
def test_accepted_bundle_types(k: Knowledge, btype: str) -> None:
    p = P("e1", "male", "1960-01-01", "")
    p.lab(MG, 1.3, "mg/dL", WHEN)
    bundle = p.bundle()
    bundle["type"] = btype
    assert len(record_of(bundle, k).measurements) == 1


@pytest.mark.parametrize(
    ("data", "where", "what"),
    [
        ([], "input", "expected a FHIR Bundle"),
        ({"resourceType": "Patient", "id": "x"}, "input", "expected resourceType 'Bundle', found 'Patient'"),
        ({"resourceType": "Bundle", "type": "document", "entry": []}, "Bundle.type", "'document' is not one of"),
        ({"resourceType": "Bundle", "type": "collection", "entry": {}}, "Bundle.entry", "must be a list"),
        ({"resourceType": "Bundle", "type": "collection", "entry": [{"fullUrl": "x"}]}, "Bundle.entry[0]", "no resource"),
        (
            {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"id": "a"}}]},
            "Bundle.entry[0].resource",
            "no resourceType",
        ),
    ],
)
def test_bundle_errors(data: Any, where: str, what: str) -> None:
    with pytest.raises(BundleError) as exc:
        split_bundle(data)
    assert exc.value.where == where and what in exc.value.what


def test_references_resolved_and_checked() -> None:
    """A subject that cannot be resolved is a Problem of the Bundle (whose it is cannot be told), not an error
    that blocks every other resource; the strict pipeline still fails on it (test_pipeline)."""
    p = P("e2", "male", "1960-01-01", "")
    obs = p.lab(MG, 1.3, "mg/dL", WHEN)
    obs["subject"] = {"reference": "http://example.org/fhir/Patient/e2/_history/1"}
    parsed = split_bundle(p.bundle())
    assert len(parsed.patients[0].resources) == 1 and not parsed.problems
    obs["subject"] = {"reference": "Patient/nobody"}
    parsed = split_bundle(p.bundle())
    assert not parsed.patients[0].resources
    assert [(x.where, x.what) for x in parsed.problems] == [
        (
            f"Observation/{obs['id']} (Bundle.entry[1]) subject.reference",
            "is not a resource in this bundle (a Patient not included, or a conditional or logical reference): "
            "cannot tell whose result this is",
        )
    ]
    del obs["subject"]
    parsed = split_bundle(p.bundle())
    assert "subject.reference is missing" in parsed.problems[0].what and not parsed.patients[0].resources


def test_several_patients_in_one_bundle(k: Knowledge) -> None:
    a, b = P("a", "male", "1960-01-01", ""), P("b", "female", "1970-01-01", "")
    a.lab(MG, 1.3, "mg/dL", WHEN)
    b.lab(MG, 2.0, "mg/dL", WHEN)
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": a.bundle()["entry"] + b.bundle()["entry"]}
    parsed = split_bundle(bundle)
    assert [pi.patient_ref.reference for pi in parsed.patients] == ["Patient/a", "Patient/b"]
    assert all(len(pi.resources) == 1 for pi in parsed.patients)


def test_statuses(k: Knowledge) -> None:
    p = P("e3", "male", "1960-01-01", "")
    p.lab(MG, 0.9, "mg/dL", WHEN, status="entered-in-error")
    p.lab(MG, 1.0, "mg/dL", WHEN, status="cancelled")
    p.lab(MG, 2.9, "mg/dL", WHEN, status="preliminary")
    r = record_of(p.bundle(), k)
    assert [m.value for m in r.measurements] == [2.9] and r.measurements[0].preliminary
    assert sorted(i.why.split(":")[0] for i in r.ignored) == ["status cancelled", "status entered-in-error"]
    q = P("e4", "male", "1960-01-01", "")
    q.lab(MG, 1.0, "mg/dL", WHEN, status="bogus")
    assert "'bogus' is not an Observation status" in record_of(q.bundle(), k).problems[0].what


def test_comparator_kept(k: Knowledge, site_k: Knowledge) -> None:
    p = P("e5", "male", "1960-01-01", "")
    p.lab(lzd_site(), 0.4, "mg/L", WHEN, comparator="<", kind="lzd")
    m = record_of(p.bundle(), site_k).measurements[0]
    assert (m.comparator, m.value, m.original) == ("<", 0.4, "<0.4 mg/L")


@pytest.mark.parametrize(
    ("mutate", "where", "what"),
    [
        (
            lambda o: o["valueQuantity"].update(unit="g/furlong", code="g/furlong"),
            "valueQuantity.unit",
            "unknown unit 'g/furlong' for magnesium",
        ),
        (lambda o: o["valueQuantity"].update(value="1.3"), "valueQuantity.value", "expected a number"),
        (lambda o: o["valueQuantity"].update(comparator="~"), "valueQuantity.comparator", "'~' is not one of"),
        (lambda o: (o["valueQuantity"].pop("unit"), o["valueQuantity"].pop("code")), "valueQuantity", "has no unit"),
        (
            lambda o: (o.pop("valueQuantity"), o.update(valueString="low")),
            "valueString",
            "expected a number with a unit for magnesium (e.g. '<0.4 mg/L'), found 'low'",
        ),
        (lambda o: o.update(effectiveDateTime="2026-13-01"), "effectiveDateTime", "not a valid date"),
        (lambda o: o.update(effectiveDateTime="2026-01-15T09:00:00"), "effectiveDateTime", "no time zone"),
        (lambda o: o.update(effectiveDateTime="yesterday"), "effectiveDateTime", "not a FHIR date"),
    ],
)
def test_bad_observation_named(k: Knowledge, mutate: Any, where: str, what: str) -> None:
    p = P("e6", "male", "1960-01-01", "")
    obs = p.lab(MG, 1.3, "mg/dL", WHEN)
    mutate(obs)
    r = record_of(p.bundle(), k)
    assert len(r.problems) == 1
    assert r.problems[0].where == f"Observation/{obs['id']} {where}" and what in r.problems[0].what


def test_data_absent_is_ignored_not_an_error(k: Knowledge) -> None:
    p = P("e7", "male", "1960-01-01", "")
    obs = p.lab(MG, 1.3, "mg/dL", WHEN)
    del obs["valueQuantity"]
    obs["dataAbsentReason"] = {"text": "sample haemolysed"}
    r = record_of(p.bundle(), k)
    assert not r.problems and not r.measurements and "dataAbsentReason" in r.ignored[0].why


@pytest.mark.parametrize(
    ("gender", "birth", "where", "what", "sex", "born"),
    [
        ("male", "1960-02-30", "Patient/e8 birthDate", "not a valid FHIR date", "male", None),
        ("male", "30/01/1960", "Patient/e8 birthDate", "not a valid FHIR date", "male", None),
        ("man", "1960-01-01", "Patient/e8 gender", "is not one of female/male/other/unknown", "unknown", "1960-01-01"),
        ("male", "1960-01-30", None, None, "male", "1960-01-30"),  # the neighbour that is fine
    ],
)
def test_bad_patient_fields_make_the_fact_unknown(
    k: Knowledge, gender: str, birth: str, where: str | None, what: str | None, sex: str, born: str | None
) -> None:
    """Before: ResourceError, the whole Bundle refused. Now: that fact unknown, a Problem naming it, the
    patient's results still read. The birth date is never repeated in the message (it identifies)."""
    p = P("e8", gender, birth, "")
    p.lab(MG, 1.3, "mg/dL", WHEN)
    r = record_of(p.bundle(), k)
    assert r.patient.sex == sex and (str(r.patient.birth_date) if r.patient.birth_date else None) == born
    assert len(r.measurements) == 1
    if where is None:
        assert not r.problems
    else:
        assert [x.where for x in r.problems] == [where] and what in r.problems[0].what
        assert birth not in r.problems[0].line


def test_fhir_times() -> None:
    assert parse_fhir_time("2026", "x").precision == "year"
    assert parse_fhir_time("2026-01", "x").precision == "month"
    t = parse_fhir_time("2026-01-15T08:00:00.123+01:00", "x")
    assert t.has_time and t.start.isoformat() == "2026-01-15T07:00:00.123000+00:00"


def test_unrecognized_observations_are_skipped(k: Knowledge) -> None:
    p = P("e10", "male", "1960-01-01", "")
    p.lab({"coding": [{"system": "http://loinc.org", "code": "718-7"}], "text": "Hemoglobin"}, 13.0, "g/dL", WHEN)
    r = record_of(p.bundle(), k)
    assert not r.measurements and not r.problems and not r.genotypes


def test_medications_by_atc_rxnorm_name_and_reference(k: Knowledge) -> None:
    p = P("e11", "male", "1960-01-01", "")
    p.med(
        "MedicationRequest", {"coding": [{"system": RXNORM, "code": "198202"}]}, when="2026-01-01T10:00:00+01:00"
    )  # rifampin 300 mg
    p.med("MedicationStatement", {"text": "Zyvox 600 mg"}, when="2026-01-10")
    p.med("MedicationAdministration", LZD, when="2026-01-15T08:00:00+01:00", dose_mg=600)
    p.med("MedicationStatement", {"coding": [{"system": ATC, "code": "C03CA01"}]}, status="entered-in-error")
    bundle = p.bundle()
    ref_med = {
        "resourceType": "MedicationStatement",
        "id": "e11-ref",
        "status": "active",
        "subject": {"reference": "Patient/e11"},
        "medicationReference": {"reference": "#m1"},
        "contained": [{"resourceType": "Medication", "id": "m1", "code": {"coding": [{"system": ATC, "code": "C01AA05"}]}}],
    }
    bundle["entry"].append({"fullUrl": "urn:uuid:0d7f0c8e-0000-4000-8000-000000000001", "resource": ref_med})
    r = record_of(bundle, k)
    drugs = [sorted(m.drugs) for m in r.medications]
    assert drugs == [["rifampicin"], ["linezolid"], ["linezolid"], ["digoxin"]]
    admin = r.medications[2]
    assert admin.dose_mg == 600 and admin.administered is not None and admin.administered.has_time
    assert "C01AA05" in r.medications[3].atc and any("entered in error" in i.why for i in r.ignored)


def test_dosage_interval_from_order(k: Knowledge) -> None:
    p = P("e12", "male", "1960-01-01", "")
    p.med("MedicationRequest", LZD, when="2026-01-01T10:00:00+01:00", dose_mg=600, every_h=12)
    m = record_of(p.bundle(), k).medications[0]
    assert (m.dose_mg, m.interval_h) == (600, 12)


def test_creatinine_units(k: Knowledge) -> None:
    p = P("e13", "male", "1960-01-01", "")
    p.lab(SCR, 1.0, "mg/dL", WHEN)
    r = record_of(p.bundle(), k)
    assert r.measurements[0].unit == "mg/dL"
    assert k.unit_factor("creatinine", "umol/L") == pytest.approx(1 / 88.42)
    assert k.unit_factor("creatinine", "µmol/L") == pytest.approx(1 / 88.42)
    assert k.unit_factor("urine_creatinine", "mmol/L") == pytest.approx(11.31, abs=0.001)
    assert k.unit_factor("calcium_total", "mmol/L") == pytest.approx(4.008)
    assert k.unit_factor("magnesium", "mL/min") is None
