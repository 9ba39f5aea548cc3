"""Medications by status and date (issue 7, point 6): which statements, orders and administrations are
current at the sample, with the wash-out windows of mappings/medications.toml; the therapy's end as
extracted; rifampicin recognised in fixed-dose combinations (ATC J04AM...) and by RxNorm or name."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from labinterp.extract.facts import FhirTime
from labinterp.knowledge import Knowledge
from labinterp.knowledge.model.medications import MedicationsFile
from labinterp.rules.medications import current_medications, current_note, end_of
from tests.builders import ATC, LZD, RXNORM, P
from tests.conftest import ROOT, findings_of, record_of

SAMPLE = datetime(2026, 1, 15, 7, 0, tzinfo=UTC)  # 08:00 at +01:00
RIF = {"coding": [{"system": ATC, "code": "J04AB02", "display": "rifampicin"}], "text": "rifampicin"}
FUROSEMIDE = {"coding": [{"system": ATC, "code": "C03CA01", "display": "furosemide"}], "text": "furosemide"}


def _policy() -> MedicationsFile:
    with (ROOT / "mappings" / "medications.toml").open("rb") as fh:
        return MedicationsFile.model_validate(tomllib.load(fh))


@pytest.fixture(scope="module")
def mk(k: Knowledge) -> Knowledge:
    """The package's knowledge: the loader reads medications.toml."""
    assert isinstance(k.medications, MedicationsFile)
    return k


def _one(kind: str, concept: dict[str, Any], status: str | None, **fields: Any) -> P:
    p = P("m", "male", "1960-01-01", "")
    p.med(kind, concept, status=status, when=fields.pop("when", None))
    p.resources[-1].update(fields)
    return p


