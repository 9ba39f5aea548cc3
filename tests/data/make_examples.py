"""Writes the example patients: tests/data/patients/*.json (one Bundle each) and the embedded default
service/labinterp/examples/patients.json (all of them in one collection Bundle).

Run after changing a patient: python -m tests.data.make_examples; then regenerate the goldens
(python -m tests.golden_tool --update) and review the diff."""

from __future__ import annotations

import json
from pathlib import Path

from tests.builders import ATC, LZD, MG, MG_MOL, RXNORM, SCR, SCR_MOL, P, loinc, lzd_site

ROOT = Path(__file__).resolve().parents[2]


def patients() -> list[P]:
    out = []
    p = P(
        "p01", "female", "1958-03-10", "trough below range, valid timing; CYP3A5 *1/*3 (IG Genotype); POR *1/*28; dose up, capped"
    )
    p.doses("2026-01-11T20:00:00+01:00", 7)
    p.lab(lzd_site(), 1.5, "mg/L", "2026-01-15T08:00:00+01:00", kind="lzd")
    p.lab(SCR, 0.9, "mg/dL", "2026-01-15T08:00:00+01:00")
    p.genotype("CYP3A5", "CYP3A5 *1/*3")
    p.genotype("POR", "POR *1/*28")
    out.append(p)

    p = P(
        "p02",
        "male",
        "1941-06-01",
        "trough above range (ug/mL, matched by name); age 84; CYP3A5 *3/*3 as IG Variant (GRCh38 T>C hom); order only: timing unchecked",
    )
    p.med(
        "MedicationRequest",
        {"coding": [{"system": RXNORM, "code": "311347", "display": "linezolid 600 MG Oral Tablet"}]},
        when="2026-01-10T09:00:00+01:00",
        dose_mg=600,
        every_h=12,
    )
    p.lab({"text": "Linezolid trough level"}, 12.4, "ug/mL", "2026-01-15T07:55:00+01:00", kind="lzd")
    p.lab(SCR, 1.1, "mg/dL", "2026-01-15T07:55:00+01:00")
    p.variant("CYP3A5", "rs776746", "hom", ref="T", alt="C")
    out.append(p)

    p = P("p03", "female", "1962-09-20", "trough within range; plain genotype 'AG' for CYP3A5 rs776746; rifampicin")
    p.doses("2026-01-10T08:00:00+01:00", 10)
    p.lab(lzd_site(), 5.0, "mg/L", "2026-01-15T08:10:00+01:00", kind="lzd")
    p.plain_genotype("CYP3A5 rs776746 genotype", "AG")
    p.med("MedicationStatement", {"coding": [{"system": ATC, "code": "J04AB02", "display": "rifampicin"}]}, when="2026-01-01")
    out.append(p)

    p = P("p04", "male", "1970-02-14", "trough <0.4 (below LOQ, comparator); MIC 1 ug/mL; no genotype")
    p.doses("2026-01-11T08:00:00+01:00", 8)
    p.lab(lzd_site(), 0.4, "mg/L", "2026-01-15T08:00:00+01:00", comparator="<", kind="lzd")
    p.lab(loinc("29258-1", "Linezolid [Susceptibility]"), 1, "ug/mL", "2026-01-12T10:00:00+01:00", kind="mic")
    out.append(p)

    p = P(
        "p05",
        "female",
        "1950-07-30",
        "trough 52 mg/L above linearity; creatinine 3.2 mg/dL (eGFR < 30); CYP3A4*22 plain 'rs35599367 C/T'",
    )
    p.doses("2026-01-11T20:00:00+01:00", 7)
    p.lab(lzd_site(), 52, "mg/L", "2026-01-15T08:00:00+01:00", kind="lzd")
    p.lab(SCR, 3.2, "mg/dL", "2026-01-15T08:00:00+01:00")
    p.plain_genotype("CYP3A4*22 genotype", "rs35599367 C/T")
    out.append(p)

    p = P(
        "p06",
        "male",
        "1980-11-02",
        "sampled 8 h after a dose, 48 h into therapy: not a valid trough; below MIC 2 mg/L; CYP3A5 *3/*3 as IG Genotype coding display",
    )
    p.doses("2026-01-13T00:00:00+01:00", 4)
    p.lab(lzd_site(), 1.8, "mg/L", "2026-01-14T20:00:00+01:00", kind="lzd")
    p.lab(loinc("29258-1", "Linezolid [Susceptibility]"), 2, "mg/L", "2026-01-13T10:00:00+01:00", kind="mic")
    p.genotype("CYP3A5", display="CYP3A5 *3/*3")
    out.append(p)

    p = P(
        "p07", "female", "1955-04-18", "three troughs falling (trend), one entered-in-error; POR*28 TT plain; CYP3A5 *3/*3 plain"
    )
    p.doses("2026-01-02T08:00:00+01:00", 26)
    p.lab(lzd_site(), 9.5, "mg/L", "2026-01-06T08:00:00+01:00", kind="lzd")
    p.lab(lzd_site(), 7.2, "mg/L", "2026-01-10T08:00:00+01:00", kind="lzd")
    p.lab(lzd_site(), 25.0, "mg/L", "2026-01-12T08:00:00+01:00", status="entered-in-error", kind="lzd")
    p.lab(lzd_site(), 4.1, "mg/L", "2026-01-15T08:00:00+01:00", kind="lzd")
    p.plain_genotype("POR*28 rs1057868", "T/T")
    p.plain_genotype("CYP3A5 genotype", "*3/*3")
    out.append(p)

    p = P(
        "p08",
        "male",
        "1948-12-01",
        "magnesium 1.0 mg/dL severe; furosemide, omeprazole (by name), digoxin; K and Ca low by lab flags; creatinine in umol/L",
    )
    p.lab(MG, 1.0, "mg/dL", "2026-01-15T09:00:00+01:00")
    p.lab(loinc("2823-3", "Potassium [Moles/volume] in Serum or Plasma"), 3.1, "mmol/L", "2026-01-15T09:00:00+01:00", flag="L")
    p.lab(loinc("17861-6", "Calcium [Mass/volume] in Serum or Plasma"), 7.9, "mg/dL", "2026-01-15T09:00:00+01:00", low=8.6)
    p.lab(SCR_MOL, 97, "umol/L", "2026-01-15T09:00:00+01:00")
    p.med(
        "MedicationRequest",
        {"coding": [{"system": ATC, "code": "C03CA01", "display": "furosemide"}], "text": "Furosemide 40 mg"},
        when="2025-12-01T10:00:00+01:00",
    )
    p.med("MedicationStatement", {"text": "Omeprazole 20 mg capsule"}, when="2025-06-01")
    p.med(
        "MedicationStatement",
        {"coding": [{"system": ATC, "code": "C01AA05", "display": "digoxin"}], "text": "Digoxin 0.125 mg"},
        when="2025-03-01",
    )
    out.append(p)

    p = P(
        "p09",
        "female",
        "1945-05-05",
        "magnesium 0.55 mmol/L (hypomagnesemia); creatinine 2.6 mg/dL: eGFR < 30, dose -50 %; FEMg not interpretable; no K, no Ca",
    )
    p.lab(MG_MOL, 0.55, "mmol/L", "2026-01-15T09:00:00+01:00")
    p.lab(SCR, 2.6, "mg/dL", "2026-01-15T09:00:00+01:00")
    p.lab(loinc("19124-7", "Magnesium [Mass/volume] in Urine"), 6.0, "mg/dL", "2026-01-15T10:00:00+01:00")
    p.lab(loinc("2161-8", "Creatinine [Mass/volume] in Urine"), 60.0, "mg/dL", "2026-01-15T10:00:00+01:00")
    out.append(p)

    p = P(
        "p10",
        "male",
        "1990-01-25",
        "magnesium 2.9 mg/dL preliminary (hypermagnesemia); an entered-in-error and a cancelled result ignored",
    )
    p.lab(MG, 0.9, "mg/dL", "2026-01-14T09:00:00+01:00", status="entered-in-error")
    p.lab(MG, 1.1, "mg/dL", "2026-01-14T21:00:00+01:00", status="cancelled")
    p.lab(MG, 2.9, "mg/dL", "2026-01-15T09:00:00+01:00", status="preliminary")
    out.append(p)

    p = P(
        "p11",
        "female",
        "1975-08-08",
        "magnesium 1.1 mEq/L; cisplatin; FEMg from mmol/L urine values > 2 % with normal eGFR: renal wasting",
    )
    p.lab(MG, 1.1, "mEq/L", "2026-01-15T09:00:00+01:00", ucum="meq/L")
    p.lab(SCR, 0.8, "mg/dL", "2026-01-15T09:00:00+01:00")
    p.lab(loinc("2598-1", "Magnesium [Moles/volume] in Urine"), 3.0, "mmol/L", "2026-01-15T10:00:00+01:00")
    p.lab(loinc("14683-7", "Creatinine [Moles/volume] in Urine"), 8.0, "mmol/L", "2026-01-15T10:00:00+01:00")
    p.lab(loinc("2823-3", "Potassium [Moles/volume] in Serum or Plasma"), 4.0, "mmol/L", "2026-01-15T09:00:00+01:00", flag="N")
    p.lab(
        loinc("1995-0", "Calcium.ionized [Moles/volume] in Serum or Plasma"), 1.2, "mmol/L", "2026-01-15T09:00:00+01:00", low=1.12
    )
    p.med(
        "MedicationRequest",
        {"coding": [{"system": ATC, "code": "L01XA01", "display": "cisplatin"}]},
        when="2026-01-05T10:00:00+01:00",
    )
    out.append(p)

    p = P(
        "p12",
        "male",
        None,
        "no trough; ABCB1 c.1236/c.2677/c.3435 homozygous IG Variants with c.HGVS (TTT/TTT); CYP3A4 *1/*22; no birth date: no eGFR, age unknown",
    )
    p.variant("ABCB1", "rs1128503", "hom", hgvs="NM_000927.5:c.1236C>T")
    p.variant("ABCB1", "rs2032582", "hom", hgvs="NM_000927.5:c.2677G>T")
    p.variant("ABCB1", "rs1045642", "hom", hgvs="NM_000927.5:c.3435C>T")
    p.genotype("CYP3A4", "CYP3A4 *1/*22")
    p.lab(SCR, 1.0, "mg/dL", "2026-01-15T09:00:00+01:00")
    p.med("MedicationRequest", LZD, when="2026-01-14T09:00:00+01:00", dose_mg=600, every_h=12)
    out.append(p)

    p = P(
        "p13",
        "female",
        "1966-10-12",
        "linezolid matched by name (serum/plasma text), timing unchecked; eGFR reported for the same specimen; CYP3A5 Variant 'Absent' (*1/*1)",
    )
    p.specimen("p13-s1")
    p.lab({"text": "Linezolid [Mass/volume] in Serum or Plasma"}, 3.2, "mg/L", "2026-01-15T08:00:00+01:00", kind="lzd")
    p.lab(SCR, 0.95, "mg/dL", "2026-01-15T08:00:00+01:00", specimen="Specimen/p13-s1")
    p.lab(
        loinc("98979-8", "Glomerular filtration rate/1.73 sq M.predicted by CKD-EPI 2021"),
        78,
        "mL/min/1.73m2",
        "2026-01-15T08:00:00+01:00",
        ucum="mL/min/{1.73_m2}",
        specimen="Specimen/p13-s1",
    )
    p.variant("CYP3A5", "rs776746", None, present=False, assembly="GRCh38")
    out.append(p)

    p = P(
        "p14",
        "male",
        "1952-02-29",
        "ABCB1 plain strings (1,1,2 T counts): haplotype unclassifiable, c.3435 TT; CYP3A5 *1/*1; weight: Cockcroft-Gault; magnesium normal",
    )
    p.plain_genotype("ABCB1 rs1128503", "C/T")
    p.plain_genotype("ABCB1 c.2677G>T/A", "GT")
    p.plain_genotype("ABCB1 rs1045642", "T/T")
    p.genotype("CYP3A5", "CYP3A5 *1/*1")
    p.lab(SCR, 1.4, "mg/dL", "2026-01-15T09:00:00+01:00")
    p.lab(loinc("29463-7", "Body weight"), 82, "kg", "2026-01-15T09:00:00+01:00")
    p.lab(MG, 1.8, "mg/dL", "2026-01-15T09:00:00+01:00")
    out.append(p)
    return out + everyday()


