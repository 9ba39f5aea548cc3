"""Odd shapes never crash a patient (issue 7 point 5, prober's findings): one unusable resource is left out and
named, with a plain reason; warnings never repeat a patient's name, identifier or birth date; unreadable input
exits 2 with one line; duplicates, future birth dates and unknown star alleles are Problems, never silent."""

from __future__ import annotations

import copy
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from labinterp.cli.main import cli
from labinterp.errors import BundleError, ResourceError
from labinterp.extract import split_bundle
from labinterp.knowledge import Knowledge
from labinterp.pipeline import interpret_bundle
from tests.builders import MG, SCR, P
from tests.conftest import NOW, SITE, record_of

WHEN = "2026-01-15T08:00:00+01:00"
NAME, MRN = "Zebulon Quixotic", "MRN-99887766"
EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "patients"


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args))


def _patient(pid: str = "o1") -> tuple[P, dict[str, Any], dict[str, Any]]:
    p = P(pid, "female", "1950-01-01", "")
    mg = p.lab(MG, 1.3, "mg/dL", WHEN)
    scr = p.lab(SCR, 0.9, "mg/dL", WHEN)
    return p, mg, scr


def _kinds(run: Any) -> list[str]:
    return [e["resource"]["resourceType"] for e in run.bundle["entry"]]


# --- 1. one oddly shaped field leaves that resource out (or that fact unknown), never the patient --------------


@pytest.mark.parametrize(
    ("mutate", "where", "what"),
    [
        (lambda pat, mg, scr: pat.update(name=5), "Patient/o1 name", "expected a list of objects, found a number"),
        (lambda pat, mg, scr: pat.update(name=[{"given": 7}]), None, None),  # read as no given name: nothing lost
        (lambda pat, mg, scr: pat.update(identifier=5), "Patient/o1 identifier", "expected a list of objects"),
        (lambda pat, mg, scr: pat.update(meta=["x"]), None, None),  # no versionId: the content hash versions it
        (lambda pat, mg, scr: mg.update(meta=["x"]), None, None),
        (
            lambda pat, mg, scr: mg["valueQuantity"].update(value=10**400),
            "Observation/o1-lab1 valueQuantity.value",
            "a number too large to be a magnesium result",
        ),
        # an odd identifier only means "not labinterp's earlier output": the result is read
        (lambda pat, mg, scr: mg.update(identifier=["x"]), None, None),
        (lambda pat, mg, scr: mg.update(identifier={"system": "x"}), None, None),
    ],
)
def test_odd_field_never_blocks_the_patient(site_k: Knowledge, mutate: Any, where: str | None, what: str | None) -> None:
    """Before: TypeError / AttributeError / OverflowError out of extraction: exit 1 with a traceback, a 500."""
    p, mg, scr = _patient()
    mutate(p.resources[0], mg, scr)
    run = interpret_bundle(p.bundle(), site_k, NOW, render=False)
    assert "DiagnosticReport" in _kinds(run)  # the patient's other reports are written
    if where is None:
        assert not run.problems, run.problems
        return
    assert [x.where for x in run.problems] == [where] and what in run.problems[0].what
    assert "Error" not in run.problems[0].what and "unhashable" not in run.problems[0].what  # no Python internals


def test_medication_dose_out_of_range_is_a_problem(site_k: Knowledge) -> None:
    p, _, _ = _patient()
    p.med("MedicationAdministration", {"text": "linezolid"}, when=WHEN, dose_mg=600)
    p.resources[-1]["dosage"]["dose"]["value"] = 10**400
    run = interpret_bundle(p.bundle(), site_k, NOW, render=False)
    assert [x.where for x in run.problems] == ["MedicationAdministration/o1-admi3 dosage dose.value"]
    assert "too large" in run.problems[0].what and "DiagnosticReport" in _kinds(run)


def test_a_list_where_a_code_belongs_is_named_plainly(site_k: Knowledge) -> None:
    """Before: "could not be read: TypeError: unhashable type: 'list'"."""
    p, _, _ = _patient()
    p.med("MedicationStatement", {"text": "furosemide"}, when=WHEN)
    p.resources[-1]["status"] = ["active"]
    run = interpret_bundle(p.bundle(), site_k, NOW, render=False)
    assert [(x.where, x.what) for x in run.problems] == [
        ("MedicationStatement/o1-stat3 status", "expected a text, found a list: the resource could not be read")
    ]


# --- 2. nothing with identity in a warning -------------------------------------------------------------------


