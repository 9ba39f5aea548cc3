"""Builders of FHIR test resources: one patient's Bundle, written the way laboratories send them."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
SITE = "http://lab.example.org/codes"
ATC = "http://www.whocc.no/atc"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
HGNC = {"CYP3A5": "HGNC:2638", "CYP3A4": "HGNC:2637", "POR": "HGNC:9208", "ABCB1": "HGNC:40"}
CAT = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}]
GE = [*CAT, {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "GE"}]}]


class P:
    """Builds one patient's resources."""

    def __init__(self, pid: str, gender: str | None, birth: str | None, note: str) -> None:
        self.pid, self.note = pid, note
        patient: dict[str, Any] = {"resourceType": "Patient", "id": pid, "meta": {"versionId": "1"}}
        if gender:
            patient["gender"] = gender
        if birth:
            patient["birthDate"] = birth
        self.resources: list[dict[str, Any]] = [patient]
        self.n = 0

    def _id(self, kind: str) -> str:
        self.n += 1
        return f"{self.pid}-{kind}{self.n}"

    def _obs(
        self, kind: str, code: dict[str, Any], when: str | None, status: str = "final", category: Any = None, **value: Any
    ) -> dict[str, Any]:
        obs: dict[str, Any] = {
            "resourceType": "Observation",
            "id": self._id(kind),
            "meta": {"versionId": "1"},
            "status": status,
            "category": category or CAT,
            "code": code,
            "subject": {"reference": f"Patient/{self.pid}"},
        }
        if when:
            obs["effectiveDateTime"] = when
        obs.update(value)
        self.resources.append(obs)
        return obs

    def lab(
        self,
        code: dict[str, Any],
        value: float,
        unit: str,
        when: str,
        *,
        ucum: str | None = None,
        status: str = "final",
        comparator: str | None = None,
        flag: str | None = None,
        low: float | None = None,
        specimen: str | None = None,
        kind: str = "lab",
    ) -> dict[str, Any]:
        q: dict[str, Any] = {"value": value, "unit": unit, "system": UCUM, "code": ucum or unit}
        if comparator:
            q = {"value": value, "comparator": comparator, "unit": unit, "system": UCUM, "code": ucum or unit}
        extra: dict[str, Any] = {"valueQuantity": q}
        if flag:
            extra["interpretation"] = [
                {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": flag}]}
            ]
        if low is not None:
            extra["referenceRange"] = [{"low": {"value": low, "unit": unit, "system": UCUM, "code": ucum or unit}}]
        if specimen:
            extra["specimen"] = {"reference": specimen}
        return self._obs(kind, code, when, status, **extra)

    def genotype(self, gene: str, text: str | None = None, display: str | None = None, when: str = "2025-11-03") -> None:
        value: dict[str, Any] = {"text": text} if text else {"coding": [{"display": display}]}
        obs = self._obs(
            "gt",
            {"coding": [{"system": LOINC, "code": "84413-4", "display": "Genotype display name"}]},
            when,
            category=GE,
            valueCodeableConcept=value,
            component=[
                {
                    "code": {"coding": [{"system": LOINC, "code": "48018-6", "display": "Gene studied [ID]"}]},
                    "valueCodeableConcept": {
                        "coding": [{"system": "http://www.genenames.org", "code": HGNC[gene], "display": gene}]
                    },
                }
            ],
        )
        obs["meta"]["profile"] = ["http://hl7.org/fhir/uv/genomics-reporting/StructureDefinition/genotype"]

    def variant(
        self,
        gene: str,
        rsid: str,
        state: str | None,
        ref: str | None = None,
        alt: str | None = None,
        hgvs: str | None = None,
        present: bool = True,
        when: str = "2025-11-03",
        assembly: str | None = None,
    ) -> None:
        comps = [
            {
                "code": {"coding": [{"system": LOINC, "code": "48018-6", "display": "Gene studied [ID]"}]},
                "valueCodeableConcept": {"coding": [{"system": "http://www.genenames.org", "code": HGNC[gene], "display": gene}]},
            },
            {
                "code": {"coding": [{"system": LOINC, "code": "81252-9", "display": "Discrete genetic variant"}]},
                "valueCodeableConcept": {"coding": [{"system": "http://www.ncbi.nlm.nih.gov/projects/SNP", "code": rsid}]},
            },
        ]
        if state:
            code = {"het": ("LA6706-1", "Heterozygous"), "hom": ("LA6705-3", "Homozygous")}[state]
            comps.append(
                {
                    "code": {"coding": [{"system": LOINC, "code": "53034-5", "display": "Allelic state"}]},
                    "valueCodeableConcept": {"coding": [{"system": LOINC, "code": code[0], "display": code[1]}]},
                }
            )
        if ref and alt:
            comps.append(
                {
                    "code": {"coding": [{"system": LOINC, "code": "69547-8", "display": "Genomic ref allele [ID]"}]},
                    "valueString": ref,
                }
            )
            comps.append(
                {
                    "code": {"coding": [{"system": LOINC, "code": "69551-0", "display": "Genomic alt allele [ID]"}]},
                    "valueString": alt,
                }
            )
        if assembly:
            answer = {"GRCh38": "LA26806-2", "GRCh37": "LA14029-5"}[assembly]
            comps.append(
                {
                    "code": {
                        "coding": [{"system": LOINC, "code": "62374-4", "display": "Human reference sequence assembly version"}]
                    },
                    "valueCodeableConcept": {"coding": [{"system": LOINC, "code": answer, "display": assembly}]},
                }
            )
        if hgvs:
            comps.append(
                {
                    "code": {"coding": [{"system": LOINC, "code": "48004-6", "display": "DNA change (c.HGVS)"}]},
                    "valueCodeableConcept": {"coding": [{"system": "http://varnomen.hgvs.org", "code": hgvs}]},
                }
            )
        value = {"coding": [{"system": LOINC, "code": "LA9633-4", "display": "Present"}]} if present else {"text": "Absent"}
        obs = self._obs(
            "var",
            {"coding": [{"system": LOINC, "code": "69548-6", "display": "Genetic variant assessment"}]},
            when,
            category=GE,
            valueCodeableConcept=value,
            component=comps,
        )
        obs["meta"]["profile"] = ["http://hl7.org/fhir/uv/genomics-reporting/StructureDefinition/variant"]

    def plain_genotype(self, code_text: str, value: str, when: str = "2025-11-03") -> None:
        self._obs(
            "pg",
            {"coding": [{"system": SITE, "code": "PGX-" + code_text.split()[0]}], "text": code_text},
            when,
            valueString=value,
        )

    def med(
        self,
        kind: str,
        concept: dict[str, Any],
        *,
        when: str | None = None,
        dose_mg: float | None = None,
        every_h: float | None = None,
        status: str | None = None,
    ) -> None:
        res: dict[str, Any] = {
            "resourceType": kind,
            "id": self._id(kind[10:14].lower() or "med"),
            "meta": {"versionId": "1"},
            "medicationCodeableConcept": concept,
            "subject": {"reference": f"Patient/{self.pid}"},
        }
        if kind == "MedicationAdministration":
            res["status"] = status or "completed"
            res["effectiveDateTime"] = when
            if dose_mg:
                res["dosage"] = {"dose": {"value": dose_mg, "unit": "mg", "system": UCUM, "code": "mg"}}
        elif kind == "MedicationRequest":
            res["status"], res["intent"] = status or "active", "order"
            if when:
                res["authoredOn"] = when
            if dose_mg and every_h:
                res["dosageInstruction"] = [
                    {
                        "timing": {"repeat": {"frequency": 1, "period": every_h, "periodUnit": "h"}},
                        "doseAndRate": [{"doseQuantity": {"value": dose_mg, "unit": "mg", "system": UCUM, "code": "mg"}}],
                    }
                ]
        else:
            res["status"] = status or "active"
            if when:
                res["effectivePeriod"] = {"start": when}
        self.resources.append(res)

    def doses(self, first: str, count: int, every_h: int = 12, mg: float = 600) -> None:
        t0 = datetime.fromisoformat(first)
        for i in range(count):
            self.med("MedicationAdministration", LZD, when=(t0 + timedelta(hours=every_h * i)).isoformat(), dose_mg=mg)

    def specimen(self, sid: str) -> str:
        self.resources.append(
            {
                "resourceType": "Specimen",
                "id": sid,
                "meta": {"versionId": "1"},
                "subject": {"reference": f"Patient/{self.pid}"},
                "type": {"text": "Serum"},
            }
        )
        return f"Specimen/{sid}"

    def bundle(self) -> dict[str, Any]:
        return {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [
                {"fullUrl": f"http://example.org/fhir/{r['resourceType']}/{r['id']}", "resource": r} for r in self.resources
            ],
        }


def lzd_site() -> dict[str, Any]:
    return {
        "coding": [{"system": SITE, "code": "LZD-P", "display": "Linezolid, plasma"}],
        "text": "Linezolid plasma concentration",
    }


def loinc(code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": LOINC, "code": code, "display": display}]}


LZD = {"coding": [{"system": ATC, "code": "J01XX08", "display": "linezolid"}], "text": "Linezolid 600 mg"}
SCR = loinc("2160-0", "Creatinine [Mass/volume] in Serum or Plasma")
SCR_MOL = loinc("14682-9", "Creatinine [Moles/volume] in Serum or Plasma")
MG = loinc("19123-9", "Magnesium [Mass/volume] in Serum or Plasma")
MG_MOL = loinc("2601-3", "Magnesium [Moles/volume] in Serum or Plasma")


OLD_JOBS_TABLE = (
    "CREATE TABLE jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, patient TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', "
    "state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0, not_before REAL NOT NULL, "
    "created REAL NOT NULL, updated REAL NOT NULL, error TEXT NOT NULL DEFAULT '');"
)


def old_queue_file(path: Any, *patients: str) -> Any:
    """A queue file as the first release wrote it (no warnings, correlation, retryable or run tables), with a
    pending job for each patient given: what the migrations of labinterp.server.queue must read."""
    import sqlite3

    db = sqlite3.connect(path)
    db.executescript(OLD_JOBS_TABLE)
    db.executemany("INSERT INTO jobs (patient, not_before, created, updated) VALUES (?, 0, 0, 0)", [(p,) for p in patients])
    db.commit()
    db.close()
    return path