# (kind, drug, status, extra fields, current at SAMPLE?, words in the reason)
CASES: list[tuple[str, dict[str, Any], str | None, dict[str, Any], bool, str]] = [
    # the defect: a rifampicin course finished years ago raised today's underexposure risk
    (
        "MedicationStatement",
        RIF,
        "completed",
        {"effectivePeriod": {"start": "2019-01-01", "end": "2019-03-02"}},
        False,
        "rifampicin: MedicationStatement status completed, ended 2019-03-02, more than the 14-day wash-out window",
    ),
    ("MedicationStatement", RIF, "completed", {}, False, "status completed, end date not given: not current"),
    ("MedicationStatement", RIF, "stopped", {}, False, "status stopped, end date not given"),
    # rifampicin's 14-day window: ended 2026-01-01 (over at 2026-01-02T00:00Z) + 14 d = 2026-01-16 > sample
    ("MedicationStatement", RIF, "stopped", {"effectivePeriod": {"start": "2025-12-01", "end": "2026-01-01"}}, True, ""),
    (
        "MedicationStatement",
        RIF,
        "stopped",
        {"effectivePeriod": {"start": "2025-12-01", "end": "2025-12-31"}},
        False,
        "ended 2025-12-31, more than the 14-day wash-out window before the sample",
    ),
    # a completed statement whose recorded end is after the sample: taken at the sample
    ("MedicationStatement", RIF, "completed", {"effectivePeriod": {"start": "2026-01-01", "end": "2026-01-30"}}, True, ""),
    ("MedicationStatement", RIF, "active", {}, True, ""),
    ("MedicationStatement", RIF, "active", {"effectivePeriod": {"start": "2026-01-01"}}, True, ""),
    ("MedicationStatement", RIF, "on-hold", {"effectivePeriod": {"start": "2026-01-01"}}, True, ""),  # labinterp choice
    ("MedicationStatement", RIF, "intended", {}, True, ""),
    ("MedicationStatement", RIF, "unknown", {}, True, ""),
    (
        "MedicationStatement",
        RIF,
        "active",
        {"effectivePeriod": {"start": "2026-01-20"}},
        False,
        "starts 2026-01-20, after the sample: not current",
    ),
    # the default 7-day window (furosemide): order bounds end 2026-01-07 is over at 01-08T00:00Z, + 7 d = the 15th 00:00Z
    (
        "MedicationRequest",
        FUROSEMIDE,
        "active",
        {"dosageInstruction": [{"timing": {"repeat": {"boundsPeriod": {"start": "2025-12-01", "end": "2026-01-07"}}}}]},
        False,
        "furosemide: MedicationRequest status active, ended 2026-01-07, more than the 7-day wash-out window",
    ),
    (
        "MedicationRequest",
        FUROSEMIDE,
        "active",
        {"dosageInstruction": [{"timing": {"repeat": {"boundsPeriod": {"start": "2025-12-01", "end": "2026-01-08"}}}}]},
        True,
        "",
    ),
    (
        "MedicationRequest",
        FUROSEMIDE,
        "completed",
        {
            "dosageInstruction": [
                {"timing": {"repeat": {"boundsPeriod": {"start": "2025-12-01"}, "boundsDuration": {"value": 7, "unit": "d"}}}}
            ]
        },
        False,
        "ended 2025-12-08 (2025-12-01 + 7 d)",
    ),
    ("MedicationRequest", FUROSEMIDE, "on-hold", {}, True, ""),
    ("MedicationRequest", FUROSEMIDE, "stopped", {}, False, "status stopped, end date not given"),
    # administrations: "completed" is their normal status; a dose counts within the window before the sample
    ("MedicationAdministration", RIF, "completed", {"when": "2026-01-14T20:00:00+01:00"}, True, ""),
    ("MedicationAdministration", RIF, "stopped", {"when": "2026-01-14T20:00:00+01:00"}, True, ""),
    ("MedicationAdministration", RIF, "in-progress", {"when": "2026-01-15T07:30:00+01:00"}, True, ""),
    ("MedicationAdministration", RIF, "completed", {"when": "2026-01-01T09:00:00+01:00"}, True, ""),  # 14 d wash-out
    (
        "MedicationAdministration",
        RIF,
        "completed",
        {"when": "2025-12-31T09:00:00+01:00"},
        False,
        "given 2025-12-31T09:00:00+01:00, more than the 14-day wash-out window",
    ),
    (
        "MedicationAdministration",
        FUROSEMIDE,
        "completed",
        {"when": "2026-01-15T09:00:00+01:00"},
        False,
        "given 2026-01-15T09:00:00+01:00, after the sample: not current",
    ),
    (
        "MedicationAdministration",
        FUROSEMIDE,
        "completed",
        {"when": "2026-01-07T09:00:00+01:00"},
        False,
        "more than the 7-day wash-out window",
    ),
]


@pytest.mark.parametrize(("kind", "drug", "status", "fields", "current", "why"), CASES)
def test_current_at_the_sample(
    mk: Knowledge, kind: str, drug: dict[str, Any], status: str | None, fields: dict[str, Any], current: bool, why: str
) -> None:
    record = record_of(_one(kind, drug, status, **fields).bundle(), mk)
    assert len(record.medications) == 1, record.ignored
    now, not_now = current_medications(record, SAMPLE, mk)
    assert (len(now), len(not_now)) == ((1, 0) if current else (0, 1))
    if not current:
        assert why in not_now[0][1]
        assert not_now[0][0] is record.medications[0]


@pytest.mark.parametrize(
    ("kind", "status", "fields", "current"),
    [
        ("MedicationStatement", "completed", {"effectivePeriod": {"start": "2026-01-01", "end": "2026-01-30"}}, False),
        ("MedicationStatement", "completed", {}, False),
        ("MedicationStatement", "active", {"effectivePeriod": {"start": "2019-01-01", "end": "2019-03-02"}}, True),
        ("MedicationStatement", "on-hold", {}, True),
        ("MedicationAdministration", "completed", {"when": "2019-03-02T08:00:00+01:00"}, True),
    ],
)
def test_without_a_sample_time_statuses_decide(
    mk: Knowledge, kind: str, status: str, fields: dict[str, Any], current: bool
) -> None:
    record = record_of(_one(kind, RIF, status, **fields).bundle(), mk)
    now, not_now = current_medications(record, None, mk)
    assert (len(now), len(not_now)) == ((1, 0) if current else (0, 1))


