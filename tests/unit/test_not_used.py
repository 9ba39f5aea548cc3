"""Issue 7 point 5: nothing recognised is dropped silently. Every Observation labinterp recognises (by code
or by name, on whole words) is used, or listed with its reason: Ignored on purpose, or a Problem naming the
resource and element. Molar linezolid converts through its sourced molar mass."""

from __future__ import annotations

from typing import Any

import pytest

from labinterp.extract.observations import has_phrase, recognize_analyte, words
from labinterp.knowledge import Knowledge
from labinterp.pipeline import interpret_bundle
from tests.builders import MG, SCR, UCUM, P, loinc, lzd_site
from tests.conftest import NOW, record_of

WHEN = "2026-01-15T08:00:00+01:00"
LZD_MW = 337.351  # mappings/analytes.toml: C16H20FN3O4 with IUPAC standard atomic weights


def by_name(text: str) -> dict[str, Any]:
    return {"coding": [{"system": "http://lab.example.org/other", "code": "X1", "display": text}], "text": text}


# --- words, not substrings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "phrase", "found"),
    [
        ("Linezolid MIC", "mic", True),
        ("Linezolid-MIC (E-test)", "mic", True),
        ("Linezolid microsampling (VAMS)", "mic", False),  # the defect: "mic" in "microsampling"
        ("Linezolid immunochemical assay", "mic", False),  # "mic" in "immunochemical"
        ("Linezolid pharmacodynamic target", "mic", False),  # "mic" in "pharmacodynamic"
        ("Linezolid E-test", "e test", True),
        ("Linezolid susceptibility", "susceptib*", True),
        ("Linezolid", "susceptib*", False),
        ("Linezolid minimum inhibitory concentration", "minimum inhibitory", True),
        ("Linezolid minimum concentration", "minimum inhibitory", False),
    ],
)
def test_phrases_match_whole_words(text: str, phrase: str, found: bool) -> None:
    assert has_phrase(words(text), phrase) is found


@pytest.mark.parametrize(
    ("name", "analyte"),
    [
        ("Linezolid plasma concentration", "linezolid"),
        ("LINEZOLID [Mass/volume] in Serum or Plasma", "linezolid"),
        ("Linezolid microsampling (VAMS)", "linezolid"),  # before: excluded as if it were an MIC, dropped
        ("Linezolid immunochemical assay", "linezolid"),  # before: dropped
        ("Linezolid pharmacodynamic target level", "linezolid"),  # before: dropped
        ("Linezolid MIC", "linezolid_mic"),  # before: neither a trough nor an MIC, dropped
        ("Linezolid [Susceptibility]", "linezolid_mic"),
        ("Linezolid susceptibility by gradient strip (E-test)", "linezolid_mic"),
        ("Minimum inhibitory concentration of linezolid", "linezolid_mic"),
        ("Linezolid disk diffusion zone", None),  # a zone diameter: neither a level nor an MIC
        ("Linezolid resistance gene", None),
        ("Tedizolid plasma concentration", None),
        ("Hemoglobin", None),
    ],
)
def test_recognised_by_name(k: Knowledge, name: str, analyte: str | None) -> None:
    obs = {"resourceType": "Observation", "code": by_name(name), "valueQuantity": {"value": 4.0, "unit": "mg/L"}}
    found = recognize_analyte(obs, k)
    assert (found[0] if found else None) == analyte
    if found:
        assert found[1] == "name"


def test_linezolid_mic_by_name_is_read_as_mic_not_as_trough(k: Knowledge) -> None:
    p = P("n1", "male", "1960-01-01", "")
    p.lab(by_name("Linezolid MIC"), 2.0, "mg/L", WHEN)
    p.lab(by_name("Linezolid plasma concentration"), 1.5, "mg/L", WHEN, kind="lzd")
    r = record_of(p.bundle(), k)
    assert [(m.analyte, m.value) for m in r.of("linezolid_mic")] == [("linezolid_mic", 2.0)]
    assert [(m.analyte, m.value) for m in r.of("linezolid")] == [("linezolid", 1.5)]


