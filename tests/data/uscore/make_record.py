"""A Synthea-like US Core record for one patient, as a US EHR exports it: a transaction Bundle whose every entry
has a `urn:uuid:` fullUrl and is POSTed, every reference a `urn:uuid:` one, US Core `meta.profile` on each resource
US Core profiles (MedicationAdministration has none in US Core: it carries none, as Synthea's do), and years of
history: encounters with vital signs, a basic metabolic panel every few months (creatinine, potassium, sodium,
glucose, urea nitrogen) with its DiagnosticReport, magnesium now and then, conditions, immunizations,
procedures, chronic medications, a CYP3A5 genotype and, at the end, an inpatient linezolid course with its
orders, administrations and a trough. A few old results are odd, as real records are: a creatinine in µmol/L
sent with a display unit only, a cancelled magnesium, a magnesium in a unit labinterp does not know.

Deterministic (seeded): `python tests/data/uscore/make_record.py` rewrites uscore-record.json beside it; the
checked-in file is what the tests read.
"""

from __future__ import annotations

import argparse
import json
import random
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "uscore-record.json"
SEED = 20260109

US = "http://hl7.org/fhir/us/core/StructureDefinition/"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CVX = "http://hl7.org/fhir/sid/cvx"
UCUM = "http://unitsofmeasure.org"
OBS_CAT = "http://terminology.hl7.org/CodeSystem/observation-category"
LAB_CODES = "http://lab.example-hospital.org/codes"  # the hospital laboratory's local codes (no LOINC for linezolid)

START = date(2020, 1, 14)  # first visit of the history
COURSE = datetime(2025, 6, 10, 8, 0, tzinfo=UTC)  # first linezolid dose (inpatient)
TROUGH = COURSE + timedelta(days=4)  # 08:00 on day 5, 12 h after the 20:00 dose, 96 h into therapy
NOW = "2025-06-14T12:00:00Z"  # the evaluation time the tests use


class Record:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.entries: list[dict[str, Any]] = []

    def uid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def add(self, resource: dict[str, Any], profile: str | None) -> str:
        rid = self.uid()
        body: dict[str, Any] = {"resourceType": resource.pop("resourceType"), "id": rid}
        if profile:
            body["meta"] = {"profile": [US + profile]}
        body.update(resource)
        self.entries.append(
            {"fullUrl": f"urn:uuid:{rid}", "resource": body, "request": {"method": "POST", "url": body["resourceType"]}}
        )
        return f"urn:uuid:{rid}"

    def bundle(self) -> dict[str, Any]:
        return {"resourceType": "Bundle", "type": "transaction", "entry": self.entries}


def cc(system: str, code: str, display: str, text: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"coding": [{"system": system, "code": code, "display": display}]}
    out["text"] = text or display
    return out


def qty(value: float, unit: str, code: str | None = None) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": code or unit}


def category(code: str, display: str) -> list[dict[str, Any]]:
    return [{"coding": [{"system": OBS_CAT, "code": code, "display": display}], "text": display}]


def iso(t: datetime, millis: int | None = None) -> str:
    """As Synthea writes instants: an offset always, milliseconds on `issued`."""
    ms = f".{millis:03d}" if millis is not None else ""
    return t.strftime("%Y-%m-%dT%H:%M:%S") + ms + "+00:00"


# (LOINC, display, unit, low, high, decimals) of the basic metabolic panel as the laboratory reports it
PANEL = [
    ("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL", 78, 126, 0),
    ("3094-0", "Urea nitrogen [Mass/volume] in Serum or Plasma", "mg/dL", 9, 24, 0),
    ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", 0.85, 1.25, 2),
    ("2951-2", "Sodium [Moles/volume] in Serum or Plasma", "mmol/L", 136, 145, 0),
    ("2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L", 3.6, 5.0, 1),
    ("2075-0", "Chloride [Moles/volume] in Serum or Plasma", "mmol/L", 98, 107, 0),
]


