"""Writes the example microsphere batches: service/labinterp/examples/batches.json (one collection Bundle).

Run after changing a batch: python -m tests.data.make_batches. Deterministic (seeded). The batches go with the
example site overlay mappings/sites/example-compounding-lab (a fictional laboratory's limits for KMS-01):

1. kms-01-2608a: meets every example limit (release close to Korsmeyer-Peppas with n = 0.6, stability 0/30/60 days
   in three conditions, swelling in four media at 37 °C, 100 diameters all inside 1-1000 um, qualitative findings);
2. kms-01-2609b: fails (entrapment efficiency below the limit, a wide size distribution with agglomerates above
   1000 um); release times in minutes, swelling indexes computed by the laboratory;
3. kms-01-2610a: incomplete (no 60-day stability result yet); VMD in mm, drug content in % w/w, a preliminary
   zeta potential;
4. dms-02-2609a: a product (DMS-02) with no limits configured.

The builders here are reused by tests/unit/test_qc_extract.py."""

from __future__ import annotations

import json
import math
import random
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
QC = "urn:labinterp:formulation-qc"
UCUM = "http://unitsofmeasure.org"
PRODUCTS = "urn:example:compounding-lab:products"
LOTS = "urn:example:compounding-lab:lots"
BASE_URL = "http://example.org/fhir"

WATER = "distilled water"
PH12 = "pH 1.2 hydrochloric acid buffer"
PH45 = "pH 4.5 acetate buffer"
PH74 = "pH 7.4 phosphate buffer"
ROOM = "27 ± 2 °C room"
OVEN = "40 ± 2 °C"
FRIDGE = "refrigerated 2–8 °C"
CONDITION_TEMPERATURE = {ROOM: 27.0, OVEN: 40.0, FRIDGE: 5.0}
UNIT_TEXT = {"um": "µm", "Cel": "°C", "mg/(100.mg)": "mg/100 mg"}


def qty(value: float, unit: str, digits: int = 3) -> dict[str, Any]:
    return {"value": round(value, digits), "unit": UNIT_TEXT.get(unit, unit), "system": UCUM, "code": unit}


def concept(code: str, display: str, system: str = QC) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def comp_qty(code: str, value: float, unit: str, digits: int = 3) -> dict[str, Any]:
    return {"code": {"coding": [{"system": QC, "code": code}]}, "valueQuantity": qty(value, unit, digits)}


def comp_text(code: str, text: str) -> dict[str, Any]:
    return {"code": {"coding": [{"system": QC, "code": code}]}, "valueCodeableConcept": {"text": text}}


def elapsed(hours: float, unit: str = "h") -> dict[str, Any]:
    return comp_qty("elapsed-time", hours * 60 if unit == "min" else hours, unit, 2)


def stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S+02:00")


class Batch:
    """One batch: a Substance, its Specimens and its Observations (FHIR R4 JSON)."""

    def __init__(self, bid: str, product: str, product_name: str, lot: str, made: str, note: str = "") -> None:
        self.bid, self.note = bid, note
        self.made = datetime.fromisoformat(made)
        self.resources: list[dict[str, Any]] = [
            {
                "resourceType": "Substance",
                "id": bid,
                "category": [concept("drug", "Drug or Medicament", "http://terminology.hl7.org/CodeSystem/substance-category")],
                "code": {"coding": [{"system": PRODUCTS, "code": product, "display": product_name}], "text": product_name},
                "instance": [
                    {"identifier": {"system": LOTS, "value": lot}, "expiry": stamp(self.made + timedelta(days=365))[:10]}
                ],
            }
        ]
        self.n = 0

    def ingredients(self, *names: str) -> Batch:
        self.resources[0]["ingredient"] = [{"substanceCodeableConcept": {"text": n}} for n in names]
        return self

    def specimen(self, suffix: str, text: str, collected: datetime) -> str:
        sid = f"{self.bid}-{suffix}"
        self.resources.append(
            {
                "resourceType": "Specimen",
                "id": sid,
                "type": {"text": text},
                "subject": {"reference": f"Substance/{self.bid}"},
                "collection": {"collectedDateTime": stamp(collected)},
            }
        )
        return sid

    def obs(
        self,
        code: str,
        display: str,
        when: datetime,
        specimen: str | None,
        value: dict[str, Any] | None = None,
        components: list[dict[str, Any]] | None = None,
        status: str = "final",
        focus: bool = True,
        **extra: Any,
    ) -> dict[str, Any]:
        self.n += 1
        res: dict[str, Any] = {
            "resourceType": "Observation",
            "id": f"{self.bid}-{code}-{self.n:03d}",
            "status": status,
            "category": [concept("laboratory", "Laboratory", "http://terminology.hl7.org/CodeSystem/observation-category")],
            "code": concept(code, display),
        }
        if focus:
            res["focus"] = [{"reference": f"Substance/{self.bid}"}]
        res["effectiveDateTime"] = stamp(when)
        if specimen:
            res["specimen"] = {"reference": f"Specimen/{specimen}"}
        if value is not None:
            res["valueQuantity"] = value
        res.update(extra)
        if components:
            res["component"] = components
        self.resources.append(res)
        return res

    def entries(self) -> list[dict[str, Any]]:
        return [{"fullUrl": f"{BASE_URL}/{r['resourceType']}/{r['id']}", "resource": r} for r in self.resources]