# --- molar linezolid ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("unit", "ucum", "mg_per_l"),
    [
        ("µmol/L", "umol/L", 10 * LZD_MW / 1000),  # before: not recognised by name at all (no mass unit)
        ("µmol/L", "µmol/L", 10 * LZD_MW / 1000),  # micro sign sent as the code
        ("μmol/L", "μmol/L", 10 * LZD_MW / 1000),  # Greek mu
        ("umol/L", "umol/L", 10 * LZD_MW / 1000),
        ("umol/l", "umol/l", 10 * LZD_MW / 1000),
        ("nmol/L", "nmol/L", 10 * LZD_MW / 1e6),
        ("mg/L", "mg/L", 10.0),  # neighbours: mass units as before
        ("ug/mL", "ug/mL", 10.0),
    ],
)
@pytest.mark.parametrize("site", [True, False], ids=["by-code", "by-name"])
def test_molar_linezolid_converted(k: Knowledge, site_k: Knowledge, unit: str, ucum: str, mg_per_l: float, site: bool) -> None:
    p = P("n2", "male", "1960-01-01", "")
    p.lab(lzd_site() if site else by_name("Linezolid serum level"), 10.0, unit, WHEN, ucum=ucum, kind="lzd")
    r = record_of(p.bundle(), site_k if site else k)
    assert not r.problems, r.problems
    (m,) = r.of("linezolid")
    assert m.value == pytest.approx(mg_per_l) and m.unit == "mg/L" and m.original == f"10 {ucum}"


def test_molar_mass_is_the_formulas(k: Knowledge) -> None:
    # C16H20FN3O4 with IUPAC 2021 abridged standard atomic weights
    assert k.analytes["linezolid"].molar_mass_g_per_mol == pytest.approx(
        16 * 12.011 + 20 * 1.008 + 18.998 + 3 * 14.007 + 4 * 15.999
    )
    assert k.unit_factor("linezolid", "µmol/L") == pytest.approx(0.337351)
    assert k.unit_factor("magnesium", "umol/L") is None  # no molar mass there: its own sourced factors only
    assert k.unit_factor("linezolid_mic", "umol/L") is None


# --- unusable values: listed, never dropped ---------------------------------------------------------------


def _value(obs: dict[str, Any], **value: Any) -> None:
    obs.pop("valueQuantity")
    obs.update(value)


CASES: list[tuple[str, Any, str | None, str | None]] = [
    # (label, mutate the Observation, expected Problem element, expected Problem text); None: used
    ("valueString <0.4 without unit", lambda o: _value(o, valueString="<0.4"), "valueString", "<0.4 has no unit"),
    ("valueString <0.4 mg/L", lambda o: _value(o, valueString="<0.4 mg/L"), None, None),
    ("valueString >= 48 ug/mL", lambda o: _value(o, valueString=">= 48 ug/mL"), None, None),
    ("valueString 0,4 mg/L", lambda o: _value(o, valueString="0,4 mg/L"), "valueString", "found '0,4 mg/L'"),
    (
        "valueCodeableConcept",
        lambda o: _value(o, valueCodeableConcept={"text": "below limit of quantification"}),
        "value[x]",
        "found valueCodeableConcept a text (not shown)",  # free text can carry a name: never quoted
    ),
    ("valueInteger", lambda o: _value(o, valueInteger=3), "value[x]", "found valueInteger"),
    ("no value", lambda o: o.pop("valueQuantity"), "value[x]", "no value and no dataAbsentReason"),
    ("negative", lambda o: o["valueQuantity"].update(value=-1.0), "valueQuantity", "-1.0 is not a"),
    ("molar unit", lambda o: o["valueQuantity"].update(unit="µmol/L", code="umol/L"), None, None),
    ("dose unit", lambda o: o["valueQuantity"].update(unit="mg", code="mg"), "valueQuantity.unit", "unknown unit 'mg'"),
    ("no status", lambda o: o.pop("status"), "status", "no status is not an Observation status"),
    ("odd status", lambda o: o.update(status="bogus"), "status", "'bogus' is not an Observation status"),
]


