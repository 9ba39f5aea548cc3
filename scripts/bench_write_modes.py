"""Benchmark (not a test) against one local HAPI FHIR server it starts: a population run in PUT mode and one in
conditional-create mode (each over its own half of the patients, PUT first), then the per-patient path and a naive
client, with the ratios of each population row to them.

    python scripts/bench_write_modes.py --patients 3000 --sample 300 --database postgres \\
        [--hapi-setting LABINTERP_HAPI_MASS_INGESTION=true]

The rows are those of scripts/bench_live.py (same synthetic patients, same clients)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from labinterp.knowledge import load_knowledge
from labinterp.population import ChunkOptions
from labinterp.sandbox.hapi import Sandbox
from scripts.bench import synthetic
from scripts.bench_live import ROOT, SITE, group, load, naive_run, per_patient, population


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=1000, help="patients of the two population runs together")
    ap.add_argument("--sample", type=int, default=100, help="patients of the per-patient and naive clients")
    ap.add_argument("--database", choices=["mem", "postgres"], default="mem")
    ap.add_argument("--port", type=int, default=8099)
    ap.add_argument("--hapi-setting", action="append", default=[], metavar="NAME=VALUE")
    args = ap.parse_args()
    settings = dict(s.split("=", 1) for s in args.hapi_setting)
    box = Sandbox(ROOT / ".labinterp", port=args.port, database=args.database, heap="4g", pg_port=args.port + 1, env=settings)
    base = box.up(timeout=600)
    try:
        k = load_knowledge(SITE)
        n, m = args.patients, args.sample
        t = load(base, synthetic(n, 11, "P")) + load(base, synthetic(m, 12, "Q")) + load(base, synthetic(m, 13, "N"))
        print(f"loaded {n} + 2 x {m} patients in {t:.0f} s", flush=True)
        group(base, "g-put", "P", range(0, n // 2))
        group(base, "g-cond", "P", range(n // 2, n))
        rows = [population(base, k, "g-put", ChunkOptions(write="put"), "population, PUT upserts", 100, 2)]
        print(rows[-1].line(), flush=True)
        rows.append(population(base, k, "g-cond", ChunkOptions(), "population, conditional creates", 100, 2))
        print(rows[-1].line(), flush=True)
        rows.append(per_patient(base, k, "Q", m, "per patient"))
        print(rows[-1].line(), flush=True)
        rows.append(naive_run(base, k, "N", m))
        print(rows[-1].line(), flush=True)
        rate = {r.name: r.patients / r.seconds for r in rows}
        for r in rows[:2]:
            print(
                f"{r.name}: {rate[r.name] / rate['per patient']:.2f}x per patient, {rate[r.name] / rate['naive client']:.2f}x naive"
            )
    finally:
        box.down()


if __name__ == "__main__":
    main()