# --- the measurements ------------------------------------------------------------------------------------


def peppas(t_h: float, k: float, n: float, plateau: float = 97.5) -> float:
    """Cumulative % released: k * t^n, levelling off towards the plateau (a release profile's usual shape)."""
    raw = k * t_h**n
    return raw if raw <= 60 else plateau - (plateau - 60) * math.exp(-(raw - 60) / (plateau - 60))


def lognormal(rng: random.Random, median: float, sigma: float, n: int) -> list[float]:
    return [round(median * math.exp(rng.gauss(0.0, sigma)), 1) for _ in range(n)]


def add_size(b: Batch, sid: str, when: datetime, vmd: float, diameters: list[float], vmd_unit: str = "um") -> None:
    value = vmd / 1000 if vmd_unit == "mm" else vmd
    b.obs("volume-mean-diameter", "Volume mean diameter", when, sid, qty(value, vmd_unit, 4))
    b.obs(
        "particle-size-microscopy",
        "Particle diameters by optical microscopy (450x, 100 particles)",
        when,
        sid,
        components=[comp_qty("particle-diameter", d, "um", 1) for d in diameters],
        method={"text": "optical microscopy, 450x (10x eyepiece, 45x objective)"},
    )


def add_content(b: Batch, sid: str, when: datetime, actual: float, theoretical: float, unit: str) -> None:
    b.obs("drug-content-actual", "Actual drug content", when, sid, qty(actual, unit))
    b.obs("drug-content-theoretical", "Theoretical drug content", when, sid, qty(theoretical, unit))


def add_release(
    b: Batch, sid: str, start: datetime, rng: random.Random, k: float, n: float, times_h: list[float], unit: str = "h"
) -> None:
    for t in times_h:
        released = min(100.0, peppas(t, k, n) + rng.uniform(-0.6, 0.6))
        b.obs(
            "drug-released",
            "Cumulative drug released",
            start + timedelta(hours=t),
            sid,
            qty(released, "%", 2),
            [elapsed(t, unit), comp_text("medium", PH74), comp_qty("temperature", 37.0, "Cel", 1)],
        )


SWELLING_MAX = {WATER: 170.0, PH12: 35.0, PH45: 80.0, PH74: 310.0}  # % weight gain at equilibrium (example values)


def swelling_index(medium: str, t_h: float, scale: float = 1.0) -> float:
    return SWELLING_MAX[medium] * scale * (1 - math.exp(-t_h / 1.5))


def add_swollen_weights(b: Batch, sid: str, start: datetime, rng: random.Random, media: list[str], times_h: list[float]) -> None:
    dry = 100.0  # mg of microspheres in the basket
    for medium in media:
        for t in times_h:
            si = swelling_index(medium, t) + rng.uniform(-1.0, 1.0)
            b.obs(
                "swollen-weight",
                "Weight of the swollen microspheres",
                start + timedelta(hours=t),
                sid,
                qty(dry * (1 + si / 100), "mg", 1),
                [
                    elapsed(t),
                    comp_text("medium", medium),
                    comp_qty("temperature", 37.0, "Cel", 1),
                    comp_qty("dry-weight", dry, "mg", 1),
                ],
            )


def add_swelling_indexes(b: Batch, sid: str, start: datetime, media: list[str], times_h: list[float]) -> None:
    for medium in media:
        for t in times_h:
            b.obs(
                "swelling-index",
                "Swelling index",
                start + timedelta(hours=t),
                sid,
                qty(swelling_index(medium, t, 0.9), "%", 1),
                [elapsed(t), comp_text("medium", medium), comp_qty("temperature", 37.0, "Cel", 1)],
            )