@pytest.mark.parametrize("site", [True, False], ids=["by-code", "by-name"])
@pytest.mark.parametrize(("label", "mutate", "element", "what"), CASES, ids=[c[0] for c in CASES])
def test_unusable_linezolid_is_listed(
    k: Knowledge, site_k: Knowledge, site: bool, label: str, mutate: Any, element: str | None, what: str | None
) -> None:
    """By name, every one of these was dropped silently before (no mass unit, so not recognised at all)."""
    p = P("n3", "male", "1960-01-01", "")
    obs = p.lab(lzd_site() if site else by_name("Linezolid plasma concentration"), 3.0, "mg/L", WHEN, kind="lzd")
    mutate(obs)
    r = record_of(p.bundle(), site_k if site else k)
    if element is None:
        assert not r.problems and len(r.of("linezolid")) == 1
        return
    assert not r.measurements
    assert [x.where for x in r.problems] == [f"Observation/{obs['id']} {element}"], label
    assert what in r.problems[0].what


def test_comparator_from_text(k: Knowledge, site_k: Knowledge) -> None:
    p = P("n4", "male", "1960-01-01", "")
    for text in ("<0.4 mg/L", "≥48 mg/L", "12.5 ug/mL"):
        obs = p.lab(lzd_site(), 1.0, "mg/L", WHEN, kind="lzd")
        _value(obs, valueString=text)
    got = [(m.comparator, m.value, m.original) for m in record_of(p.bundle(), site_k).of("linezolid")]
    assert sorted(got) == sorted([("<", 0.4, "<0.4 mg/L"), (">=", 48.0, ">=48 mg/L"), ("", 12.5, "12.5 ug/mL")])


@pytest.mark.parametrize(
    ("status", "listed"),
    [
        ("unknown", "status unknown: the sender does not know whether this result is final"),
        ("registered", "status registered: registered, no result yet"),
        ("cancelled", "status cancelled: cancelled"),
        ("entered-in-error", "status entered-in-error: entered in error"),
        ("amended", None),
        ("corrected", None),
    ],
)
def test_statuses_listed_or_used(k: Knowledge, status: str, listed: str | None) -> None:
    p = P("n5", "male", "1960-01-01", "")
    obs = p.lab(MG, 1.3, "mg/dL", WHEN, status=status)
    r = record_of(p.bundle(), k)
    assert not r.problems
    if listed:
        assert [(i.source.reference, i.why) for i in r.ignored] == [(f"Observation/{obs['id']}", listed)]
    else:
        assert len(r.measurements) == 1


def test_data_absent_reason_is_named(k: Knowledge) -> None:
    p = P("n6", "male", "1960-01-01", "")
    obs = p.lab(SCR, 1.0, "mg/dL", WHEN)
    del obs["valueQuantity"]
    obs["dataAbsentReason"] = {
        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason", "code": "error"}]
    }
    r = record_of(p.bundle(), k)
    assert [i.why for i in r.ignored] == ["no value (dataAbsentReason: error)"] and not r.problems


def test_observations_not_ours_are_skipped_whatever_their_status(k: Knowledge) -> None:
    """Before: an odd status was a Problem before recognition, so a haemoglobin with status 'bogus' blocked the
    patient in strict mode, and a cancelled one was listed under "Not used"."""
    p = P("n7", "male", "1960-01-01", "")
    p.lab(loinc("718-7", "Hemoglobin [Mass/volume] in Blood"), 13.0, "g/dL", WHEN, status="bogus")
    p.lab(loinc("718-7", "Hemoglobin [Mass/volume] in Blood"), 13.0, "g/dL", WHEN, status="cancelled")
    r = record_of(p.bundle(), k)
    assert not r.problems and not r.ignored and not r.measurements


@pytest.mark.parametrize(
    ("code", "unit", "analyte"),
    [
        (MG, "mg/furlong", "magnesium"),
        (SCR, "g/furlong", "creatinine"),
        (loinc("98979-8", "eGFR CKD-EPI 2021"), "mL/h", "egfr"),
        (loinc("29463-7", "Body weight"), "stone", "weight"),
        (loinc("2823-3", "Potassium"), "mg/dL", "potassium"),
        (loinc("17861-6", "Calcium"), "mmol/kg", "calcium_total"),
        (loinc("19124-7", "Magnesium urine"), "furlong", "urine_magnesium"),
        (loinc("2161-8", "Creatinine urine"), "furlong", "urine_creatinine"),
        (loinc("29258-1", "Linezolid [Susceptibility]"), "mm", "linezolid_mic"),
    ],
)
def test_every_analyte_with_an_unknown_unit_is_listed(k: Knowledge, code: dict[str, Any], unit: str, analyte: str) -> None:
    p = P("n8", "male", "1960-01-01", "")
    obs = p.lab(code, 1.0, unit, WHEN)
    r = record_of(p.bundle(), k)
    assert [x.where for x in r.problems] == [f"Observation/{obs['id']} valueQuantity.unit"]
    assert f"unknown unit {unit!r} for {analyte}" in r.problems[0].what


