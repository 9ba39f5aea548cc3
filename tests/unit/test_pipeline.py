"""The pipeline and composition: deterministic, idempotent identifiers; changed inputs replace, not
duplicate; Provenance names versioned sources; strict and lenient handling of broken input."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from labinterp.errors import ResourceError
from labinterp.knowledge import Knowledge
from labinterp.pipeline import interpret_bundle
from tests.builders import MG, SCR, P, lzd_site
from tests.conftest import NOW

WHEN = "2026-01-15T08:00:00+01:00"


def example() -> P:
    p = P("x1", "female", "1958-03-10", "")
    p.doses("2026-01-11T20:00:00+01:00", 7)
    p.lab(lzd_site(), 1.5, "mg/L", WHEN, kind="lzd")
    p.lab(SCR, 0.9, "mg/dL", WHEN)
    p.genotype("CYP3A5", "CYP3A5 *1/*3")
    p.lab(MG, 1.1, "mg/dL", WHEN)
    return p


def by_kind(bundle: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for e in bundle["entry"]:
        r = e["resource"]
        ident = r.get("identifier", [])
        kind = ident[1]["value"].split(":")[0] if len(ident) > 1 else r["resourceType"]
        out[kind] = e
    return out


def test_same_input_same_output(site_k: Knowledge) -> None:
    a = interpret_bundle(example().bundle(), site_k, NOW).bundle
    b = interpret_bundle(example().bundle(), site_k, NOW).bundle
    assert a == b


def test_ids_depend_on_inputs_not_on_time(site_k: Knowledge) -> None:
    a = by_kind(interpret_bundle(example().bundle(), site_k, NOW).bundle)
    b = by_kind(interpret_bundle(example().bundle(), site_k, NOW + timedelta(days=3)).bundle)
    assert {k: e["fullUrl"] for k, e in a.items()} == {k: e["fullUrl"] for k, e in b.items()}
    assert a["linezolid"]["resource"]["issued"] != b["linezolid"]["resource"]["issued"]


def test_changed_input_new_content_id_same_series(site_k: Knowledge) -> None:
    p = example()
    a = by_kind(interpret_bundle(p.bundle(), site_k, NOW).bundle)
    trough = next(r for r in p.resources if r["id"].startswith("x1-lzd"))
    trough["valueQuantity"]["value"] = 1.6
    trough["meta"]["versionId"] = "2"
    b = by_kind(interpret_bundle(p.bundle(), site_k, NOW).bundle)
    la, lb = a["linezolid"]["resource"], b["linezolid"]["resource"]
    assert la["identifier"][0] != lb["identifier"][0]  # a new report...
    assert la["identifier"][1] == lb["identifier"][1]  # ...in the same series: it replaces the old one
    assert a["magnesium"]["fullUrl"] == b["magnesium"]["fullUrl"]  # the magnesium report did not change
    prov = b["Provenance"]["resource"]
    assert any(e["what"]["reference"] == f"Observation/{trough['id']}/_history/2" for e in prov["entity"])


def test_content_without_version_is_hashed(site_k: Knowledge) -> None:
    p = example()
    for r in p.resources:
        r.pop("meta", None)
    a = by_kind(interpret_bundle(p.bundle(), site_k, NOW).bundle)
    q = copy.deepcopy(p)
    next(r for r in q.resources if r["id"].startswith("x1-lzd"))["valueQuantity"]["value"] = 1.7
    b = by_kind(interpret_bundle(q.bundle(), site_k, NOW).bundle)
    assert a["linezolid"]["fullUrl"] != b["linezolid"]["fullUrl"]


def test_ruleset_version_changes_ids(site_k: Knowledge) -> None:
    a = by_kind(interpret_bundle(example().bundle(), site_k, NOW).bundle)
    b = by_kind(interpret_bundle(example().bundle(), replace(site_k, ruleset_version="9999.1"), NOW).bundle)
    assert a["linezolid"]["fullUrl"] != b["linezolid"]["fullUrl"]


def test_conditional_creates_and_provenance(site_k: Knowledge) -> None:
    bundle = interpret_bundle(example().bundle(), site_k, NOW).bundle
    assert bundle["type"] == "transaction"
    urls = []
    for e in bundle["entry"]:
        r, req = e["resource"], e["request"]
        if r["resourceType"] == "Provenance":
            assert req == {"method": "PUT", "url": f"Provenance/{r['id']}"}
            prov = r
        else:
            assert (
                req["method"] == "POST"
                and req["ifNoneExist"] == f"identifier={r['identifier'][0]['system']}|{r['identifier'][0]['value']}"
            )
            urls.append(e["fullUrl"])
    device = bundle["entry"][0]
    assert device["resource"]["resourceType"] == "Device"
    assert {t["reference"] for t in prov["target"]} == set(urls[1:])
    assert prov["agent"][0]["who"]["reference"] == device["fullUrl"]
    assert all(e["role"] == "derivation" for e in prov["entity"])
    genotype = next(r["id"] for r in example().resources if r["id"].startswith("x1-gt"))
    assert {f"Observation/{genotype}/_history/1", "Patient/x1/_history/1"} <= {e["what"]["reference"] for e in prov["entity"]}


def test_default_leaves_out_and_reports_strict_raises(site_k: Knowledge) -> None:
    """One odd lab value never blocks the patient's other reports (the default); strict keeps all-or-nothing."""
    p = example()
    bad = p.lab(MG, 1.0, "furlongs", WHEN)
    with pytest.raises(ResourceError) as exc:
        interpret_bundle(p.bundle(), site_k, NOW, strict=True)
    assert exc.value.where == f"Observation/{bad['id']} valueQuantity.unit" and "furlongs" in exc.value.what
    result = interpret_bundle(p.bundle(), site_k, NOW)
    assert [x.where for x in result.problems] == [f"Observation/{bad['id']} valueQuantity.unit"]
    kinds = by_kind(result.bundle)
    report = kinds["linezolid"]["resource"]
    assert "not interpreted" in report["text"]["div"] and "furlongs" in report["text"]["div"]
    assert {"linezolid", "genotype", "magnesium", "Provenance"} <= set(kinds)  # the good magnesium is still read
    assert result.bundle == interpret_bundle(p.bundle(), site_k, NOW, strict=False).bundle