def _identity_everywhere() -> dict[str, Any]:
    """A Bundle with the patient's name and identifier put into every odd field labinterp reports on."""
    p = P("z1", "female", "1950-01-01", "")
    p.resources[0]["name"] = [{"text": NAME}]
    p.resources[0]["identifier"] = [{"system": "http://hosp.example/mrn", "value": MRN}]
    p.resources[0]["gender"] = {"text": NAME}
    units = p.lab(MG, 1.3, "mg/dL", WHEN)
    units["valueQuantity"].update(unit=NAME, code=NAME)
    units2 = p.lab(SCR, 0.9, "mg/dL", WHEN)
    units2["valueQuantity"].update(unit=MRN, code=MRN)
    for field, value in [("status", NAME), ("status", MRN), ("effectiveDateTime", NAME), ("effectiveDateTime", MRN)]:
        p.lab(MG, 1.3, "mg/dL", WHEN)[field] = value
    p.lab(MG, 1.3, "mg/dL", WHEN)["valueQuantity"]["value"] = NAME
    p.lab(MG, 1.3, "mg/dL", WHEN)["valueQuantity"]["comparator"] = MRN
    p.lab(MG, 1.3, "mg/dL", WHEN)["valueQuantity"]["comparator"] = "Zebulon"
    vs = p.lab(MG, 1.3, "mg/dL", WHEN)
    del vs["valueQuantity"]
    vs["valueString"] = f"{NAME} {MRN}"
    vc = p.lab(MG, 1.3, "mg/dL", WHEN)
    del vc["valueQuantity"]
    vc["valueCodeableConcept"] = {"text": NAME}
    p.genotype("CYP3A5", text=NAME)
    p.genotype("CYP3A5", text=f"*{MRN}/*1")
    p.genotype("CYP3A5", text="*Zebulon/*1")
    orphan = p.lab(MG, 1.3, "mg/dL", WHEN)
    orphan["subject"] = {"reference": f"Patient?identifier=http://hosp.example/mrn|{MRN}"}
    named = p.lab(MG, 1.3, "mg/dL", WHEN)
    named["subject"] = {"reference": NAME}
    return p.bundle()


def _assert_no_identity(text: str) -> None:
    for word in (NAME, "Zebulon", "Quixotic", MRN, "99887766"):
        assert word.lower() not in text.lower(), f"{word!r} in {text}"


def test_warnings_never_repeat_a_name_or_identifier(site_k: Knowledge, tmp_path: Path) -> None:
    """Before: "'Patient?identifier=...|MRN-99887766' is not a resource", "{'text': 'Zebulon Quixotic'} is not one
    of", "unknown unit 'Zebulon Quixotic'"."""
    run = interpret_bundle(_identity_everywhere(), site_k, NOW, render=False)
    assert len(run.problems) >= 15
    _assert_no_identity("\n".join(p.line for p in run.problems))
    path = tmp_path / "in.json"
    path.write_text(json.dumps(_identity_everywhere()))
    r = invoke("interpret", "--bundle", str(path), "--now", "2026-01-20T12:00:00Z", "--mappings", str(SITE), "--no-render")
    assert r.exit_code == 0 and r.stderr.count("labinterp: warning:") >= 15
    _assert_no_identity(r.stderr)
    r = invoke("interpret", "--bundle", str(path), "--strict", "--mappings", str(SITE))
    assert r.exit_code == 2
    _assert_no_identity(r.stderr)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bogus", "'bogus'"),
        ("0,4 mg/L", "'0,4 mg/L'"),
        ("2026-02-30T08:00:00Z", "a text (not shown)"),  # a mistyped date may be a birth date: never quoted
        (NAME, "a text (not shown)"),
        (MRN, "a text (not shown)"),
        ("99887766", "a text (not shown)"),
        ({"text": NAME}, "an object"),
        ([1.5], "a list"),
        (99887766, "a large number"),
    ],
)
def test_shown_quotes_only_code_like_values(value: Any, expected: str) -> None:
    from labinterp.extract.facts import shown

    assert shown(value) == expected


def test_units_are_quoted_only_as_unit_tokens() -> None:
    from labinterp.extract.facts import Problem, shown_unit

    assert shown_unit("mg/furlong") == "'mg/furlong'" and shown_unit("mg/100.mL") == "'mg/100.mL'"
    assert shown_unit(NAME) == shown_unit(MRN) == "an unreadable unit"
    assert "Quixotic" not in Problem("Observation/x", f"'{NAME}' is odd").what  # any reader's quotes are checked


# --- 3 and 11. input files -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ],
)
def test_json_no_parser_holds_exits_2_with_one_line(tmp_path: Path, text: str, message: str) -> None:
    """Before: RecursionError / ValueError tracebacks, exit 1."""
    path = tmp_path / "in.json"
    path.write_text(text)
    r = invoke("interpret", "--bundle", str(path), "--mappings", str(SITE))
    assert r.exit_code == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_byte_order_mark_is_accepted_and_output_is_readable_by_others(tmp_path: Path) -> None:
    """Before: "Unexpected UTF-8 BOM", exit 2; --out files were 0600 (mkstemp's mode)."""
    path, out = tmp_path / "in.json", tmp_path / "out.json"
    path.write_bytes(b"\xef\xbb\xbf" + (EXAMPLES / "p08.json").read_bytes())
    old = os.umask(0o022)
    try:
        r = invoke("interpret", "--bundle", str(path), "--out", str(out), "--now", "2026-01-20T12:00:00Z", "--no-render")
    finally:
        os.umask(old)
    assert r.exit_code == 0, r.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o644