def test_not_used_section_of_the_report(site_k: Knowledge) -> None:
    """The report a clinician reads lists each resource left out with its reason; the rest is interpreted."""
    p = P("n9", "male", "1960-01-01", "")
    p.doses("2026-01-11T20:00:00+01:00", 7)
    p.lab(lzd_site(), 3.0, "mg/L", WHEN, kind="lzd")
    odd = p.lab(by_name("Linezolid plasma concentration"), 1.0, "mg/L", WHEN, kind="lzd")
    _value(odd, valueString="<0.4")
    cancelled = p.lab(MG, 1.0, "mg/dL", WHEN, status="cancelled")
    result = interpret_bundle(p.bundle(), site_k, NOW)
    assert [x.where for x in result.problems] == [f"Observation/{odd['id']} valueString"]
    report = next(
        e["resource"]
        for e in result.bundle["entry"]
        if e["resource"]["resourceType"] == "DiagnosticReport" and "inezolid" in e["resource"]["code"].get("text", "")
    )
    div = report["text"]["div"]
    assert "Not used" in div and f"Observation/{odd['id']} valueString" in div and "&lt;0.4 has no unit" in div
    assert f"Observation/{cancelled['id']}: status cancelled" in div


def test_ucum_quantity_without_system_still_read(k: Knowledge) -> None:
    p = P("n10", "male", "1960-01-01", "")
    obs = p.lab(MG, 0.7, "mmol/L", WHEN)
    obs["valueQuantity"] = {"value": 0.7, "unit": "mmol/l"}
    (m,) = record_of(p.bundle(), k).measurements
    assert m.value == pytest.approx(0.7 * 2.431) and UCUM


@pytest.mark.parametrize(
    ("mutate", "where", "what"),
    [
        (lambda pat, obs: pat.update(gender=["male"]), "Patient/n11 gender", "is not one of"),
        (lambda pat, obs: pat.update(gender=None), None, None),  # JSON null: absent, sex unknown, no problem
        (lambda pat, obs: obs.update(status=["final"]), "Observation/n11-lab1 status", "expected a status code"),
        (lambda pat, obs: obs.update(valueQuantity=[1.0]), "Observation/n11-lab1 valueQuantity", "must be an object"),
        (lambda pat, obs: obs.update(effectiveDateTime=20260115), "Observation/n11-lab1 effectiveDateTime", "found a number"),
        (
            lambda pat, obs: obs.update(subject={"reference": 7}),
            "Observation/n11-lab1 (Bundle.entry[1])",
            "subject.reference is missing",
        ),
    ],
)
def test_odd_shapes_are_problems_not_crashes(k: Knowledge, mutate: Any, where: str | None, what: str | None) -> None:
    p = P("n11", "male", "1960-01-01", "")
    obs = p.lab(MG, 1.3, "mg/dL", WHEN)
    p.lab(SCR, 1.0, "mg/dL", WHEN)
    mutate(p.resources[0], obs)
    result = interpret_bundle(p.bundle(), k, NOW)
    if where is None:
        assert not result.problems and result.patients[0].findings.record.patient.sex == "unknown"
        return
    assert [x.where for x in result.problems] == [where] and what in result.problems[0].what
    assert any(m.analyte == "creatinine" for m in result.patients[0].findings.record.measurements)