def test_ignored_statuses_never_reach_the_rules_and_administrations_are_kept(mk: Knowledge) -> None:
    p = P("m2", "male", "1960-01-01", "")
    for status in ("entered-in-error", "cancelled", "draft"):
        p.med("MedicationRequest", RIF, status=status, when="2026-01-10")
    p.med("MedicationStatement", RIF, status="not-taken", when="2026-01-10")
    p.med("MedicationAdministration", RIF, status="not-done", when="2026-01-14T08:00:00+01:00")
    p.doses("2026-01-10T20:00:00+01:00", 10)  # linezolid every 12 h, the last one at 2026-01-15T08:00, the sample's time
    p.med("MedicationAdministration", LZD, when="2026-01-15T20:00:00+01:00", dose_mg=600)
    record = record_of(p.bundle(), mk)
    assert len(record.ignored) == 5 and all("rifampicin" not in m.drugs for m in record.medications)
    now, not_now = current_medications(record, SAMPLE, mk)
    assert len(record.medications) == 11  # every administration stays in the record for the trough timing
    assert len(now) == 10
    assert [why for _, why in not_now] == [
        f"{record.medications[-1].name}: MedicationAdministration status completed, given 2026-01-15T20:00:00+01:00, "
        "after the sample: not current"
    ]


def test_current_note_for_an_interaction_within_the_window(mk: Knowledge) -> None:
    record = record_of(
        _one("MedicationStatement", RIF, "stopped", effectivePeriod={"start": "2025-12-01", "end": "2026-01-10"}).bundle(), mk
    )
    (m,), _ = current_medications(record, SAMPLE, mk)
    assert current_note(m, SAMPLE, mk) == "ended 2026-01-10, within the 14-day wash-out window before the sample"
    active = record_of(_one("MedicationStatement", RIF, "active").bundle(), mk).medications[0]
    assert current_note(active, SAMPLE, mk) == ""


# --- extraction: the therapy's end as the resource gives it -----------------------------------------------


