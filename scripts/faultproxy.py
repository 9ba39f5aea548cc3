"""Fault injection between labinterp and its FHIR server: a loopback HTTP proxy that forwards to HAPI and, for a share
of the requests, answers 503, answers 429 with Retry-After, forwards the request and then drops the connection with
a reset instead of the response (the server applied the write; the client never hears so), or forwards after a
delay. An `outage` makes every request fail with a reset for some seconds, as a FHIR server being restarted does.

`run_experiment` is the proof (tests/integration/test_faults.py runs it at CI size): N synthetic patients loaded
into HAPI, the service pointed at the proxy, every patient queued through the hook plus a share of them interpreted
synchronously with `POST /$interpret`; the service killed (SIGKILL) with a full queue and started again on the same
queue; an outage mid-run. Then, read directly from HAPI: every report series written exactly once (no duplicate by
series identifier, none lost against what the patients' data produce offline), no 500 from the service, and the
service's logs scanned for the patients' names, identifiers, birth dates and the tokens. Figures are printed and
written to build/proof/faults.json.

    python scripts/faultproxy.py [--patients 1000] [--fault-rate 0.25] [--fhir-url URL]   # default: own sandbox
    python scripts/faultproxy.py --serve --upstream URL [--port 8099]                      # the proxy alone
    python scripts/faultproxy.py --print build/proof/faults.json                           # figures of a run
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SERIES = "urn:labinterp:series"
PROOF = ROOT / "build" / "proof"
HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "host", "accept-encoding"}
DEFAULT_KINDS = {"503": 0.3, "429": 0.2, "reset_after_forward": 0.3, "delay": 0.2}


@dataclass
class FaultStats:
    requests: int = 0  # requests the proxy received
    forwarded: int = 0  # requests that reached the FHIR server
    faults: Counter[str] = field(default_factory=Counter)  # by kind
    writes_reset: int = 0  # POST/PUT/DELETE the server applied whose answer was dropped
    upstream_down: int = 0  # requests the FHIR server itself did not answer (it was restarting): reset too

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "forwarded": self.forwarded,
            "faults": dict(sorted(self.faults.items())),
            "faulted": sum(self.faults.values()),
            "faulted_share": round(sum(self.faults.values()) / self.requests, 3) if self.requests else 0.0,
            "writes_applied_then_reset": self.writes_reset,
            "upstream_down": self.upstream_down,
        }


def _is_write(method: str, body: bytes) -> bool:
    """A request that changes the server: PUT, DELETE, PATCH, or a POST that is not a read batch or a search."""
    if method in ("PUT", "DELETE", "PATCH"):
        return True
    if method != "POST":
        return False
    try:
        return json.loads(body or b"{}").get("type") != "batch"
    except (ValueError, AttributeError):
        return True


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (the service killed, a reset) is no error of the proxy's: not printed."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class FaultProxy:
    """A threaded HTTP/1.1 proxy on 127.0.0.1 in front of `upstream` (a FHIR base URL). Each request is faulted with
    probability `rate`, its kind drawn from `kinds` (weights), from a seeded generator."""

    def __init__(
        self,
        upstream: str,
        *,
        rate: float = 0.25,
        kinds: dict[str, float] | None = None,
        seed: int = 1,
        port: int = 0,
        delay: tuple[float, float] = (0.3, 1.5),
        retry_after: int = 1,
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.rate, self.kinds, self.delay, self.retry_after = rate, kinds or dict(DEFAULT_KINDS), delay, retry_after
        self.rng = random.Random(seed)
        self.stats = FaultStats()
        self.lock = threading.Lock()
        self.down_until = 0.0
        self.local = threading.local()
        up_path = requests.utils.urlparse(self.upstream).path  # e.g. /fhir: the proxy serves the same path
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                proxy.handle(self)

            do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

        self.server = _Server(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{up_path}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="faultproxy", daemon=True)

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def outage(self, seconds: float) -> None:
        """Every request in the next `seconds` is reset unanswered (the FHIR server restarting)."""
        with self.lock:
            self.down_until = time.monotonic() + seconds

    def _session(self) -> requests.Session:
        s: requests.Session | None = getattr(self.local, "session", None)
        if s is None:
            s = self.local.session = requests.Session()
        return s

    def _decide(self, method: str, body: bytes) -> str | None:
        with self.lock:
            self.stats.requests += 1
            if time.monotonic() < self.down_until:
                kind: str | None = "outage"
            elif self.rng.random() < self.rate:
                kind = self.rng.choices(list(self.kinds), weights=list(self.kinds.values()))[0]
            else:
                kind = None
            if kind:
                self.stats.faults[kind] += 1
            if kind == "reset_after_forward" and _is_write(method, body):
                self.stats.writes_reset += 1
            return kind

    def _forward(self, h: BaseHTTPRequestHandler, body: bytes) -> requests.Response:
        path = h.path
        prefix = requests.utils.urlparse(self.url).path
        target = self.upstream + path[len(prefix) :] if path.startswith(prefix) else self.upstream + path
        headers = {k: v for k, v in h.headers.items() if k.lower() not in HOP}
        headers["Accept-Encoding"] = "identity"
        resp = self._session().request(h.command, target, data=body or None, headers=headers, timeout=(5, 120))
        with self.lock:
            self.stats.forwarded += 1
        return resp

    @staticmethod
    def _reset(h: BaseHTTPRequestHandler) -> None:
        """Close the client's connection with a TCP reset, no answer sent."""
        h.close_connection = True
        try:
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.connection.close()
        except OSError:
            pass

    def _answer(self, h: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str]) -> None:
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        kind = self._decide(h.command, body)
        if kind == "outage":
            self._reset(h)
            return
        if kind in ("503", "429"):
            status = int(kind)
            oo = {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "transient", "diagnostics": f"injected {status}"}],
            }
            extra = {"Retry-After": str(self.retry_after)} if status == 429 else {}
            self._answer(h, status, json.dumps(oo).encode(), {"Content-Type": "application/fhir+json", **extra})
            return
        if kind == "delay":
            time.sleep(self.rng.uniform(*self.delay))
        try:
            resp = self._forward(h, body)
        except requests.RequestException:
            with self.lock:
                self.stats.upstream_down += 1
            self._reset(h)  # the FHIR server itself did not answer: so does the proxy
            return
        if kind == "reset_after_forward":
            self._reset(h)
            return
        # the FHIR server builds its absolute URLs (fullUrl, Location, next links) from its own base: the proxy's
        content = resp.content.replace(self.upstream.encode(), self.url.encode())
        headers = {k: v.replace(self.upstream, self.url) for k, v in resp.headers.items() if k.lower() not in HOP}
        self._answer(h, resp.status_code, content, headers)