@pytest.mark.parametrize(
    ("build", "about"),
    [
        (lambda p: _value(p.lab(by_name("Linezolid level"), 1.0, "mg/L", WHEN), valueString="<0.4"), "linezolid"),
        (lambda p: p.lab(MG, 1.0, "mg/furlong", WHEN), "magnesium"),
        (lambda p: p.lab(loinc("29258-1", "Linezolid [Susceptibility]"), 1.0, "mm", WHEN), "linezolid_mic"),
        (lambda p: p.plain_genotype("CYP3A5 rs776746", "A/Q"), "genotype"),
        (lambda p: p.resources[0].update(gender="M"), "patient"),
    ],
)
def test_problems_say_what_the_resource_was_recognised_as(k: Knowledge, build: Any, about: str) -> None:
    """So a report can say "a linezolid result was received but could not be used" even when it is the only one."""
    p = P("n12", "male", "1960-01-01", "")
    build(p)
    r = record_of(p.bundle(), k)
    assert [x.about for x in r.problems] == [about]


@pytest.mark.parametrize(
    ("code", "listed"),
    [(MG, True), (by_name("Linezolid level"), True), (loinc("718-7", "Hemoglobin [Mass/volume] in Blood"), False)],
)
def test_without_id_or_full_url_listed_only_when_recognised(k: Knowledge, code: dict[str, Any], listed: bool) -> None:
    """Before: any resource without id and fullUrl refused the whole Bundle (BundleError, exit 2)."""
    p = P("n13", "male", "1960-01-01", "")
    obs = p.lab(code, 1.0, "mg/dL", WHEN)
    p.lab(SCR, 1.0, "mg/dL", WHEN)
    bundle = p.bundle()
    entry = next(e for e in bundle["entry"] if e["resource"] is obs)
    del obs["id"], entry["fullUrl"]
    result = interpret_bundle(bundle, k, NOW)
    assert [x.where for x in result.problems] == (["Observation (Bundle.entry[1])"] if listed else [])
    assert [m.analyte for m in result.patients[0].findings.record.measurements] == ["creatinine"]


@pytest.mark.parametrize(
    ("mutate", "problem", "ignored"),
    [
        (lambda o: o["valueQuantity"].update(comparator=["<"]), "valueQuantity.comparator", None),
        (lambda o: o["valueQuantity"].update(comparator="ad"), "valueQuantity.comparator", None),
        (
            lambda o: (o["valueQuantity"].pop("value"), o.update(dataAbsentReason={"text": "haemolysed"})),
            None,
            "no value (dataAbsentReason: haemolysed)",
        ),
        (lambda o: o["valueQuantity"].pop("value"), "valueQuantity.value", None),
        (lambda o: o["valueQuantity"].update(value=float("nan")), "valueQuantity", None),
    ],
)
def test_quantity_edges(k: Knowledge, mutate: Any, problem: str | None, ignored: str | None) -> None:
    p = P("n14", "male", "1960-01-01", "")
    obs = p.lab(MG, 1.3, "mg/dL", WHEN)
    mutate(obs)
    r = record_of(p.bundle(), k)
    assert [x.where for x in r.problems] == ([f"Observation/{obs['id']} {problem}"] if problem else [])
    assert [i.why for i in r.ignored] == ([ignored] if ignored else [])
    assert not r.measurements


@pytest.mark.parametrize(
    ("text", "dar", "expected"),
    [
        ("CYP3A5 genotype", None, ("problem", "names CYP3A5 but has no value")),  # before: dropped silently
        ("rs776746 genotyping", None, ("problem", "names rs776746 but has no value")),
        ("CYP3A5 genotype", {"text": "pending"}, ("ignored", "no value (dataAbsentReason: pending)")),
        ("Hierro por colorimetría", None, None),  # "por" is a Spanish word here, not the POR gene
        ("CYP3A5 activity", None, None),
    ],
)
def test_valueless_genotype_is_listed(k: Knowledge, text: str, dar: Any, expected: tuple[str, str] | None) -> None:
    p = P("n15", "male", "1960-01-01", "")
    extra = {"dataAbsentReason": dar} if dar else {}
    p._obs("pg", {"coding": [{"system": "http://lab.example.org/codes", "code": "PGX"}], "text": text}, WHEN, **extra)
    r = record_of(p.bundle(), k)
    got = [("problem", x.what) for x in r.problems] + [("ignored", i.why) for i in r.ignored]
    if expected is None:
        assert got == []
    else:
        assert len(got) == 1 and got[0][0] == expected[0] and expected[1] in got[0][1]
