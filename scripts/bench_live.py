"""Benchmark (not a test) against a local HAPI FHIR server: labinterp's client (one batch read and one
transaction per patient) side by side with a naive client that searches per resource type and creates
resource by resource, on the same kind of synthetic patients, in the same run.

Prints, for each: patients per second, HTTP requests per patient, and the service's own time per
patient (total minus the time spent waiting on HAPI).

    python scripts/bench_live.py --patients 200 [--fhir-url URL]   # default: starts its own sandbox
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from labinterp.fhir.client import FhirClient
from labinterp.fhir.search import as_collection, query, unpack_searchset
from labinterp.knowledge import load_knowledge
from labinterp.pipeline import interpret_bundle, interpret_patient
from labinterp.sandbox.hapi import Sandbox, load_file
from labinterp.writeback import rewrite_references
from scripts.bench import synthetic

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "service" / "labinterp" / "examples" / "site-mappings"
NOW = datetime(2026, 1, 20, 12, tzinfo=UTC)
SERIES = "urn:labinterp:series"


class NaiveClient:
    """How a first integration often looks: a GET per resource type, then a POST per resource."""

    def __init__(self, base: str) -> None:
        self.base, self.session = base, requests.Session()
        self.session.headers.update({"Accept": "application/fhir+json", "Content-Type": "application/fhir+json"})
        self.requests, self.waiting = 0, 0.0

    def _call(self, method: str, url: str, **kw: Any) -> Any:
        t = time.perf_counter()
        r = self.session.request(method, url, timeout=60, **kw)
        self.waiting += time.perf_counter() - t
        self.requests += 1
        r.raise_for_status()
        return r.json()

    def run(self, pid: str, k: Any) -> None:
        resources = [self._call("GET", f"{self.base}/Patient/{pid}")]
        subject = [("subject", f"Patient/{pid}")]
        for rtype in ("Observation", "MedicationRequest", "MedicationStatement", "MedicationAdministration"):
            resources += unpack_searchset(self._call("GET", f"{self.base}/{query(rtype, subject)}")).resources
        for rtype in ("DiagnosticReport", "RiskAssessment"):  # what was written before
            self._call("GET", f"{self.base}/{query(rtype, [*subject, ('identifier', f'{SERIES}|')])}")
        run = interpret_bundle(as_collection(resources), k, NOW)
        urls: dict[str, str] = {}
        for e in run.bundle["entry"]:  # one request per resource, references fixed up as the ids come back
            body = rewrite_references(e["resource"], urls)
            req = e["request"]
            if req["method"] == "PUT":
                out = self._call("PUT", f"{self.base}/{req['url']}", json=body)
            else:
                out = self._call("POST", f"{self.base}/{req['url']}", json=body, headers={"If-None-Exist": req["ifNoneExist"]})
            urls[e["fullUrl"]] = f"{out['resourceType']}/{out['id']}"


def load(base: str, bundle: dict[str, Any]) -> float:
    """Load patients with the sandbox loader (transactions of about 1000 resources); returns seconds."""
    import json
    import tempfile

    started = time.perf_counter()
    with tempfile.NamedTemporaryFile("w", suffix=".json") as fh:
        json.dump(bundle, fh)
        fh.flush()
        load_file(Path(fh.name), base)
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=200)
    ap.add_argument("--fhir-url", default=None)
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()
    box = None
    base = args.fhir_url
    if not base:
        box = Sandbox(ROOT / ".labinterp", port=8099, database="mem")
        print("starting a local HAPI (in-memory H2, request validation on)...", flush=True)
        base = box.up(timeout=420)
    try:
        k = load_knowledge(SITE)
        lab, naive = synthetic(args.patients, args.seed, "L"), synthetic(args.patients, args.seed, "N")  # same data, other ids
        ids = [e["resource"]["id"][1:] for e in lab["entry"] if e["resource"]["resourceType"] == "Patient"]
        t_load = load(base, lab) + load(base, naive)
        print(f"loaded 2 x {args.patients} patients ({2 * len(lab['entry'])} resources) in {t_load:.0f} s", flush=True)

        client = FhirClient(base, timeout=(5.0, 120.0))
        t0 = time.perf_counter()
        for pid in ids:
            interpret_patient(client, "L" + pid, k, NOW)
        t_lab = time.perf_counter() - t0
        lab_req, lab_wait = client.stats.requests, client.stats.seconds_waiting

        nc = NaiveClient(base)
        t0 = time.perf_counter()
        for pid in ids:
            nc.run("N" + pid, k)
        t_naive = time.perf_counter() - t0

        n = args.patients
        print(f"\n{n} patients, sequential, one client thread, HAPI 8.8.0 with request validation on")
        print(
            f"{'client':<12}{'patients/s':>12}{'requests/patient':>18}{'total ms/patient':>18}{'waiting on HAPI':>17}{'own ms/patient':>16}"
        )
        for name, total, req, wait in (("labinterp", t_lab, lab_req, lab_wait), ("naive", t_naive, nc.requests, nc.waiting)):
            print(
                f"{name:<12}{n / total:>12.1f}{req / n:>18.2f}{total / n * 1000:>18.1f}{wait / n * 1000:>14.1f} ms{(total - wait) / n * 1000:>16.1f}"
            )
        print("\nreplay (same inputs again, labinterp):", end=" ", flush=True)
        before = client.stats.snapshot()
        t0 = time.perf_counter()
        for pid in ids:
            interpret_patient(client, "L" + pid, k, NOW)
        t_re = time.perf_counter() - t0
        print(f"{n / t_re:.1f} patients/s, {(client.stats.requests - before[0]) / n:.2f} requests/patient, nothing written")
    finally:
        if box is not None:
            box.down()


if __name__ == "__main__":
    main()