# --- the experiment ---------------------------------------------------------------------------------------------


@dataclass
class Cohort:
    bundle: dict[str, Any]
    patients: list[str]
    expected: dict[str, set[str]]  # patient id -> series identifiers its data produce
    secrets: dict[str, list[str]]  # what must never be logged: names, identifiers, birth dates


def synth_cohort(n: int, prefix: str = "flt", seed: int = 7) -> Cohort:
    """`n` realistic synthetic patients (labinterp.cohort.synth) with ids `{prefix}00001`…, each given a name and a
    medical record number (the synthesizer writes none) so the log scan has something to look for; the series each
    patient should get, from an offline interpretation of the same data."""
    from labinterp.cohort.synth import as_bundle, realistic_patients
    from labinterp.knowledge import load_knowledge
    from labinterp.pipeline import interpret_bundle

    k = load_knowledge(ROOT / "service" / "labinterp" / "examples" / "site-mappings")
    people = realistic_patients(k, n, seed=seed)
    for i, p in enumerate(people):
        p.pid = f"{prefix}{i + 1:05d}"
    bundle = as_bundle(people, k)
    secrets: dict[str, list[str]] = {"names": [], "identifiers": [], "birth_dates": []}
    for e in bundle["entry"]:
        r = e["resource"]
        if r["resourceType"] == "Patient":
            serial = int(r["id"][len(prefix) :])
            family, given = f"Zorvath{serial:05d}", f"Quillon{serial:05d}"
            mrn = f"MRN-{seed:02d}-{serial * 7919 % 10_000_000:07d}"
            r["name"] = [{"family": family, "given": [given]}]
            r["identifier"] = [{"system": "urn:oid:1.2.3.4.5.6", "value": mrn}]
            secrets["names"] += [family, given]
            secrets["identifiers"].append(mrn)
            secrets["birth_dates"].append(r["birthDate"])
    offline = interpret_bundle(bundle, k, datetime.now(UTC), validate=False, render=False)
    expected: dict[str, set[str]] = {p.pid: set() for p in people}
    for e in offline.bundle["entry"]:
        r = e["resource"]
        pid = str((r.get("subject") or {}).get("reference", "")).removeprefix("Patient/")
        for ident in r.get("identifier") or []:
            if isinstance(ident, dict) and ident.get("system") == SERIES and pid in expected:
                expected[pid].add(ident["value"])
    return Cohort(bundle, [p.pid for p in people], expected, secrets)