def add_stability(b: Batch, sid: str, start: datetime, initial: float, retained_60: dict[str, float], days: list[int]) -> None:
    for condition, retained in retained_60.items():
        for d in days:
            content = initial * (1 - (1 - retained / 100) * d / 60)
            b.obs(
                "stability-drug-content",
                "Drug content on storage",
                start + timedelta(days=d),
                sid,
                qty(content, "%", 2),
                [
                    comp_qty("storage-time", d, "d", 0),
                    comp_text("storage-condition", condition),
                    comp_qty("temperature", CONDITION_TEMPERATURE[condition], "Cel", 1),
                ],
            )


def add_findings(b: Batch, sid: str, when: datetime, findings: dict[str, tuple[str, str]], sem_document: bool = False) -> None:
    for code, (display, text) in findings.items():
        extra: dict[str, Any] = {"valueString": text}
        if code == "sem" and sem_document:
            doc_id = f"{b.bid}-sem-image"
            b.resources.append(
                {
                    "resourceType": "DocumentReference",
                    "id": doc_id,
                    "status": "current",
                    "description": "SEM micrographs, 500x and 2000x",
                    "content": [
                        {
                            "attachment": {
                                "contentType": "image/tiff",
                                "title": "SEM micrographs, 500x and 2000x",
                                "url": f"{BASE_URL}/Binary/{doc_id}",
                            }
                        }
                    ],
                }
            )
            extra["derivedFrom"] = [{"reference": f"DocumentReference/{doc_id}"}]
        b.obs(code, display, when, sid, **extra)


FINDINGS_GOOD = {
    "sem": (
        "Scanning electron microscopy",
        "Discrete spherical particles with a smooth, non-porous surface; no drug crystals on the surface.",
    ),
    "xrd": ("X-ray diffraction", "Characteristic drug peaks absent in the microspheres: drug dispersed in an amorphous state."),
    "dsc": ("Differential scanning calorimetry", "Drug melting endotherm absent in the microspheres; no new thermal events."),
    "ftir": ("FTIR", "Characteristic drug bands retained: no drug-polymer interaction detected."),
}