@pytest.mark.parametrize(
    ("kind", "fields", "end"),
    [
        ("MedicationStatement", {"effectivePeriod": {"start": "2026-01-01", "end": "2026-01-09"}}, "2026-01-09"),
        (
            "MedicationStatement",
            {"dosage": [{"timing": {"repeat": {"boundsPeriod": {"start": "2026-01-01", "end": "2026-01-05"}}}}]},
            "2026-01-05",
        ),
        (
            "MedicationRequest",
            {
                "dosageInstruction": [
                    {
                        "timing": {
                            "repeat": {
                                "boundsPeriod": {"start": "2026-01-01T08:00:00+01:00"},
                                "boundsDuration": {"value": 10, "code": "d"},
                            }
                        }
                    }
                ]
            },
            "2026-01-11T07:00:00+00:00 (2026-01-01T08:00:00+01:00 + 10 d)",
        ),
        (
            "MedicationRequest",
            {
                "dosageInstruction": [
                    {"timing": {"repeat": {"boundsPeriod": {"end": "2026-01-05"}}}},
                    {"timing": {"repeat": {"boundsPeriod": {"end": "2026-01-12"}}}},
                ]
            },
            "2026-01-12",
        ),
        (  # a bounded loading dose, then an open-ended maintenance dose: the therapy has no end
            "MedicationRequest",
            {
                "dosageInstruction": [
                    {"timing": {"repeat": {"boundsPeriod": {"end": "2026-01-02"}}}},
                    {"timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}}},
                ]
            },
            None,
        ),
        ("MedicationRequest", {"dispenseRequest": {"validityPeriod": {"start": "2026-01-01", "end": "2026-03-01"}}}, None),
        (
            "MedicationRequest",
            {"dosageInstruction": [{"timing": {"repeat": {"boundsDuration": {"value": 1, "unit": "mo"}}}}]},
            None,
        ),
        (
            "MedicationAdministration",
            {"effectivePeriod": {"start": "2026-01-14T08:00:00+01:00", "end": "2026-01-14T09:00:00+01:00"}},
            "2026-01-14T09:00:00+01:00",
        ),
    ],
)
def test_end_extracted(k: Knowledge, kind: str, fields: dict[str, Any], end: str | None) -> None:
    p = P("m3", "male", "1960-01-01", "")
    p.med(kind, RIF, when="2026-01-01" if kind != "MedicationAdministration" else None)
    res = p.resources[-1]
    if kind == "MedicationAdministration":
        res.pop("effectiveDateTime", None)
    if "effectivePeriod" in fields:
        res.pop("effectivePeriod", None)
    res.update(fields)
    m = record_of(p.bundle(), k).medications[0]
    assert (m.end.text if m.end else None) == end
    if kind == "MedicationAdministration":
        assert m.administered is not None and m.administered.text == "2026-01-14T08:00:00+01:00"


def test_end_of_a_date_is_the_end_of_what_it_says() -> None:
    def t(precision: str, *ymd: int) -> FhirTime:
        return FhirTime(datetime(*ymd, tzinfo=UTC), precision, "")  # type: ignore[misc]

    assert end_of(t("day", 2026, 1, 10)) == datetime(2026, 1, 11, tzinfo=UTC)
    assert end_of(t("month", 2025, 12, 1)) == datetime(2026, 1, 1, tzinfo=UTC)
    assert end_of(t("month", 2026, 2, 1)) == datetime(2026, 3, 1, tzinfo=UTC)
    assert end_of(t("year", 2025, 1, 1)) == datetime(2026, 1, 1, tzinfo=UTC)
    assert end_of(t("time", 2026, 1, 10, 8, 30)) == datetime(2026, 1, 10, 8, 30, tzinfo=UTC)


# --- rifampicin in combinations, by RxNorm and by name ------------------------------------------------------


@pytest.mark.parametrize(
    ("concept", "rifampicin"),
    [
        ({"coding": [{"system": ATC, "code": "J04AB02"}]}, True),
        ({"coding": [{"system": ATC, "code": "J04AM02"}]}, True),  # rifampicin and isoniazid
        ({"coding": [{"system": ATC, "code": "J04AM05"}]}, True),  # rifampicin, pyrazinamide and isoniazid
        ({"coding": [{"system": ATC, "code": "J04AM06"}]}, True),  # ... and ethambutol
        ({"coding": [{"system": ATC, "code": "J04AM07"}]}, True),  # rifampicin, ethambutol and isoniazid
        ({"coding": [{"system": ATC, "code": "J04AM03"}]}, False),  # ethambutol and isoniazid: no rifampicin
        ({"coding": [{"system": ATC, "code": "J04AC01"}]}, False),  # isoniazid alone
        ({"coding": [{"system": RXNORM, "code": "198202"}]}, True),  # rifampin 300 MG Oral Capsule
        ({"coding": [{"system": RXNORM, "code": "207436"}]}, True),  # Rifadin IV
        ({"coding": [{"system": RXNORM, "code": "9384"}]}, False),  # unverified ingredient code: not shipped
        ({"text": "isoniazid 150 MG / rifampin 300 MG Oral Capsule"}, True),
        ({"text": "Rifinah 300/150 tablets"}, True),
        ({"text": "Rifater"}, True),
        ({"text": "rifabutin 150 mg"}, False),
    ],
)
def test_rifampicin_recognised(k: Knowledge, concept: dict[str, Any], rifampicin: bool) -> None:
    p = P("m4", "male", "1960-01-01", "")
    p.med("MedicationStatement", concept, when="2026-01-01")
    meds = record_of(p.bundle(), k).medications
    assert any("rifampicin" in m.drugs for m in meds) == rifampicin


def test_combination_raises_underexposure_risk(site_k: Knowledge) -> None:
    p = P("m5", "female", "1970-01-01", "")  # a prior without a trough: the genotype and the co-medication
    p.plain_genotype("CYP3A5 rs776746", "GG")
    p.med("MedicationStatement", {"coding": [{"system": ATC, "code": "J04AM06"}], "text": "Rimstar 4-FDC"}, when="2026-01-01")
    f = findings_of(p.bundle(), site_k)
    assert f.exposure is not None and f.exposure.under.risk == "moderate" and "rifampicin" in f.exposure.under.contributors


# --- the mappings file ----------------------------------------------------------------------------------------


def test_policy_file_numbers_and_choices() -> None:
    policy = _policy()
    assert policy.washout.default_days == 7 and policy.washout.drugs["rifampicin"].days == 14
    assert policy.washout_days({"rifampicin", "loop_diuretic"}) == 14
    assert policy.washout_days(set()) == 7 and policy.washout_days({"digoxin"}) == 7
    assert "on-hold" in policy.statuses.current and policy.statuses.on_hold.startswith("labinterp choice")
    assert "completed" in policy.administrations.given and "completed" in policy.statuses.ended
    for reason in (policy.washout.default_reason, policy.washout.drugs["rifampicin"].reason):
        assert reason.startswith("labinterp choice")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["statuses"].update(current=[*d["statuses"]["current"], "completed"]), "in both"),
        (lambda d: d["administrations"].update(given=["completed", "entered-in-error"]), "also in statuses.never"),
        (lambda d: d["washout"].update(default_days=-1), "greater than or equal to 0"),
        (lambda d: d["washout"].update(typo=1), "Extra inputs are not permitted"),
    ],
)
def test_policy_file_is_checked(change: Any, message: str) -> None:
    with (ROOT / "mappings" / "medications.toml").open("rb") as fh:
        data = tomllib.load(fh)
    change(data)
    with pytest.raises(ValidationError, match=message):
        MedicationsFile.model_validate(data)


