"""Not a test: HAPI's write cost per launcher setting: labinterp's write transactions (conditional creates, 50 patients each)
against a fresh sandbox HAPI (H2 in memory or PostgreSQL, request validation on, IG installed) per variant.

    .venv/bin/python docker/hapi/measure_writes.py --patients 300 --variants base,mass,matchcache [--database postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from labinterp.knowledge import load_knowledge  # noqa: E402
from labinterp.pipeline import interpret_bundle  # noqa: E402
from labinterp.sandbox.hapi import Sandbox, as_transaction  # noqa: E402
from labinterp.sandbox.postgres import Postgres  # noqa: E402
from scripts.bench import NOW, SITE, synthetic  # noqa: E402

VARIANTS = {
    "base": {},
    "mass": {"LABINTERP_HAPI_MASS_INGESTION": "true"},
    "matchcache": {"LABINTERP_HAPI_MATCH_URL_CACHE": "true"},
    "batch50": {"LABINTERP_HAPI_JDBC_BATCH_SIZE": "50"},
    "novalidate": {"LABINTERP_HAPI_VALIDATE_REQUESTS": "false"},
    "all": {"LABINTERP_HAPI_MASS_INGESTION": "true", "LABINTERP_HAPI_MATCH_URL_CACHE": "true"},
}


TICK = os.sysconf("SC_CLK_TCK")


def cpu(pid: int) -> float:
    """CPU seconds of a process (and of its reaped children)."""
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in f[11:15]) / TICK


def pg_cpu() -> float:
    import pwd

    uid = pwd.getpwnam("labinterp-pg").pw_uid
    total = 0.0
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if d.stat().st_uid == uid:
                    total += cpu(int(d.name))
            except OSError:
                pass
    return total


def post(s: requests.Session, base: str, body: dict) -> None:
    r = s.post(base, data=json.dumps(body).encode(), timeout=900)
    r.raise_for_status()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=300)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--variants", default="base,mass,matchcache")
    ap.add_argument("--database", default="mem")
    ap.add_argument("--port", type=int, default=58711)
    args = ap.parse_args()
    k = load_knowledge(SITE)
    n_batches = args.patients // args.batch
    inputs, writes = [], []
    for j in range(n_batches + 1):  # batch 0 warms the validator up
        data = synthetic(args.batch, 100 + j, f"m{j}x")
        inputs.append(as_transaction(data, "http://x/fhir"))
        writes.append(interpret_bundle(data, k, NOW, render=False, narrative=True, validate=False).bundle)
    per_patient = sum(len(w["entry"]) for w in writes[1:]) / (n_batches * args.batch)
    print(f"{n_batches} x {args.batch} patients, {per_patient:.1f} resources written per patient", flush=True)
    results = {}
    for name in args.variants.split(","):
        pg = None
        if args.database == "postgres":
            pg = Postgres(ROOT / ".labinterp", port=args.port + 1)
            pg.start()
            pg.psql("DROP DATABASE IF EXISTS meas")
        box = Sandbox(
            ROOT / ".labinterp", port=args.port, database=args.database, env=VARIANTS[name], postgres=pg, pg_database="meas"
        )
        t0 = time.perf_counter()
        base = box.up(timeout=900)
        up = time.perf_counter() - t0
        try:
            s = requests.Session()
            s.headers.update({"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"})
            for body in inputs:
                post(s, base, body)
            post(s, base, writes[0])  # warm-up
            pid = box.running_pid()
            assert pid
            n = n_batches * args.batch
            res: dict = {"start_s": round(up)}
            for what in ("write", "replay"):  # replay: every conditional create matches
                c0, p0, t0 = cpu(pid), pg_cpu() if pg else 0.0, time.perf_counter()
                for body in writes[1:]:
                    post(s, base, body)
                wall, c1, p1 = time.perf_counter() - t0, cpu(pid), pg_cpu() if pg else 0.0
                res[f"{what}_pps"] = round(n / wall, 1)
                res[f"{what}_hapi_cpu_ms_per_patient"] = round((c1 - c0) / n * 1000, 1)
                if pg:
                    res[f"{what}_pg_cpu_ms_per_patient"] = round((p1 - p0) / n * 1000, 1)
            results[name] = res
            print(name, results[name], flush=True)
        finally:
            box.down()
            if pg is not None:
                pg.stop()
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