def _pages(s: requests.Session, url: str | None) -> Iterator[dict[str, Any]]:
    while url:
        page = s.get(url, timeout=120).json()
        yield from (e.get("resource") or {} for e in page.get("entry", []) or [])
        url = next((link["url"] for link in page.get("link", []) if link.get("relation") == "next"), None)


def provenance_per_patient(fhir_url: str, owners: dict[str, str]) -> Counter[str]:
    """How many Provenance resources target each patient's reports (`owners`: "Type/id" -> patient id)."""
    s = requests.Session()
    s.headers["Accept"] = "application/fhir+json"
    out: Counter[str] = Counter()
    for r in _pages(s, f"{fhir_url}/Provenance?_count=500&_elements=target"):
        pids = {owners.get(str(t.get("reference", "")).split("/_history")[0]) for t in r.get("target") or []} - {None}
        for pid in pids:
            out[str(pid)] += 1
    return out


def written_series(fhir_url: str, prefix: str, owners: dict[str, str] | None = None) -> dict[str, Counter[str]]:
    """What HAPI holds, read directly (not through the proxy): patient id -> series identifier -> resources.
    `owners`, when given, gets "Type/id" -> patient id of each."""
    out: dict[str, Counter[str]] = {}
    s = requests.Session()
    s.headers["Accept"] = "application/fhir+json"
    for rtype in ("DiagnosticReport", "RiskAssessment", "Observation"):
        for r in _pages(s, f"{fhir_url}/{rtype}?identifier={SERIES}%7C&_count=500&_elements=identifier,subject"):
            pid = str((r.get("subject") or {}).get("reference", "")).removeprefix("Patient/")
            if not pid.startswith(prefix):
                continue
            if owners is not None:
                owners[f"{rtype}/{r.get('id')}"] = pid
            for ident in r.get("identifier") or []:
                if ident.get("system") == SERIES:
                    out.setdefault(pid, Counter())[f"{rtype}|{ident['value']}"] += 1
    return out


def scan_logs(paths: list[Path], secrets: dict[str, list[str]]) -> dict[str, Any]:
    """Every secret looked for in every log file: returns what was scanned and what was found (must be nothing)."""
    text = "\n".join(p.read_text(errors="replace") for p in paths if p.exists())
    found = {kind: sorted({v for v in values if v and v in text}) for kind, values in secrets.items()}
    return {
        "files": [p.name for p in paths],
        "bytes": len(text.encode()),
        "lines": text.count("\n"),
        "looked_for": {kind: len(set(values)) for kind, values in secrets.items()},
        "found": {kind: v for kind, v in found.items() if v},
    }


