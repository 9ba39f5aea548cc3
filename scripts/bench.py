"""Benchmark (not a test): interpret a Bundle of many synthetic patients and print patients per second
and peak memory. Each patient has linezolid doses and a trough, creatinine, magnesium, a genotype and a
medication, like the example patients.

    python scripts/bench.py [--patients 2000] [--seed 7]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from labinterp.knowledge import load_knowledge
from labinterp.pipeline import interpret_bundle
from tests.builders import ATC, MG, SCR, P, lzd_site

SITE = Path(__file__).resolve().parents[1] / "service" / "labinterp" / "examples" / "site-mappings"


def synthetic(n: int, seed: int, prefix: str = "s") -> dict:
    rng = random.Random(seed)
    entries = []
    for i in range(n):
        p = P(
            f"{prefix}{i}",
            rng.choice(["female", "male"]),
            f"{rng.randint(1930, 2000)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            "",
        )
        p.doses("2026-01-11T20:00:00+01:00", 7)
        p.lab(lzd_site(), round(rng.lognormvariate(2.1, 0.7), 2), "mg/L", "2026-01-15T08:00:00+01:00", kind="lzd")
        p.lab(SCR, round(rng.lognormvariate(0.0, 0.35), 2), "mg/dL", "2026-01-15T08:00:00+01:00")
        p.lab(MG, round(rng.uniform(0.9, 2.9), 2), "mg/dL", "2026-01-15T08:00:00+01:00")
        p.plain_genotype("CYP3A5 rs776746", rng.choices(["AA", "AG", "GG"], [1.1, 13.2, 85.8])[0])
        p.plain_genotype("POR rs1057868", rng.choices(["CC", "CT", "TT"], [55.8, 38.4, 5.8])[0])
        if rng.random() < 0.3:
            p.med("MedicationStatement", {"coding": [{"system": ATC, "code": "C03CA01"}]}, when="2025-12-01")
        entries += p.bundle()["entry"]
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    k = load_knowledge(SITE)
    now = datetime(2026, 1, 20, 12, tzinfo=UTC)
    bundle = synthetic(args.patients, args.seed)
    text = json.dumps(bundle)
    print(f"input: {args.patients} patients, {len(bundle['entry'])} resources, {len(text) / 1e6:.1f} MB of JSON")
    for validate, render in ((True, True), (False, True), (True, False)):
        t0 = time.perf_counter()
        data = json.loads(text)
        t1 = time.perf_counter()
        result = interpret_bundle(data, k, now, validate=validate, render=render)
        t2 = time.perf_counter()
        out = json.dumps(result.bundle)
        t3 = time.perf_counter()
        print(
            f"validate={'on ' if validate else 'off'} render={'on ' if render else 'off'}: {args.patients / (t3 - t0):6.0f} patients/s end to end "
            f"(parse {t1 - t0:.2f} s; interpret+compose{'+validate' if validate else ''} {(t2 - t1) / args.patients * 1000:.2f} ms/patient; "
            f"serialize {t3 - t2:.2f} s); {len(result.bundle['entry'])} resources written ({len(out) / 1e6:.1f} MB)"
        )
    tracemalloc.start()
    interpret_bundle(json.loads(text), k, now)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"peak traced Python memory for one validated run: {peak / 1e6:.0f} MB ({peak / args.patients / 1e3:.0f} kB/patient)")
    print(f"process max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