def test_strict_counts_every_patients_problems(site_k: Knowledge) -> None:
    a, amg, _ = _patient("a1")
    b, bmg, _ = _patient("b1")
    for obs in (amg, bmg):
        obs["valueQuantity"].update(unit="mg/furlong", code="mg/furlong")
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": a.bundle()["entry"] + b.bundle()["entry"]}
    with pytest.raises(ResourceError) as exc:
        interpret_bundle(bundle, site_k, NOW, strict=True)
    assert "(and 1 more problems)" in str(exc.value)  # before: only the first patient's were counted


# --- 6. an entry without resourceType inside a valid Bundle ----------------------------------------------------


def test_one_entry_without_resource_type_is_left_out(site_k: Knowledge) -> None:
    p, _, _ = _patient()
    bundle = p.bundle()
    bundle["entry"].append({"resource": {"id": "q", "status": "final"}})
    run = interpret_bundle(bundle, site_k, NOW, render=False)
    assert [(x.where, x.what) for x in run.problems] == [("Bundle.entry[3].resource", "has no resourceType: not a FHIR resource")]
    assert "DiagnosticReport" in _kinds(run)
    with pytest.raises(ResourceError):
        interpret_bundle(bundle, site_k, NOW, strict=True)
    with pytest.raises(BundleError, match="has no resourceType"):  # a Bundle of no FHIR resource is not FHIR
        split_bundle({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"id": "q"}}]})


# --- 7. a coding sent as an object ---------------------------------------------------------------------------


def test_a_coding_object_is_read_as_one_coding(site_k: Knowledge) -> None:
    """Before: the magnesium Observation was dropped silently (its coding's keys were iterated)."""
    p, mg, _ = _patient()
    mg["code"]["coding"] = mg["code"]["coding"][0]
    r = record_of(p.bundle(), site_k)
    assert len(r.of("magnesium")) == 1 and not r.problems


# --- 8. duplicate ids ----------------------------------------------------------------------------------------


def test_conflicting_duplicates_are_both_left_out_identical_ones_read_once(site_k: Knowledge) -> None:
    """Before: the last copy silently won."""
    p, _, _ = _patient()
    bundle = p.bundle()
    bundle["entry"].append(copy.deepcopy(bundle["entry"][1]))  # identical: fine, read once
    r = record_of(bundle, site_k)
    assert len(r.of("magnesium")) == 1 and not r.problems
    other = copy.deepcopy(bundle["entry"][1])
    other["resource"]["valueQuantity"]["value"] = 3.5
    bundle["entry"].append(other)
    r = record_of(bundle, site_k)
    assert not r.of("magnesium")
    assert [x.where for x in r.problems] == ["Observation/o1-lab1 (Bundle.entry[1])", "Observation/o1-lab1 (Bundle.entry[4])"]
    assert all("share this id" in x.what and x.source is not None for x in r.problems)


def test_a_second_patient_with_the_same_id_keeps_the_first(site_k: Knowledge) -> None:
    """Before: silently ignored."""
    p, _, _ = _patient()
    bundle = p.bundle()
    second = copy.deepcopy(bundle["entry"][0])
    second["resource"]["birthDate"] = "1990-05-05"
    bundle["entry"].append(second)
    run = interpret_bundle(bundle, site_k, NOW, render=False)
    assert [x.where for x in run.problems] == ["Patient/o1 (Bundle.entry[3])"]
    assert "the first (Bundle.entry[0]) is used" in run.problems[0].what and "1990" not in run.problems[0].what
    assert run.patients[0].findings.record.patient.birth_date is not None
    assert run.patients[0].findings.record.patient.birth_date.year == 1950


# --- 9. a birth date after the sample ------------------------------------------------------------------------


def test_birth_date_after_the_sample_is_a_problem_and_the_age_unknown(site_k: Knowledge) -> None:
    """Before: age -73, no warning."""
    p, _, _ = _patient()
    p.resources[0]["birthDate"] = "2099-01-01"
    run = interpret_bundle(p.bundle(), site_k, NOW, render=False)
    assert [(x.where, x.what) for x in run.problems] == [("Patient/o1 birthDate", "is after the sample: age unknown")]
    patient = run.patients[0].findings.record.patient
    assert patient.birth_date is None and patient.age_at(NOW.date()) is None


# --- 10. an unreadable star allele ---------------------------------------------------------------------------


def test_unknown_star_alleles_are_a_genotype_problem(site_k: Knowledge) -> None:
    """Before: no warning; the report said "not classifiable"."""
    p, _, _ = _patient()
    p.genotype("CYP3A5", text="*banana/*42")
    r = record_of(p.bundle(), site_k)
    assert not r.genotypes and [(x.where, x.about) for x in r.problems] == [("Observation/o1-gt3 value", "genotype")]
    assert "is not a CYP3A5 star allele labinterp knows" in r.problems[0].what
    p2, _, _ = _patient()
    p2.genotype("CYP3A5", text="*1/*3")
    assert len(record_of(p2.bundle(), site_k).genotypes) == 1