# --- the rules use only current medications ------------------------------------------------------------


def test_rifampicin_stopped_years_ago_does_not_raise_the_risk_and_is_said(site_k: Knowledge) -> None:
    p = P("rs", "female", "1960-01-01", "")
    p.doses("2026-01-11T20:00:00+01:00", 7)
    p.lab({"text": "Linezolid plasma concentration"}, 5.0, "mg/L", "2026-01-15T08:00:00+01:00", kind="lzd")
    p.plain_genotype("CYP3A5 rs776746", "GG")
    p.med("MedicationStatement", RIF, status="completed", when="2019-01-01")
    p.resources[-1]["effectivePeriod"] = {"start": "2019-01-01", "end": "2019-03-02"}
    f = findings_of(p.bundle(), site_k)
    assert f.exposure is not None and "rifampicin" not in f.exposure.under.contributors
    assert f.exposure.under.prior_risk == "low"
    assert any("ended 2019-03-02" in r and "not current" in r for r in f.exposure.under.rationale)


def test_magnesium_causes_are_the_current_ones(k: Knowledge) -> None:
    p = P("mc", "female", "1960-01-01", "")
    p.lab({"coding": [{"system": "http://loinc.org", "code": "19123-9"}]}, 1.3, "mg/dL", "2026-01-15T08:00:00+01:00")
    p.med("MedicationStatement", FUROSEMIDE, status="completed", when="2019-01-01")
    p.resources[-1]["effectivePeriod"] = {"start": "2019-01-01", "end": "2019-06-30"}
    f = findings_of(p.bundle(), k)
    assert f.magnesium is not None and f.magnesium.causes == []
    assert len(f.magnesium.not_current) == 1 and "ended 2019-06-30" in f.magnesium.not_current[0]
    q = P("mc2", "female", "1960-01-01", "")
    q.lab({"coding": [{"system": "http://loinc.org", "code": "19123-9"}]}, 1.3, "mg/dL", "2026-01-15T08:00:00+01:00")
    q.med("MedicationStatement", FUROSEMIDE, when="2025-12-01")
    g = findings_of(q.bundle(), k)
    assert g.magnesium is not None and len(g.magnesium.causes) == 1 and "Loop diuretic" in g.magnesium.causes[0]


def test_a_washout_for_an_unknown_drug_is_a_load_error(tmp_path: Any) -> None:
    from labinterp.errors import MappingsError
    from labinterp.knowledge import load_knowledge

    (tmp_path / "medications.toml").write_text('[washout.drugs.unobtainium]\ndays = 3\nreason = "test"\n')
    with pytest.raises(MappingsError, match=r"washout.drugs.unobtainium"):
        load_knowledge(tmp_path)
