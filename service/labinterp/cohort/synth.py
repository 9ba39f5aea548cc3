"""Synthetic cohorts with the distributions of the linezolid cohort study (190 adults, Milan), deterministic from a seed.

Two modes:
- `table2`: 190 analysable patients whose below/within/above counts reproduce Table 2 for every
  factor at once (plus the 6 excluded below the LOQ and any number with eGFR < 30);
- `realistic`: any number of patients drawn from Table 1 genotype frequencies, with the category
  probabilities of Table 2 by CYP3A5 group, age and creatinine from the paper's quantiles.
Troughs are drawn within their category; ages are paired with troughs through a Gaussian copula at the
paper's correlation (r = 0.21). Written as FHIR R4: Patient, a linezolid trough, a serum creatinine and
plain genotype Observations ("CYP3A5 rs776746" = "AG", ...), as a collection Bundle or NDJSON."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from statistics import NormalDist
from typing import Any

from labinterp.knowledge import Knowledge
from labinterp.knowledge.model import CohortFile

CATEGORIES = ("above", "within", "below")
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
TROUGH_CODE = {"text": "Linezolid trough concentration [Mass/volume] in Plasma"}


@dataclass
class SynthPatient:
    pid: str
    category: str  # "above" | "within" | "below" | "loq"
    sex: str = "female"
    age: int = 70
    trough: float = 5.0
    creatinine: float = 0.94
    genotypes: dict[str, str] = field(default_factory=dict)  # rsid -> bases, gene orientation


# --- exact Table 2 counts -----------------------------------------------------------------------


def table2_counts(k: Knowledge) -> dict[str, dict[str, dict[str, int]]]:
    """factor -> group -> category -> count, from Table 2's shares and Table 1's group sizes (n = 190)."""
    n = k.cohort.population.n
    freq = k.cohort.genotypes
    sizes = {
        ("CYP3A5", "expresser"): round(n * (freq["rs776746"].frequencies["AA"] + freq["rs776746"].frequencies["AG"])),
        ("CYP3A4*22", "CT+TT"): round(n * (freq["rs35599367"].frequencies["CT"] + freq["rs35599367"].frequencies["TT"])),
        ("POR*28", "TT"): round(n * freq["rs1057868"].frequencies["TT"]),
        ("ABCB1 c.3435C>T", "TT"): 49,  # Table 1: TT 25.8 % of 190
        ("ABCB1 haplotype", "TTT/TTT"): 29,
        ("ABCB1 haplotype", "CGC/CGC + TTT carriers"): 134,  # the rest (27) unclassifiable, as in the paper
    }
    out: dict[str, dict[str, dict[str, int]]] = {}
    for row in k.linezolid.cohort.table2:
        if (row.factor, row.group) in sizes:
            size = sizes[(row.factor, row.group)]
        else:  # the complement group of a two-group factor
            other = next(s for (f, _g), s in sizes.items() if f == row.factor)
            size = n - other
        counts = {c: round(size * getattr(row, c)) for c in CATEGORIES}
        counts["within"] = size - counts["above"] - counts["below"]
        out.setdefault(row.factor, {})[row.group] = counts
    return out


def _category_sizes(counts: dict[str, dict[str, dict[str, int]]]) -> dict[str, int]:
    cyp = counts["CYP3A5"]
    return {c: sum(g[c] for g in cyp.values()) for c in CATEGORIES}


def _shuffled(rng: random.Random, labels: list[str]) -> list[str]:
    rng.shuffle(labels)
    return labels


def table2_patients(k: Knowledge, seed: int = 190, egfr_below_30: int = 4) -> list[SynthPatient]:
    counts = table2_counts(k)
    sizes = _category_sizes(counts)
    rng = random.Random(seed)
    patients: list[SynthPatient] = []
    for cat in CATEGORIES:
        size = sizes[cat]
        per: dict[str, list[str]] = {}
        for factor, groups in counts.items():
            labels = [g for g, c in groups.items() for _ in range(c[cat])]
            labels += ["unclassifiable"] * (size - len(labels))
            per[factor] = _shuffled(rng, labels)
        # c.3435 must agree with the haplotype: TTT/TTT is TT, unclassifiable patients supply the other TTs
        hap = per["ABCB1 haplotype"]
        tt_needed = counts["ABCB1 c.3435C>T"]["TT"][cat] - hap.count("TTT/TTT")
        for i in range(size):
            p = SynthPatient(pid=f"c{len(patients) + 1:03d}", category=cat)
            p.genotypes["rs776746"] = rng.choice(["AA", "AG", "AG", "AG"]) if per["CYP3A5"][i] == "expresser" else "GG"
            p.genotypes["rs35599367"] = ("TT" if rng.random() < 0.03 else "CT") if per["CYP3A4*22"][i] == "CT+TT" else "CC"
            p.genotypes["rs1057868"] = "TT" if per["POR*28"][i] == "TT" else rng.choice(["CC", "CC", "CT"])
            if hap[i] == "TTT/TTT":
                abcb1 = ("TT", "TT", "TT")
            elif hap[i] != "unclassifiable":
                abcb1 = ("CC", "GG", "CC") if rng.random() < 0.4 else ("CT", "GT", "CT")
            elif tt_needed > 0:
                abcb1, tt_needed = ("CT", "GT", "TT"), tt_needed - 1  # (1, 1, 2) T alleles: unclassifiable
            else:
                abcb1 = ("TT", "TT", "CT")  # (2, 2, 1): unclassifiable, c.3435 CT
            p.genotypes.update(zip(("rs1128503", "rs2032582", "rs1045642"), abcb1, strict=True))
            patients.append(p)
    for _ in range(k.cohort.population.excluded_below_loq):
        patients.append(SynthPatient(pid=f"c{len(patients) + 1:03d}", category="loq", genotypes=_random_genotypes(k, rng)))
    _draw_clinical(k, patients, rng)
    for p in patients:  # the 190 had eGFR >= 30 (section 2.1): cap creatinine where age and sex would put it below
        p.creatinine = min(p.creatinine, _max_creatinine(k, p))
    for p in patients[:egfr_below_30]:  # a few with advanced renal failure: excluded by the analysis
        extra = SynthPatient(
            pid=f"c{len(patients) + 1:03d}",
            category=p.category,
            genotypes=dict(p.genotypes),
            age=82,
            trough=p.trough,
            creatinine=3.4,
            sex="female",
        )
        patients.append(extra)
    return patients


def _max_creatinine(k: Knowledge, p: SynthPatient) -> float:
    """The highest creatinine (mg/dL, 2 decimals) that keeps the cohort's eGFR at or above its exclusion limit."""
    from labinterp.rules.renal import ckd_epi_2021, mdrd_idms

    fn = mdrd_idms if k.cohort.population.egfr_equation == "mdrd_idms" else ckd_epi_2021
    scr = 3.0
    while scr > 0.3 and fn(scr, max(p.age, 18), p.sex, k.renal) < k.cohort.population.egfr_exclude_below + 0.5:
        scr -= 0.01
    return round(scr, 2)