def _kill(proc: Any) -> None:
    """SIGKILL the service: its gunicorn worker process(es) first, then the master (no graceful shutdown)."""
    try:
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    except OSError:
        children = []
    for child in children:
        with contextlib.suppress(OSError):
            os.kill(int(child), signal.SIGKILL)
    proc.kill()
    proc.wait(10)


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def run_experiment(
    fhir_url: str,
    workdir: Path,
    *,
    patients: int = 1000,
    rate: float = 0.25,
    seed: int = 1,
    sync_share: float = 0.2,
    outage_seconds: float = 8.0,
    threads: int = 4,
    timeout: float = 1800.0,
    out: Path | None = PROOF / "faults.json",
    restart_hapi: Callable[[], None] | None = None,
    lease: float = 30.0,
) -> dict[str, Any]:
    """The proof (see the module's docstring). `restart_hapi`, when given, stops and starts the FHIR server (its data
    kept) in the middle of the run, while the queue drains."""
    from labinterp.sandbox.hapi import as_transaction
    from tests.integration.conftest import Service

    started = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    prefix = f"flt{seed}x"
    cohort = synth_cohort(patients, prefix=prefix)
    entries = cohort.bundle["entry"]
    load = requests.Session()
    for i in range(0, len(entries), 1400):  # about 200 patients a transaction (7 resources each)
        tx = as_transaction({"entry": entries[i : i + 1400]}, fhir_url)
        r = load.post(fhir_url, json=tx, headers={"Content-Type": "application/fhir+json"}, timeout=600)
        r.raise_for_status()
    api_token, hook_token = f"api-{os.urandom(12).hex()}", f"hook-{os.urandom(12).hex()}"
    secrets = dict(cohort.secrets, tokens=[api_token, hook_token])
    statuses: Counter[str] = Counter()  # the service's answers, by status (batch entries too)
    counting = threading.Lock()

    def count(key: str) -> None:
        with counting:
            statuses[key] += 1

    env = {
        "LABINTERP_API_TOKEN": api_token,
        "LABINTERP_HOOK_TOKEN": hook_token,
        "LABINTERP_WORKER_THREADS": str(threads),
        "LABINTERP_HOOK_PER_MINUTE": "1000000",
        # a running job older than the lease is taken for a dead process's: longer than any one job under these
        # faults (a shorter lease loses jobs: see test_faults.py::test_a_job_outliving_its_lease_is_not_lost)
        "LABINTERP_QUEUE_LEASE": str(lease),
    }
    from labinterp.config import Settings

    if "log_format" in Settings.model_fields:  # JSON logs at INFO: more for the log scan to read
        env["LABINTERP_LOG_FORMAT"] = "json"
    api = {"Authorization": f"Bearer {api_token}"}
    events: list[str] = []
    with FaultProxy(fhir_url, rate=rate, seed=seed) as proxy:

        def queue(svc: Service) -> dict[str, int]:
            r = requests.get(f"{svc.url}/queue", headers=api, timeout=30)
            count(str(r.status_code))
            return dict(r.json()["counts"]) if r.status_code == 200 else {}

        def wait_done(svc: Service, done: int, limit: float) -> dict[str, int]:
            deadline = time.monotonic() + limit
            while True:
                counts = queue(svc)
                if counts.get("done", 0) + counts.get("failed", 0) >= done or time.monotonic() > deadline:
                    return counts
                time.sleep(0.5)

        svc = Service(proxy.url, workdir, worker=True, extra_env=env)
        logs = [Path(svc.log.name)]
        hook = {"Authorization": f"Bearer {hook_token}", "Content-Type": "application/fhir+json"}
        for pid in cohort.patients:  # every patient queued through the Subscription's endpoint
            r = requests.post(f"{svc.url}/hook", json={"resourceType": "Patient", "id": pid}, headers=hook, timeout=30)
            count(str(r.status_code))
        counts = wait_done(svc, max(1, patients // 4), timeout / 3)
        events.append(f"killed (SIGKILL) with queue {counts}")
        _kill(svc.proc)
        svc.log.close()
        svc = Service(proxy.url, workdir, worker=True, extra_env=env)  # the same queue database
        logs.append(Path(svc.log.name))
        events.append(f"restarted with queue {queue(svc)}")

        sync = cohort.patients[:: max(1, round(1 / sync_share))] if sync_share else []
        sync_errors: list[str] = []

        def interpret_sync() -> None:  # POST /$interpret alongside the queue: the API and the workers race
            for chunk in _chunks(sync, 10):
                body: dict[str, Any] = {
                    "resourceType": "Parameters",
                    "parameter": [{"name": "patient", "valueReference": {"reference": f"Patient/{p}"}} for p in chunk],
                }
                try:
                    r = requests.post(f"{svc.url}/$interpret", json=body, headers=api, timeout=600)
                except requests.RequestException as exc:
                    sync_errors.append(type(exc).__name__)
                    continue
                count(str(r.status_code))
                if r.status_code == 200:
                    for e in r.json().get("entry", []):
                        count(f"entry {e['response']['status']}")

        syncer = threading.Thread(target=interpret_sync)
        syncer.start()
        wait_done(svc, patients // 2, timeout / 3)
        restarter = None
        if restart_hapi is not None:
            events.append(f"HAPI restarted with queue {queue(svc)}")
            restarter = threading.Thread(target=restart_hapi)
            restarter.start()
        if outage_seconds:
            events.append(f"outage of {outage_seconds:.0f} s (every request reset) with queue {queue(svc)}")
            proxy.outage(outage_seconds)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            counts = queue(svc)
            if counts.get("pending", 0) == 0 and counts.get("running", 0) == 0 and not syncer.is_alive():
                break
            time.sleep(1.0)
        syncer.join(timeout=max(1.0, deadline - time.monotonic()))
        if restarter is not None:
            restarter.join()
        state = requests.get(f"{svc.url}/queue", headers=api, timeout=30).json()
        svc.stop()
        proxy_stats = proxy.stats.as_dict()

    owners: dict[str, str] = {}
    held = written_series(fhir_url, prefix, owners)
    provenance = provenance_per_patient(fhir_url, owners)
    duplicates = {f"{pid} {key}": n for pid, c in held.items() for key, n in c.items() if n > 1}
    lost = {
        pid: sorted(want - {key.split("|", 1)[1] for key in held.get(pid, Counter())})
        for pid, want in cohort.expected.items()
        if want - {key.split("|", 1)[1] for key in held.get(pid, Counter())}
    }
    unexpected = {
        pid: sorted({key.split("|", 1)[1] for key in c} - cohort.expected.get(pid, set()))
        for pid, c in held.items()
        if {key.split("|", 1)[1] for key in c} - cohort.expected.get(pid, set())
    }
    scan = scan_logs(logs, secrets)
    scan["patient_ids_found"] = len(scan_logs(logs, {"ids": cohort.patients})["found"].get("ids", []))  # not a secret
    figures: dict[str, Any] = {
        "patients": patients,
        "patients_with_reports_expected": sum(1 for v in cohort.expected.values() if v),
        "series_expected": sum(len(v) for v in cohort.expected.values()),
        "proxy": proxy_stats,
        "reports_written": sum(sum(c.values()) for c in held.values()),
        "duplicates": len(duplicates),
        "lost": sum(len(v) for v in lost.values()),
        "unexpected_series": sum(len(v) for v in unexpected.values()),
        "provenance_written": sum(provenance.values()),
        "patients_with_provenance_not_once": sum(1 for pid in cohort.patients if provenance.get(pid, 0) != 1),
        "service_500s": sum(n for k, n in statuses.items() if k.endswith("500")),
        "service_statuses": dict(sorted(statuses.items())),
        "sync_patients": len(sync),
        "sync_client_errors": len(sync_errors),
        "queue_final": state.get("counts", {}),
        "queue_failed": [{"patient": f.get("patient"), "error": f.get("error")} for f in state.get("failed", [])][:20],
        "events": events,
        "hapi_restarted": restart_hapi is not None,  # else the outage at the proxy stands for it
        "log_scan": scan,
        "elapsed_seconds": round(time.monotonic() - started, 1),
        "examples": {"duplicates": dict(list(duplicates.items())[:10]), "lost": dict(list(lost.items())[:10])},
    }
    print_figures(figures)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"written: {out}")
    return figures


def print_figures(f: dict[str, Any]) -> None:
    p = f["proxy"]
    print("== fault injection ==")
    print(f"patients            {f['patients']} ({f['sync_patients']} also through POST /$interpret)")
    print(f"requests to FHIR    {p['requests']} ({p['forwarded']} reached HAPI, {p.get('upstream_down', 0)} found it down)")
    faults = ", ".join(f"{k} {v}" for k, v in p["faults"].items())
    print(
        f"faults injected     {p['faulted']} = {p['faulted_share']:.0%} ({faults}); {p['writes_applied_then_reset']} writes applied then reset"
    )
    print(f"events              {'; '.join(f['events'])}")
    print(f"reports written     {f['reports_written']} of {f['series_expected']} series expected")
    print(f"duplicates          {f['duplicates']}")
    print(f"lost                {f['lost']}")
    print(
        f"provenance          {f['provenance_written']} ({f['patients_with_provenance_not_once']} patients without exactly one)"
    )
    print(f"service 500s        {f['service_500s']}   statuses {f['service_statuses']}")
    print(f"queue at the end    {f['queue_final']}")
    scan = f["log_scan"]
    print(
        f"log scan            {scan['lines']} lines of {', '.join(scan['files'])}: looked for {scan['looked_for']}; "
        f"found {scan['found'] or 'nothing'}"
    )
    print(f"elapsed             {f['elapsed_seconds']} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=1000)
    ap.add_argument("--fault-rate", type=float, default=0.25)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--outage", type=float, default=8.0, help="seconds of outage mid-run (0: none)")
    ap.add_argument("--threads", type=int, default=4, help="the service's worker threads")
    ap.add_argument("--fhir-url", default=None, help="a running HAPI (default: start a sandbox on a free port)")
    ap.add_argument("--out", default=str(PROOF / "faults.json"))
    ap.add_argument("--restart-hapi", action="store_true", help="own sandbox on a file database, restarted mid-run")
    ap.add_argument("--lease", type=float, default=30.0, help="LABINTERP_QUEUE_LEASE of the service, seconds")
    ap.add_argument("--print", dest="show", metavar="FILE", help="print the figures of an earlier run (faults.json) and stop")
    ap.add_argument("--serve", action="store_true", help="run the proxy alone in front of --upstream")
    ap.add_argument("--upstream", default=None)
    ap.add_argument("--port", type=int, default=8099)
    a = ap.parse_args()
    if a.show:
        print_figures(json.loads(Path(a.show).read_text()))
        return
    if a.serve:
        proxy = FaultProxy(a.upstream or a.fhir_url, rate=a.fault_rate, seed=a.seed, port=a.port)
        print(f"proxy {proxy.url} -> {proxy.upstream}, {a.fault_rate:.0%} of requests faulted; Ctrl-C stops")
        proxy.start()
        try:
            while True:
                time.sleep(10)
                print(json.dumps(proxy.stats.as_dict()))
        except KeyboardInterrupt:
            proxy.stop()
        return
    from labinterp.sandbox.hapi import Sandbox
    from tests.integration.conftest import free_port

    workdir = ROOT / "build" / "proof" / f"faults-work-{os.getpid()}"
    box = None
    url = a.fhir_url
    restart: Callable[[], None] | None = None
    if not url:
        if a.restart_hapi:  # its own work directory and H2 file: the demo's database is left alone
            home = workdir / "hapi"
            (home / "packages").mkdir(parents=True, exist_ok=True)
            for tgz in (ROOT / ".labinterp" / "packages").glob("*.tgz"):  # fetched once by the sandbox: no npm again
                shutil.copy(tgz, home / "packages" / tgz.name)
            box = Sandbox(home, port=free_port(), database="file")
            sandbox = box

            def restart() -> None:
                sandbox.down()
                sandbox.up(timeout=600, with_packages=False)

        else:
            box = Sandbox(ROOT / ".labinterp", port=free_port(), database="mem")
        url = box.up(timeout=600)
    try:
        f = run_experiment(
            url.rstrip("/"),
            workdir,
            patients=a.patients,
            rate=a.fault_rate,
            seed=a.seed,
            outage_seconds=a.outage,
            threads=a.threads,
            out=Path(a.out),
            restart_hapi=restart,
            lease=a.lease,
        )
    finally:
        if box is not None:
            box.down()
    ok = f["duplicates"] == 0 and f["lost"] == 0 and f["service_500s"] == 0 and not f["log_scan"]["found"]
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