def batches() -> list[Batch]:
    out = []

    # 1. meets every example limit
    rng = random.Random(20260828)
    b = Batch(
        "kms-01-2608a", "KMS-01", "Ketoprofen microspheres 10 %", "KMS01-2608A", "2026-08-28T10:00:00+02:00", "meets every limit"
    )
    b.ingredients("ketoprofen", "sodium alginate", "chitosan")
    s1 = b.specimen("s1", "microspheres, batch sample", b.made + timedelta(days=1))
    s2 = b.specimen("s2", "microspheres, stability samples (screw-capped glass containers)", b.made + timedelta(days=2))
    t = b.made + timedelta(days=3)
    diameters = lognormal(rng, 140.0, 0.3, 100)
    assert all(1.0 <= d <= 1000.0 for d in diameters)
    add_size(b, s1, t, 148.6, diameters)
    add_content(b, s1, t, 45.6, 50.0, "mg")
    add_release(b, s1, t + timedelta(days=1), rng, 15.0, 0.6, [0.5, 1, 2, 3, 4, 6, 9, 12, 18, 24])
    add_swollen_weights(b, s1, t + timedelta(days=2), rng, [WATER, PH12, PH45, PH74], [0.5, 1, 2, 4, 6])
    add_stability(b, s2, b.made + timedelta(days=4), 99.6, {ROOM: 96.5, OVEN: 91.0, FRIDGE: 99.2}, [0, 30, 60])
    b.obs("zeta-potential", "Zeta potential", t, s1, qty(31.4, "mV", 1))
    add_findings(b, s1, t, FINDINGS_GOOD, sem_document=True)
    out.append(b)

    # 2. fails: entrapment efficiency below the limit, wide distribution with agglomerates above 1000 um
    rng = random.Random(20260915)
    b = Batch("kms-01-2609b", "KMS-01", "Ketoprofen microspheres 10 %", "KMS01-2609B", "2026-09-15T10:00:00+02:00", "fails")
    s1 = b.specimen("s1", "microspheres, batch sample", b.made + timedelta(days=1))
    s2 = b.specimen("s2", "microspheres, stability samples (screw-capped glass containers)", b.made + timedelta(days=2))
    t = b.made + timedelta(days=3)
    diameters = [min(990.0, d) for d in lognormal(rng, 150.0, 0.7, 96)] + [1043.0, 1120.5, 1187.0, 1342.5]
    add_size(b, s1, t, 236.0, diameters)
    b.obs("entrapment-efficiency", "Entrapment efficiency", t, s1, qty(64.3, "%", 1))
    add_release(b, s1, t + timedelta(days=1), rng, 14.5, 0.62, [0.5, 1, 2, 4, 6, 9, 12, 24], unit="min")
    add_swelling_indexes(b, s1, t + timedelta(days=2), [PH12, PH74], [1, 2, 4, 6])
    add_stability(b, s2, b.made + timedelta(days=4), 99.1, {ROOM: 95.8, OVEN: 90.2, FRIDGE: 98.9}, [0, 30, 60])
    b.obs("zeta-potential", "Zeta potential", t, s1, qty(27.9, "mV", 1))
    add_findings(
        b,
        s1,
        t,
        {"sem": ("Scanning electron microscopy", "Spherical particles with some aggregates and a rough, porous surface.")},
    )
    out.append(b)

    # 3. incomplete: no 60-day stability result yet
    rng = random.Random(20261001)
    b = Batch("kms-01-2610a", "KMS-01", "Ketoprofen microspheres 10 %", "KMS01-2610A", "2026-10-01T10:00:00+02:00", "incomplete")
    s1 = b.specimen("s1", "microspheres, batch sample", b.made + timedelta(days=1))
    s2 = b.specimen("s2", "microspheres, stability samples (screw-capped glass containers)", b.made + timedelta(days=1))
    t = b.made + timedelta(days=2)
    diameters = lognormal(rng, 150.0, 0.28, 100)
    assert all(1.0 <= d <= 1000.0 for d in diameters)
    add_size(b, s1, t, 162.0, diameters, vmd_unit="mm")
    add_content(b, s1, t, 9.3, 10.0, "%")
    add_release(b, s1, t + timedelta(days=1), rng, 14.0, 0.61, [0.5, 1, 2, 4, 6, 9, 12, 24])
    add_swelling_indexes(b, s1, t + timedelta(days=1), [WATER, PH12, PH74], [1, 2, 4, 6])
    add_stability(b, s2, b.made + timedelta(days=1), 99.8, {ROOM: 96.0, OVEN: 90.5, FRIDGE: 99.4}, [0, 30])
    b.obs("zeta-potential", "Zeta potential", t, s1, qty(29.6, "mV", 1), status="preliminary")
    add_findings(b, s1, t, {k: v for k, v in FINDINGS_GOOD.items() if k in ("sem", "ftir")})
    out.append(b)

    # 4. a product with no limits configured
    rng = random.Random(20260920)
    b = Batch(
        "dms-02-2609a",
        "DMS-02",
        "Diclofenac sodium alginate microspheres",
        "DMS02-2609A",
        "2026-09-20T10:00:00+02:00",
        "no limits",
    )
    s1 = b.specimen("s1", "microspheres, batch sample", b.made + timedelta(days=1))
    t = b.made + timedelta(days=2)
    add_size(b, s1, t, 412.0, lognormal(rng, 380.0, 0.25, 100))
    b.obs("entrapment-efficiency", "Entrapment efficiency", t, s1, qty(82.7, "%", 1))
    add_release(b, s1, t + timedelta(days=1), rng, 20.0, 0.5, [0.5, 1, 2, 4, 6, 8.5, 12])
    add_findings(b, s1, t, {"sem": FINDINGS_GOOD["sem"]})
    out.append(b)
    return out


def bundle() -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection", "entry": [e for b in batches() for e in b.entries()]}


def main() -> None:
    target = ROOT / "service" / "labinterp" / "examples" / "batches.json"
    b = bundle()
    # one entry per line: readable, diff-able, and small (the particle counts are long)
    lines = ",\n".join("  " + json.dumps(e, ensure_ascii=False) for e in b["entry"])
    text = f'{{"resourceType": "Bundle", "type": "collection", "entry": [\n{lines}\n]}}\n'
    assert json.loads(text) == b
    target.write_text(text, encoding="utf-8")
    print(f"wrote {target.relative_to(ROOT)}: {len(text.encode()) // 1024} KB")


if __name__ == "__main__":
    main()