UCUM = "http://unitsofmeasure.org"


def everyday() -> list[P]:
    """Everyday data beyond the papers' tables (issue 7): an 8-hourly regimen sampled after a dose, a child, an
    unknown sex with poor renal function, molar units, a preliminary result and one unusable result."""
    out = []
    p = P(
        "p15",
        "female",
        "1955-07-02",
        "every-8-hours regimen, level drawn 2 h after a dose: not a trough, when to draw one; rifampicin stopped in 2019 (not current)",
    )
    p.doses("2026-01-11T14:00:00+01:00", 12, every_h=8)  # the last at 06:00, 2 h before the sample
    p.lab(lzd_site(), 11.0, "mg/L", "2026-01-15T08:00:00+01:00", kind="lzd")
    p.med("MedicationStatement", {"coding": [{"system": ATC, "code": "J04AB02", "display": "rifampicin"}]}, status="completed")
    p.resources[-1]["effectivePeriod"] = {"start": "2019-02-01", "end": "2019-05-31"}
    p.genotype("CYP3A5", "CYP3A5 *3/*3")
    out.append(p)

    p = P(
        "p16", "male", "2016-09-12", "child 9 years, 22 kg: magnesium 1.0 mg/dL severe, dose in mg/kg; potassium low by its range"
    )
    p.lab(MG, 1.0, "mg/dL", "2026-01-15T08:30:00+01:00")
    p.lab(loinc("29463-7", "Body weight"), 22, "kg", "2026-01-14T10:00:00+01:00")
    k = p.lab(loinc("2823-3", "Potassium [Moles/volume] in Serum or Plasma"), 3.1, "mmol/L", "2026-01-15T08:30:00+01:00")
    k["referenceRange"] = [
        {
            "low": {"value": 3.5, "unit": "mmol/L", "system": UCUM, "code": "mmol/L"},
            "high": {"value": 5.1, "unit": "mmol/L", "system": UCUM, "code": "mmol/L"},
        }
    ]
    out.append(p)

    p = P(
        "p17",
        None,
        "1945-11-30",
        "sex unknown: eGFR for both sexes, renal gate met by one; magnesium 0.60 mmol/L (normal at the source's precision)",
    )
    p.lab(SCR, 2.2, "mg/dL", "2026-01-15T07:30:00+01:00")
    p.lab(MG_MOL, 0.60, "mmol/L", "2026-01-15T07:30:00+01:00")
    out.append(p)

    p = P(
        "p18",
        "female",
        "1962-04-18",
        "named patient with an identifier; linezolid in umol/L, preliminary, valid trough above range; magnesium in an unknown unit (left out, answered)",
    )
    p.resources[0]["name"] = [{"use": "official", "family": "Rossi", "given": ["Maria"]}]
    p.resources[0]["identifier"] = [{"system": "http://hospital.example.org/mrn", "value": "MRN-0042"}]
    p.doses("2026-01-11T20:00:00+01:00", 7)
    p.lab(lzd_site(), 35.0, "umol/L", "2026-01-15T08:05:00+01:00", status="preliminary", kind="lzd")
    p.lab(MG, 1.7, "U/L", "2026-01-15T08:05:00+01:00")  # a unit magnesium cannot have: left out, never guessed
    out.append(p)

    p = P(
        "p19",
        "male",
        "1971-03-03",
        "CYP3A5 expresser (*1/*3) with a trough of 12 mg/L: the measurement outranks the genotype prior",
    )
    p.doses("2026-01-10T20:00:00+01:00", 9)
    p.lab(lzd_site(), 12.0, "mg/L", "2026-01-15T08:00:00+01:00", kind="lzd")
    p.genotype("CYP3A5", "CYP3A5 *1/*3")
    out.append(p)
    return out


def main() -> None:
    pats = patients()
    target = ROOT / "tests" / "data" / "patients"
    target.mkdir(parents=True, exist_ok=True)
    index = []
    for p in pats:
        (target / f"{p.pid}.json").write_text(json.dumps(p.bundle(), indent=2) + "\n")
        index.append(f"| `{p.pid}.json` | {p.note} |")
    (target / "INDEX.md").write_text("| file | what it exercises |\n|---|---|\n" + "\n".join(index) + "\n")
    everything = {"resourceType": "Bundle", "type": "collection", "entry": [e for p in pats for e in p.bundle()["entry"]]}
    examples = ROOT / "service" / "labinterp" / "examples"
    examples.mkdir(parents=True, exist_ok=True)
    (examples / "patients.json").write_text(json.dumps(everything, indent=2) + "\n")
    print(f"wrote {len(pats)} patients")


if __name__ == "__main__":
    main()
