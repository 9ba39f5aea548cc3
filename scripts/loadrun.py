"""Sustained load (not a test): `labinterp serve` against HAPI on loopback, N client threads sending
`POST /Patient/{id}/$interpret?dry-run` for the example patients round robin for T seconds. Prints requests, errors,
throughput, p50/p95/p99 latency, and the service's resident memory (VmRSS of the gunicorn master and its worker
process, from /proc/<pid>/status) at the start and at the end.

    python scripts/loadrun.py [--threads 8] [--seconds 60] [--fhir-url URL] [--out build/proof/load.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from labinterp.sandbox.hapi import Sandbox, load_file  # noqa: E402
from tests.integration.conftest import EXAMPLES, Service, free_port  # noqa: E402

PATIENTS = [f"p{i:02d}" for i in range(1, 20)]


def rss_kib(pid: int) -> int:
    """VmRSS of `pid` and of its child processes (gunicorn's worker), in KiB."""
    total = 0
    pids = [str(pid)]
    with contextlib.suppress(OSError):
        pids += Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))] if ordered else 0.0


def run(fhir_url: str, threads: int = 8, seconds: float = 60.0, workdir: Path | None = None) -> dict[str, Any]:
    load_file(EXAMPLES, fhir_url)
    token = f"load-{os.urandom(12).hex()}"
    svc = Service(
        fhir_url,
        workdir or Path(tempfile.mkdtemp(prefix="labinterp-load-")),
        worker=False,
        extra_env={"LABINTERP_API_TOKEN": token},
    )
    try:
        for pid in PATIENTS:  # one warm-up round, not counted
            requests.post(
                f"{svc.url}/Patient/{pid}/$interpret?dry-run", headers={"Authorization": f"Bearer {token}"}, timeout=120
            )
        rss_start = rss_kib(svc.proc.pid)
        latencies: list[float] = []
        errors: dict[str, int] = {}
        lock = threading.Lock()
        stop = time.monotonic() + seconds

        def client(n: int) -> None:
            s = requests.Session()
            s.headers["Authorization"] = f"Bearer {token}"
            i = n
            while time.monotonic() < stop:
                pid = PATIENTS[i % len(PATIENTS)]
                i += threads
                started = time.perf_counter()
                try:
                    r = s.post(f"{svc.url}/Patient/{pid}/$interpret?dry-run", timeout=120)
                    kind = None if r.status_code == 200 else f"HTTP {r.status_code}"
                except requests.RequestException as exc:
                    kind = type(exc).__name__
                took = time.perf_counter() - started
                with lock:
                    latencies.append(took)
                    if kind:
                        errors[kind] = errors.get(kind, 0) + 1

        began = time.monotonic()
        workers = [threading.Thread(target=client, args=(n,)) for n in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        elapsed = time.monotonic() - began
        rss_end = rss_kib(svc.proc.pid)
    finally:
        svc.stop()
    ms = [t * 1000 for t in latencies]
    return {
        "threads": threads,
        "seconds": round(elapsed, 1),
        "requests": len(ms),
        "errors": errors,
        "per_second": round(len(ms) / elapsed, 1) if elapsed else 0.0,
        "p50_ms": round(percentile(ms, 50), 1),
        "p95_ms": round(percentile(ms, 95), 1),
        "p99_ms": round(percentile(ms, 99), 1),
        "rss_start_mib": round(rss_start / 1024, 1),
        "rss_end_mib": round(rss_end / 1024, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--fhir-url", default=None, help="a running HAPI (default: start a sandbox on a free port)")
    ap.add_argument("--out", default=None, help="also write the figures as JSON here")
    a = ap.parse_args()
    box, url = None, a.fhir_url
    if not url:
        box = Sandbox(ROOT / ".labinterp", port=free_port(), database="mem")
        url = box.up(timeout=420)
    try:
        f = run(url.rstrip("/"), a.threads, a.seconds)
    finally:
        if box is not None:
            box.down()
    print(
        f"load: {f['threads']} threads for {f['seconds']} s: {f['requests']} requests ({f['per_second']}/s), errors {f['errors'] or 0}; "
        f"p50 {f['p50_ms']} ms, p95 {f['p95_ms']} ms, p99 {f['p99_ms']} ms; "
        f"service RSS {f['rss_start_mib']} MiB at start, {f['rss_end_mib']} MiB at the end"
    )
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(f, indent=2) + "\n")
    sys.exit(1 if f["errors"] else 0)


if __name__ == "__main__":
    main()