# --- realistic draws -----------------------------------------------------------------------------


def _pick(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), list(weights.values()))[0]


def _random_genotypes(k: Knowledge, rng: random.Random) -> dict[str, str]:
    g = {rsid: _pick(rng, spec.frequencies) for rsid, spec in k.cohort.genotypes.items()}
    h1, h2 = _pick(rng, k.cohort.abcb1_haplotypes), _pick(rng, k.cohort.abcb1_haplotypes)
    for i, rsid in enumerate(("rs1128503", "rs2032582", "rs1045642")):
        g[rsid] = "".join(sorted((h1[i], h2[i]), key=lambda b: "CGTA".index(b)))
    return g


def realistic_patients(k: Knowledge, n: int, seed: int = 7) -> list[SynthPatient]:
    rng = random.Random(seed)
    table = {(r.factor, r.group): r for r in k.linezolid.cohort.table2}
    patients = []
    for i in range(n):
        g = _random_genotypes(k, rng)
        group = "expresser" if g["rs776746"] in ("AA", "AG") else "non-expresser"
        row = table[("CYP3A5", group)]
        cat = _pick(rng, {"above": row.above, "within": row.within, "below": row.below})
        if rng.random() < k.cohort.population.excluded_below_loq / (
            k.cohort.population.n + k.cohort.population.excluded_below_loq
        ):
            cat = "loq"
        patients.append(SynthPatient(pid=f"r{i + 1:05d}", category=cat, genotypes=g))
    _draw_clinical(k, patients, rng)
    return patients


