"""The whole loop on the embedded default: local HAPI up, the example patients loaded, the service
started, every patient interpreted through the service's API, and what HAPI now holds summarized."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from labinterp.errors import LabinterpError
from labinterp.fhir.client import FhirClient
from labinterp.fhir.search import reference
from labinterp.pipeline import batch_series
from labinterp.sandbox.hapi import ROOT, Sandbox, load_file

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SERIES = "urn:labinterp:series"


class DemoError(LabinterpError):
    pass


def _start_service(fhir_url: str, workdir: Path, port: int) -> tuple[subprocess.Popen[bytes], str]:
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ)
    env.update(
        {
            "LABINTERP_FHIR_BASE_URL": fhir_url,
            "LABINTERP_WORKDIR": str(workdir),
            "LABINTERP_MAPPINGS_DIR": str(EXAMPLES / "site-mappings"),
        }
    )
    with (workdir / "labinterp.log").open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "labinterp.cli.main", "serve", "--port", str(port), "--callback-url", url],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/readyz", timeout=2).status_code == 200:
                return proc, url
        except requests.RequestException:
            pass
        if proc.poll() is not None:
            raise DemoError(f"the service exited with {proc.returncode}; see {workdir / 'labinterp.log'}")
        time.sleep(0.3)
    proc.terminate()
    proc.wait(10)
    raise DemoError(f"the service did not become ready; see {workdir / 'labinterp.log'}")


def summary_lines(fhir: FhirClient, patient: str, outcome: str) -> list[str]:
    lines = [f"Patient/{patient}: {outcome}"]
    ours = [("subject", reference("Patient", patient)), ("identifier", f"{SERIES}|")]
    for dr in fhir.search("DiagnosticReport", ours):
        codes = ",".join(c["coding"][0]["code"] for c in dr.get("conclusionCode", []))
        first = dr.get("conclusion", "").split(". ")[0]
        lines.append(f"  {dr['code'].get('text', 'report')} [{dr['status']}{'; ' + codes if codes else ''}]: {first[:150]}")
    for ra in fhir.search("RiskAssessment", ours):
        parts = []
        for p in ra.get("prediction", []):
            risk = (p.get("qualitativeRisk") or {}).get("coding", [{}])[0].get("code", "not assessable")
            prob = f" ({p['probabilityDecimal']:g})" if "probabilityDecimal" in p else ""
            parts.append(f"{p['outcome']['text'].split(' (')[0]}: {risk}{prob}")
        lines.append("  risk: " + "; ".join(parts))
    return lines


def _demo_batches(fhir_url: str, service_url: str, echo: Callable[[str], Any]) -> None:
    """The example formulation batches (microsphere QC, SPEC section 5) loaded and each interpreted through the
    service (`POST /Substance/<id>/$interpret`); the QC reports HAPI then holds, summarized."""
    batches_file = EXAMPLES / "batches.json"
    n = load_file(batches_file, fhir_url)
    batches = [
        e["resource"]["id"] for e in json.loads(batches_file.read_text())["entry"] if e["resource"]["resourceType"] == "Substance"
    ]
    echo(f"loaded {n} resources: {len(batches)} example microsphere batches")
    fhir = FhirClient(fhir_url)
    for bid in batches:
        resp = requests.post(f"{service_url}/Substance/{bid}/$interpret", timeout=120)
        if resp.status_code != 200:
            raise DemoError(f"POST {service_url}/Substance/{bid}/$interpret: HTTP {resp.status_code}: {resp.text[:300]}")
        echo(f"Substance/{bid}: {resp.headers.get('X-Labinterp-Conclusion', '?')}")
        for dr in fhir.search("DiagnosticReport", [("identifier", f"{SERIES}|{batch_series(bid)}")]):
            echo(f"  {dr['code'].get('text', 'report')} [{dr['status']}]: {dr.get('conclusion', '')[:200]}")


def run_demo(
    workdir: Path,
    *,
    fhir_port: int = 8090,
    service_port: int = 8080,
    keep_running: bool = True,
    echo: Callable[[str], Any] = print,
) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    box = Sandbox(workdir, port=fhir_port, database="file")
    echo("starting the local HAPI FHIR server (first time: builds docker/hapi and fetches the IG; 1-3 min)...")
    fhir_url = box.up()
    echo(f"HAPI FHIR R4 at {fhir_url}")
    patients_file = EXAMPLES / "patients.json"
    n = load_file(patients_file, fhir_url)
    patients = [
        e["resource"]["id"] for e in json.loads(patients_file.read_text())["entry"] if e["resource"]["resourceType"] == "Patient"
    ]
    echo(f"loaded {n} resources: {len(patients)} example patients")
    proc, service_url = _start_service(fhir_url, workdir, service_port)
    echo(f"labinterp service at {service_url} (queue worker, poll and Subscription on)")
    try:
        params: dict[str, Any] = {
            "resourceType": "Parameters",
            "parameter": [{"name": "patient", "valueReference": {"reference": f"Patient/{p}"}} for p in patients],
        }
        started = time.perf_counter()
        resp = requests.post(f"{service_url}/$interpret", json=params, timeout=600)
        if resp.status_code != 200:
            raise DemoError(f"POST {service_url}/$interpret: HTTP {resp.status_code}: {resp.text[:300]}")
        took = time.perf_counter() - started
        fhir = FhirClient(fhir_url)
        for entry in resp.json()["entry"]:
            pid = entry["response"]["location"].split("/", 1)[1]
            text = entry["response"]["outcome"]["issue"][0]["diagnostics"]
            for line in summary_lines(fhir, pid, text):
                echo(line)
        echo(f"{len(patients)} patients interpreted through the service in {took:.1f} s")
        _demo_batches(fhir_url, service_url, echo)
    finally:
        proc.terminate()
        proc.wait(20)
    if keep_running:
        echo(f"HAPI is still running at {fhir_url} (data kept under {workdir / 'h2'}); stop it with: labinterp sandbox down")
    else:
        box.down()
