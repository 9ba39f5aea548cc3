"""CDS Hooks latency (not a test): `POST /cds-services/labinterp-patient-view` with a complete prefetch for each example
patient (tests/data/patients), in process (create_app and Flask's test client: no network, no gunicorn), each call
with its own ES384 JWT signed as a CDS Client signs it (tests/data/cds/cdskit.py; tokens signed before the clock
starts, so the figures are the service's verification and card building). `--no-auth` runs with
LABINTERP_CDS_AUTH=false instead. Any request to the FHIR server (there should be none) is counted.

    python scripts/bench_cds.py [--calls 500] [--no-auth] [--out build/proof/cds.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import responses

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from labinterp.server.app import create_app  # noqa: E402
from tests.data.cds.cdskit import Signer, config, hook_body, prefetch_for, url  # noqa: E402

SERVICE = "labinterp-patient-view"
PATIENTS = sorted(p.stem for p in (ROOT / "tests" / "data" / "patients").glob("p*.json"))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def run(calls: int = 500, auth: bool = True) -> dict[str, Any]:
    logging.disable(logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="labinterp-bench-cds-"))
    signer = Signer.generate() if auth else None
    app = create_app(config(tmp, signer, **({} if auth else {"CDS_AUTH": False})))
    templates = dict(app.extensions["labinterp.cds"].catalog[SERVICE].prefetch)
    bodies = {pid: hook_body("patient-view", pid, prefetch_for(pid, templates)) for pid in PATIENTS}
    path = f"/cds-services/{SERVICE}"
    tokens = [signer.token(url(path)) if signer else "" for _ in range(calls + len(PATIENTS))]
    client = app.test_client()
    times: list[float] = []
    statuses: dict[int, int] = {}
    cards = 0
    with responses.RequestsMock(assert_all_requests_are_fired=False) as fhir:  # nothing registered: any call fails
        for i in range(calls + len(PATIENTS)):  # the first round warms up (imports, caches) and is not counted
            pid = PATIENTS[i % len(PATIENTS)]
            headers = {"Authorization": f"Bearer {tokens[i]}"} if auth else {}
            started = time.perf_counter()
            r = client.post(path, json=bodies[pid], headers=headers)
            took = time.perf_counter() - started
            if i >= len(PATIENTS):
                times.append(took)
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                cards += len((r.get_json(silent=True) or {}).get("cards", []))
        fhir_calls = len(fhir.calls)
    ms = [t * 1000 for t in times]
    return {
        "service": SERVICE,
        "auth": "ES384 JWT" if auth else "off (LABINTERP_CDS_AUTH=false)",
        "patients": len(PATIENTS),
        "calls": len(ms),
        "statuses": statuses,
        "cards": cards,
        "fhir_requests": fhir_calls,
        "p50_ms": round(statistics.median(ms), 2),
        "p95_ms": round(percentile(ms, 95), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "max_ms": round(max(ms), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=500)
    ap.add_argument("--no-auth", action="store_true")
    ap.add_argument("--out", default=None, help="also write the figures as JSON here")
    a = ap.parse_args()
    f = run(a.calls, auth=not a.no_auth)
    print(
        f"CDS {f['service']} ({f['auth']}): {f['calls']} calls over {f['patients']} patients, statuses {f['statuses']}, "
        f"{f['cards']} cards, {f['fhir_requests']} FHIR requests; "
        f"p50 {f['p50_ms']} ms, p95 {f['p95_ms']} ms, p99 {f['p99_ms']} ms, max {f['max_ms']} ms"
    )
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(f, indent=2) + "\n")


if __name__ == "__main__":
    main()