# --- age, sex, creatinine, trough ------------------------------------------------------------------


def _quantile(q: tuple[tuple[float, float], ...], u: float) -> float:
    for (p0, v0), (p1, v1) in itertools.pairwise(q):
        if u <= p1:
            return v0 + (v1 - v0) * (u - p0) / (p1 - p0)
    return q[-1][1]


def _draw_clinical(k: Knowledge, patients: list[SynthPatient], rng: random.Random) -> None:
    pop: CohortFile = k.cohort
    lz = k.linezolid
    lo, hi = lz.band("within").lower or 0.0, lz.band("within").upper or 0.0
    ranges = {
        "below": (pop.population.trough_min, lo * 0.999),
        "within": (lo, hi),
        "above": (hi * 1.001, pop.population.trough_max),
    }
    norm = NormalDist()
    for p in patients:
        p.sex = "female" if rng.random() < pop.population.female_share else "male"
        p.creatinine = round(_quantile(pop.population.creatinine_quantiles, rng.random()), 2)
        if p.category == "loq":
            p.trough = lz.assay.loq_mg_per_l
            continue
        a, b = ranges[p.category]
        p.trough = round(math.exp(rng.uniform(math.log(a), math.log(b))), 2)
    # ages paired with troughs through a Gaussian copula at the paper's correlation
    ranked = sorted((p for p in patients if p.category != "loq"), key=lambda p: p.trough)
    rho = pop.population.age_trough_correlation
    for i, p in enumerate(ranked):
        z = norm.inv_cdf((i + 0.5) / len(ranked))
        u = norm.cdf(rho * z + math.sqrt(1 - rho**2) * rng.gauss(0, 1))
        p.age = round(_quantile(pop.population.age_quantiles, u))
    for p in patients:
        if p.category == "loq":
            p.age = round(_quantile(pop.population.age_quantiles, rng.random()))


# --- FHIR ---------------------------------------------------------------------------------------


def resources(p: SynthPatient, k: Knowledge) -> Iterator[dict[str, Any]]:
    year = k.cohort.population.sample_year
    serial = int("".join(ch for ch in p.pid if ch.isdigit()) or 0)
    sample_day = date(year, 1, 1) + timedelta(days=serial % 360)
    # born between (age + 1) and age years before the sample: `age` completed years on the day
    birth = sample_day.replace(year=sample_day.year - p.age - 1) + timedelta(days=1 + serial * 37 % 364)
    when = f"{sample_day.isoformat()}T08:00:00+01:00"
    subject = {"reference": f"Patient/{p.pid}"}
    cat = [{"coding": [{"system": k.output.systems["observation_category"], "code": "laboratory"}]}]
    yield {"resourceType": "Patient", "id": p.pid, "gender": p.sex, "birthDate": birth.isoformat()}
    q: dict[str, Any] = {"value": p.trough, "unit": "mg/L", "system": UCUM, "code": "mg/L"}
    if p.category == "loq":
        q = {"value": p.trough, "comparator": "<", "unit": "mg/L", "system": UCUM, "code": "mg/L"}
    yield {
        "resourceType": "Observation",
        "id": f"{p.pid}-lzd",
        "status": "final",
        "category": cat,
        "code": TROUGH_CODE,
        "subject": subject,
        "effectiveDateTime": when,
        "valueQuantity": q,
    }
    yield {
        "resourceType": "Observation",
        "id": f"{p.pid}-scr",
        "status": "final",
        "category": cat,
        "code": {"coding": [{"system": LOINC, "code": "2160-0", "display": "Creatinine [Mass/volume] in Serum or Plasma"}]},
        "subject": subject,
        "effectiveDateTime": when,
        "valueQuantity": {"value": p.creatinine, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"},
    }
    for rsid, bases in p.genotypes.items():
        gene, _variant = k.variant(rsid) or ("", None)
        yield {
            "resourceType": "Observation",
            "id": f"{p.pid}-{rsid}",
            "status": "final",
            "category": cat,
            "code": {"text": f"{gene} {rsid} genotype"},
            "subject": subject,
            "effectiveDateTime": f"{year - 1}-11-03",
            "valueString": f"{bases[0]}/{bases[1]}",
        }


def as_bundle(patients: Iterable[SynthPatient], k: Knowledge) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for p in patients for r in resources(p, k)]}