def two_patients(bad: Any) -> dict[str, Any]:
    """Patient x1 (the full example) and patient y1 with one magnesium, then `bad` applied to the Bundle."""
    a = example()
    b = P("y1", "male", "1950-05-05", "")
    b.lab(MG, 1.1, "mg/dL", WHEN)
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": a.bundle()["entry"] + b.bundle()["entry"]}
    bad(bundle)
    return bundle


def _resource(bundle: dict[str, Any], rid: str) -> dict[str, Any]:
    return next(e["resource"] for e in bundle["entry"] if e["resource"].get("id") == rid)


def _orphan(bundle: dict[str, Any]) -> None:
    _resource(bundle, "y1-lab1")["subject"] = {"reference": "Patient/nobody"}


def _no_subject(bundle: dict[str, Any]) -> None:
    del _resource(bundle, "x1-lab9")["subject"]  # x1's creatinine


def _no_id(bundle: dict[str, Any]) -> None:
    entry = next(e for e in bundle["entry"] if e["resource"].get("id") == "y1-lab1")
    del entry["resource"]["id"], entry["fullUrl"]


def _bad_gender(bundle: dict[str, Any]) -> None:
    _resource(bundle, "y1")["gender"] = "M"


def _bad_birth(bundle: dict[str, Any]) -> None:
    _resource(bundle, "y1")["birthDate"] = "05/05/1950"


@pytest.mark.parametrize(
    ("bad", "where", "what", "y1_writes"),
    [
        (
            _orphan,
            "Observation/y1-lab1 (Bundle.entry[13]) subject.reference",
            "is not a resource in this bundle",
            False,
        ),
        (_no_subject, "Observation/x1-lab9 (Bundle.entry[9])", "subject.reference is missing", True),
        (_no_id, "Observation (Bundle.entry[13])", "has neither an id nor a fullUrl", False),
        (_bad_gender, "Patient/y1 gender", "is not one of female/male/other/unknown", True),
        (_bad_birth, "Patient/y1 birthDate", "not a valid FHIR date", True),
    ],
)
def test_a_resource_level_failure_spoils_only_its_resource(
    site_k: Knowledge, bad: Any, where: str, what: str, y1_writes: bool
) -> None:
    """Before: each of these aborted the whole Bundle (ResourceError, exit 2), every patient unwritten."""
    bundle = two_patients(bad)
    with pytest.raises(ResourceError, match=what):
        interpret_bundle(bundle, site_k, NOW, strict=True)
    result = interpret_bundle(bundle, site_k, NOW)
    assert [x.where for x in result.problems] == [where] and what in result.problems[0].what
    x1, y1 = result.patients
    assert {"linezolid", "genotype", "magnesium"} <= {w.kind for w in x1.written}  # the other patient is untouched
    assert ("magnesium" in {w.kind for w in y1.written}) is y1_writes
    assert "05/05/1950" not in result.problems[0].line


def test_patient_facts_unknown_are_said(site_k: Knowledge) -> None:
    bundle = two_patients(_bad_gender)
    result = interpret_bundle(bundle, site_k, NOW)
    y1 = result.patients[1].findings.record
    assert y1.patient.sex == "unknown" and [x.where for x in y1.problems] == ["Patient/y1 gender"]
    mg = next(w for w in result.patients[1].written if w.kind == "magnesium").resource
    assert "Patient/y1 gender" in mg["text"]["div"]


def test_nothing_interpretable_writes_nothing(site_k: Knowledge) -> None:
    p = P("x2", "male", "1960-01-01", "")
    assert interpret_bundle(p.bundle(), site_k, NOW).bundle == {"resourceType": "Bundle", "type": "transaction"}


def test_narrative_is_escaped(site_k: Knowledge) -> None:
    p = P("x3", "male", "1960-01-01", "")
    p.lab(MG, 1.3, "mg/dL", WHEN)
    p.med("MedicationStatement", {"text": "Furosemide <b>40</b> & co"}, when="2025-12-01")
    bundle = interpret_bundle(p.bundle(), site_k, NOW).bundle
    div = by_kind(bundle)["magnesium"]["resource"]["text"]["div"]
    assert "&lt;b&gt;40&lt;/b&gt; &amp; co" in div and "<b>40</b>" not in div