def make(seed: int = SEED) -> dict[str, Any]:
    rec = Record(seed)
    rng = rec.rng
    org = rec.add(
        {
            "resourceType": "Organization",
            "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1144221847"}],
            "active": True,
            "type": [cc("http://terminology.hl7.org/CodeSystem/organization-type", "prov", "Healthcare Provider")],
            "name": "Example Community Hospital",
            "telecom": [{"system": "phone", "value": "555-555-0100"}],
            "address": [{"line": ["1 Hospital Way"], "city": "Springfield", "state": "MA", "postalCode": "01101"}],
        },
        "us-core-organization",
    )
    doctor = rec.add(
        {
            "resourceType": "Practitioner",
            "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "9999994792"}],
            "active": True,
            "name": [{"family": "Okafor", "given": ["Adaeze"], "prefix": ["Dr."]}],
            "gender": "female",
        },
        "us-core-practitioner",
    )
    omb = "urn:oid:2.16.840.1.113883.6.238"
    patient = rec.add(
        {
            "resourceType": "Patient",
            "extension": [
                {
                    "url": US + "us-core-race",
                    "extension": [
                        {"url": "ombCategory", "valueCoding": {"system": omb, "code": "2106-3", "display": "White"}},
                        {"url": "text", "valueString": "White"},
                    ],
                },
                {
                    "url": US + "us-core-ethnicity",
                    "extension": [
                        {
                            "url": "ombCategory",
                            "valueCoding": {"system": omb, "code": "2186-5", "display": "Not Hispanic or Latino"},
                        },
                        {"url": "text", "valueString": "Not Hispanic or Latino"},
                    ],
                },
                {"url": US + "us-core-birthsex", "valueCode": "M"},
            ],
            "identifier": [
                {
                    "type": cc("http://terminology.hl7.org/CodeSystem/v2-0203", "MR", "Medical Record Number"),
                    "system": "http://hospital.example.org/mrn",
                    "value": "MRN-0047731",
                },
                {
                    "type": cc("http://terminology.hl7.org/CodeSystem/v2-0203", "SS", "Social Security Number"),
                    "system": "http://hl7.org/fhir/sid/us-ssn",
                    "value": "999-41-7788",
                },
            ],
            "name": [{"use": "official", "family": "Halvorsen", "given": ["Erik", "James"], "prefix": ["Mr."]}],
            "telecom": [{"system": "phone", "value": "555-555-0147", "use": "home"}],
            "gender": "male",
            "birthDate": "1956-08-22",
            "address": [
                {"line": ["48 Elm Street"], "city": "Springfield", "state": "MA", "postalCode": "01103", "country": "US"}
            ],
            "maritalStatus": cc("http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "M", "Married"),
            "communication": [{"language": cc("urn:ietf:bcp:47", "en-US", "English (United States)"), "preferred": True}],
        },
        "us-core-patient",
    )
    subject = {"reference": patient}
    performer = [{"reference": org, "display": "Example Community Hospital Laboratory"}]

    def encounter(when: datetime, kind: str, hours: float = 0.5, inpatient: bool = False) -> str:
        types = {
            "checkup": ("185349003", "Encounter for check up (procedure)"),
            "follow-up": ("390906007", "Follow-up encounter (procedure)"),
            "admission": ("32485007", "Hospital admission (procedure)"),
        }
        code, display = types[kind]
        return rec.add(
            {
                "resourceType": "Encounter",
                "identifier": [{"system": "http://hospital.example.org/visit", "value": f"V{rng.randrange(10**6, 10**7)}"}],
                "status": "finished",
                "class": {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                    "code": "IMP" if inpatient else "AMB",
                    "display": "inpatient encounter" if inpatient else "ambulatory",
                },
                "type": [cc(SNOMED, code, display)],
                "subject": subject,
                "participant": [{"individual": {"reference": doctor, "display": "Dr. Adaeze Okafor"}}],
                "period": {"start": iso(when), "end": iso(when + timedelta(hours=hours))},
                "serviceProvider": {"reference": org, "display": "Example Community Hospital"},
            },
            "us-core-encounter",
        )

    def observation(
        when: datetime,
        enc: str,
        code: dict[str, Any],
        profile: str,
        cat: tuple[str, str] = ("laboratory", "Laboratory"),
        status: str = "final",
        **value: Any,
    ) -> str:
        body: dict[str, Any] = {
            "resourceType": "Observation",
            "status": status,
            "category": category(*cat),
            "code": code,
            "subject": subject,
            "encounter": {"reference": enc},
            "effectiveDateTime": iso(when),
            "issued": iso(when + timedelta(hours=2), rng.randrange(1000)),
        }
        if cat[0] == "laboratory":
            body["performer"] = performer
        body.update(value)
        return rec.add(body, profile)

    def vitals(when: datetime, enc: str, weight: float) -> None:
        vs = ("vital-signs", "Vital Signs")
        observation(
            when,
            enc,
            cc(LOINC, "29463-7", "Body weight"),
            "us-core-body-weight",
            vs,
            valueQuantity=qty(round(weight, 1), "kg"),
        )
        systolic, diastolic = rng.randint(122, 148), rng.randint(72, 92)
        observation(
            when,
            enc,
            cc(LOINC, "85354-9", "Blood pressure panel with all children optional"),
            "us-core-blood-pressure",
            vs,
            component=[
                {"code": cc(LOINC, "8480-6", "Systolic blood pressure"), "valueQuantity": qty(systolic, "mm[Hg]")},
                {"code": cc(LOINC, "8462-4", "Diastolic blood pressure"), "valueQuantity": qty(diastolic, "mm[Hg]")},
            ],
        )
        observation(
            when,
            enc,
            cc(LOINC, "8867-4", "Heart rate"),
            "us-core-heart-rate",
            vs,
            valueQuantity=qty(rng.randint(62, 88), "/min"),
        )

    def lab_report(when: datetime, enc: str, code: dict[str, Any], results: list[str]) -> None:
        rec.add(
            {
                "resourceType": "DiagnosticReport",
                "status": "final",
                "category": [
                    {
                        "coding": [
                            {"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB", "display": "Laboratory"}
                        ]
                    }
                ],
                "code": code,
                "subject": subject,
                "encounter": {"reference": enc},
                "effectiveDateTime": iso(when),
                "issued": iso(when + timedelta(hours=3)),
                "performer": performer,
                "result": [{"reference": r} for r in results],
            },
            "us-core-diagnosticreport-lab",
        )

    def panel(when: datetime, enc: str, creatinine: float, odd_creatinine: bool = False) -> None:
        results = []
        for loinc, display, unit, low, high, decimals in PANEL:
            value = creatinine if loinc == "2160-0" else round(rng.uniform(low, high), decimals)
            value = int(value) if decimals == 0 else value
            if loinc == "2160-0" and odd_creatinine:
                # an old result from another laboratory: µmol/L, its display unit only, a local code beside LOINC
                code = {
                    "coding": [
                        {"system": LOINC, "code": "14682-9", "display": "Creatinine [Moles/volume] in Serum or Plasma"},
                        {"system": "http://other-lab.example.org/codes", "code": "CREA", "display": "Creatinine"},
                    ],
                    "text": "Creatinine",
                }
                quantity: dict[str, Any] = {"value": round(value * 88.42), "unit": "µmol/L"}
                ref_range: list[dict[str, Any]] = [
                    {"low": {"value": 62, "unit": "µmol/L"}, "high": {"value": 115, "unit": "µmol/L"}}
                ]
            else:
                code = cc(LOINC, loinc, display)
                quantity = qty(value, unit)
                ref_range = [{"low": qty(low, unit), "high": qty(high, unit), "text": f"{low}-{high} {unit}"}]
            results.append(
                observation(
                    when,
                    enc,
                    code,
                    "us-core-observation-lab",
                    valueQuantity=quantity,
                    referenceRange=ref_range,
                )
            )
        lab_report(when, enc, cc(LOINC, "51990-0", "Basic metabolic panel - Blood"), results)

    def magnesium(when: datetime, enc: str, value: float, status: str = "final", unit: str = "mg/dL") -> None:
        extra: dict[str, Any] = {}
        if status == "cancelled":
            extra["dataAbsentReason"] = cc(
                "http://terminology.hl7.org/CodeSystem/data-absent-reason", "not-performed", "Not Performed"
            )
        elif unit == "mg/dL":
            extra["valueQuantity"] = qty(value, "mg/dL")
            extra["referenceRange"] = [{"low": qty(1.6, "mg/dL"), "high": qty(2.6, "mg/dL")}]
        else:  # a unit no conversion is known for: as the old laboratory system sent it
            extra["valueQuantity"] = {"value": value, "unit": unit}
        observation(
            when,
            enc,
            cc(LOINC, "19123-9", "Magnesium [Mass/volume] in Serum or Plasma"),
            "us-core-observation-lab",
            status=status,
            **extra,
        )

    # --- chronic conditions, medications -------------------------------------------------------
    def condition(code: str, display: str, onset: date, enc: str | None, active: bool = True) -> None:
        body: dict[str, Any] = {
            "resourceType": "Condition",
            "clinicalStatus": cc(
                "http://terminology.hl7.org/CodeSystem/condition-clinical",
                "active" if active else "resolved",
                "Active" if active else "Resolved",
            ),
            "verificationStatus": cc("http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed", "Confirmed"),
            "category": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                            "code": "encounter-diagnosis",
                            "display": "Encounter Diagnosis",
                        }
                    ]
                }
            ],
            "code": cc(SNOMED, code, display),
            "subject": subject,
            "onsetDateTime": onset.isoformat(),
            "recordedDate": onset.isoformat(),
        }
        if enc:
            body["encounter"] = {"reference": enc}
        if not active:
            body["abatementDateTime"] = (onset + timedelta(days=21)).isoformat()
        rec.add(body, "us-core-condition-encounter-diagnosis")

    def order(
        rx: str,
        display: str,
        authored: date,
        enc: str,
        status: str,
        text: str,
        dose: float,
        freq: int,
        medication: str | None = None,
    ) -> str:
        drug = (
            {"medicationReference": {"reference": medication}}
            if medication
            else {"medicationCodeableConcept": cc(RXNORM, rx, display)}
        )
        return rec.add(
            {
                "resourceType": "MedicationRequest",
                "status": status,
                "intent": "order",
                **drug,
                "subject": subject,
                "encounter": {"reference": enc},
                "authoredOn": authored.isoformat(),
                "requester": {"reference": doctor, "display": "Dr. Adaeze Okafor"},
                "dosageInstruction": [
                    {
                        "text": text,
                        "timing": {"repeat": {"frequency": freq, "period": 1, "periodUnit": "d"}},
                        "doseAndRate": [{"doseQuantity": qty(dose, "mg")}],
                    }
                ],
            },
            "us-core-medicationrequest",
        )

    # --- the history: a visit every 2-3 months, a metabolic panel at most of them -------------
    day = START
    visit = 0
    weight = 92.0
    creatinine = 0.92
    while day < date(2025, 5, 20):
        when = datetime(day.year, day.month, day.day, rng.randint(8, 15), rng.choice((0, 15, 30, 45)), tzinfo=UTC)
        enc = encounter(when, "checkup" if visit % 4 == 0 else "follow-up")
        weight += rng.uniform(-1.2, 0.9)
        vitals(when, enc, weight)
        creatinine = round(min(1.35, max(0.8, creatinine + rng.uniform(-0.05, 0.07))), 2)
        if visit % 4 != 3:  # most visits: a panel
            panel(when + timedelta(minutes=20), enc, creatinine, odd_creatinine=visit == 2)
        if visit in (1, 6, 11, 16):
            magnesium(when + timedelta(minutes=20), enc, round(rng.uniform(1.8, 2.3), 1))
        if visit == 4:
            magnesium(when + timedelta(minutes=20), enc, 0.0, status="cancelled")
        if visit == 9:
            magnesium(when + timedelta(minutes=20), enc, 1.9, unit="mg/100mL")
        if visit % 4 == 0:  # a yearly influenza vaccine
            rec.add(
                {
                    "resourceType": "Immunization",
                    "status": "completed",
                    "vaccineCode": cc(CVX, "140", "Influenza, seasonal, injectable, preservative free"),
                    "patient": subject,
                    "encounter": {"reference": enc},
                    "occurrenceDateTime": iso(when),
                    "primarySource": True,
                    "location": {"display": "Example Community Hospital"},
                },
                "us-core-immunization",
            )
        if visit == 0:
            condition("59621000", "Essential hypertension (disorder)", day, enc)
            condition("714628002", "Prediabetes (finding)", day, enc)
            order("314076", "lisinopril 10 MG Oral Tablet", day, enc, "active", "10 mg once daily", 10, 1)
            order("617312", "atorvastatin 10 MG Oral Tablet", day, enc, "active", "10 mg once daily", 10, 1)
        if visit == 5:
            condition("444814009", "Viral sinusitis (disorder)", day, enc, active=False)
            order("308182", "amoxicillin 500 MG Oral Capsule", day, enc, "completed", "500 mg three times daily", 500, 3)
        if visit == 8:
            rec.add(
                {
                    "resourceType": "Immunization",
                    "status": "completed",
                    "vaccineCode": cc(CVX, "113", "Td (adult) preservative free"),
                    "patient": subject,
                    "encounter": {"reference": enc},
                    "occurrenceDateTime": iso(when),
                    "primarySource": True,
                },
                "us-core-immunization",
            )
        if visit in (3, 12, 20):  # screening and minor procedures
            names = {
                3: ("73761001", "Colonoscopy (procedure)"),
                12: ("171207006", "Depression screening (procedure)"),
                20: ("268556000", "Urine screening for glucose (procedure)"),
            }
            code, display = names[visit]
            rec.add(
                {
                    "resourceType": "Procedure",
                    "status": "completed",
                    "code": cc(SNOMED, code, display),
                    "subject": subject,
                    "encounter": {"reference": enc},
                    "performedPeriod": {"start": iso(when), "end": iso(when + timedelta(minutes=30))},
                    "location": {"display": "Example Community Hospital"},
                },
                "us-core-procedure",
            )
        if visit == 14:  # pharmacogenetic panel before a planned therapy
            rec.add(
                {
                    "resourceType": "Observation",
                    "status": "final",
                    "category": category("laboratory", "Laboratory"),
                    "code": {
                        "coding": [
                            {"system": LOINC, "code": "84413-4", "display": "Genotype display name"},
                            {"system": LAB_CODES, "code": "PGX-CYP3A5", "display": "CYP3A5 genotype"},
                        ],
                        "text": "CYP3A5 genotype",
                    },
                    "subject": subject,
                    "encounter": {"reference": enc},
                    "effectiveDateTime": day.isoformat(),
                    "issued": iso(when + timedelta(days=9)),
                    "performer": performer,
                    "valueCodeableConcept": {"text": "CYP3A5 *1/*3"},
                },
                "us-core-observation-lab",
            )
        visit += 1
        day += timedelta(days=rng.randint(62, 92))

    # --- the admission: osteomyelitis with MRSA, linezolid 600 mg every 12 h --------------------
    admitted = COURSE - timedelta(hours=20)
    enc = encounter(admitted, "admission", hours=24 * 6, inpatient=True)
    condition("60168000", "Osteomyelitis (disorder)", admitted.date(), enc)
    condition("266096002", "Methicillin resistant Staphylococcus aureus infection (disorder)", admitted.date(), enc)
    rec.add(
        {
            "resourceType": "Procedure",
            "status": "completed",
            "code": cc(SNOMED, "392231009", "Intravenous injection (procedure)"),
            "subject": subject,
            "encounter": {"reference": enc},
            "performedDateTime": iso(admitted + timedelta(hours=2)),
        },
        "us-core-procedure",
    )
    vitals(admitted, enc, weight)
    panel(admitted + timedelta(hours=1), enc, round(creatinine + 0.08, 2))
    magnesium(admitted + timedelta(hours=1), enc, 1.4)
    # the hospital formulary's Medication, referenced by the order through its urn:uuid (as Synthea does)
    linezolid = rec.add(
        {"resourceType": "Medication", "code": cc(RXNORM, "311347", "linezolid 600 MG Oral Tablet"), "status": "active"},
        "us-core-medication",
    )
    lzd_order = order(
        "311347", "linezolid 600 MG Oral Tablet", COURSE.date(), enc, "active", "600 mg every 12 hours", 600, 2, linezolid
    )
    for i in range(8):  # 08:00 and 20:00 for four days; the trough is drawn before the 9th dose
        given = COURSE + timedelta(hours=12 * i)
        rec.add(
            {
                "resourceType": "MedicationAdministration",
                "status": "completed",
                "medicationCodeableConcept": cc(RXNORM, "311347", "linezolid 600 MG Oral Tablet"),
                "subject": subject,
                "context": {"reference": enc},
                "effectiveDateTime": iso(given),
                "request": {"reference": lzd_order},
                "dosage": {"route": cc(SNOMED, "26643006", "Oral route"), "dose": qty(600, "mg")},
            },
            None,
        )
    trough = observation(
        TROUGH,
        enc,
        {
            "coding": [{"system": LAB_CODES, "code": "LZD-T", "display": "Linezolid [Mass/volume] in Serum or Plasma --trough"}],
            "text": "Linezolid trough, plasma",
        },
        "us-core-observation-lab",
        valueQuantity=qty(9.6, "mg/L"),
        referenceRange=[{"low": qty(2, "mg/L"), "high": qty(8, "mg/L"), "text": "2-8 mg/L (trough)"}],
    )
    lab_report(TROUGH, enc, {"coding": [{"system": LAB_CODES, "code": "LZD-TDM", "display": "Linezolid TDM"}]}, [trough])
    panel(TROUGH, enc, round(creatinine + 0.05, 2))
    rec.add(  # as Synthea closes its Bundles: who recorded every resource of it
        {
            "resourceType": "Provenance",
            "target": [{"reference": e["fullUrl"]} for e in rec.entries],
            "recorded": iso(TROUGH + timedelta(hours=3), 0),
            "agent": [
                {
                    "type": cc("http://terminology.hl7.org/CodeSystem/provenance-participant-type", "author", "Author"),
                    "who": {"reference": doctor, "display": "Dr. Adaeze Okafor"},
                    "onBehalfOf": {"reference": org, "display": "Example Community Hospital"},
                }
            ],
        },
        "us-core-provenance",
    )
    return rec.bundle()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    bundle = make(args.seed)
    args.out.write_text(json.dumps(bundle, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    counts: dict[str, int] = {}
    for e in bundle["entry"]:
        counts[e["resource"]["resourceType"]] = counts.get(e["resource"]["resourceType"], 0) + 1
    print(f"{args.out}: {len(bundle['entry'])} resources", dict(sorted(counts.items())))


if __name__ == "__main__":
    main()
