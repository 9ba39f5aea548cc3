"""Benchmark (not a test) against one local HAPI FHIR server, in one run: labinterp's population run (many patients
per read and per transaction), its per-patient path (one batch read and one transaction per patient), a naive
client (a search per resource type, a request per resource), and HAPI's own ingest of the very transactions the
population run wrote (the same resources in the same batches, re-identified so that HAPI creates them again).

Prints, for each: patients per second, HTTP requests per patient, and labinterp's own CPU share (process CPU time
over wall time: the rest is waiting on HAPI); then the population replay (nothing to write) and the PUT-upsert mode.

    python scripts/bench_live.py --patients 10000 --sample 300 [--database mem|postgres] [--fhir-url URL]

The per-patient and naive clients run on `--sample` patients (they are slow by design); the population run and
HAPI's ingest on all of them. With no --fhir-url it starts its own sandbox (request validation on)."""

from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from labinterp.fhir.client import FhirClient
from labinterp.fhir.search import as_collection, query, unpack_searchset
from labinterp.knowledge import load_knowledge
from labinterp.pipeline import batch_gc, interpret_bundle, interpret_patient
from labinterp.population import ChunkOptions, Selection
from labinterp.population_run import run_population
from labinterp.sandbox.hapi import Sandbox, load_file
from labinterp.writeback import rewrite_references
from scripts.bench import synthetic

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "service" / "labinterp" / "examples" / "site-mappings"
NOW = datetime(2026, 1, 20, 12, tzinfo=UTC)
SERIES = "urn:labinterp:series"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass
class Row:
    name: str
    patients: int
    seconds: float
    requests: int
    cpu: float  # labinterp's process CPU seconds

    def line(self) -> str:
        share = f"{self.cpu / self.seconds * 100:>6.0f} %" if self.cpu >= 0 else "       -"
        return (
            f"{self.name:<34}{self.patients:>9}{self.patients / self.seconds:>12.1f}"
            f"{self.requests / self.patients:>18.3f}{share:>18}"
        )


class NaiveClient:
    """How a first integration often looks: a GET per resource type, then a POST per resource."""

    def __init__(self, base: str) -> None:
        self.base, self.session = base, requests.Session()
        self.session.headers.update({"Accept": "application/fhir+json", "Content-Type": "application/fhir+json"})
        self.requests = 0

    def _call(self, method: str, url: str, **kw: Any) -> Any:
        r = self.session.request(method, url, timeout=120, **kw)
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


class Recording(FhirClient):
    """A client that keeps the transactions it sent (for HAPI's own ingest of the same batches), in a spool file
    (a line each), not in memory: the process's RSS is then the population run's own."""

    spool: ClassVar[Any] = None  # an open text file, or None: nothing kept
    lock: ClassVar[threading.Lock] = threading.Lock()

    def transaction(self, bundle: dict[str, Any]) -> dict[str, Any]:
        if Recording.spool is not None:
            line = json.dumps(bundle)
            with Recording.lock:
                Recording.spool.write(line + "\n")
        return super().transaction(bundle)


def rss_mb() -> float:
    """This process's resident memory now (Linux), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class RssSampler:
    """Samples the process's RSS every `every` seconds while a run goes on: flat memory shows as the same figure
    after a tenth, half and all of the run."""

    def __init__(self, every: float = 0.5) -> None:
        self.every, self.samples = every, [rss_mb()]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.samples.append(rss_mb())

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(rss_mb())

    def summary(self) -> str:
        s, n = self.samples, len(self.samples)
        at = {f: max(s[: max(1, round(n * f))]) for f in (0.1, 0.5, 1.0)}
        return f"peak RSS after 10 % / 50 % / 100 % of the run: {at[0.1]:.0f} / {at[0.5]:.0f} / {at[1.0]:.0f} MB"


def load(base: str, bundle: dict[str, Any], threads: int = 2) -> float:
    """Load a collection of patients with the sandbox loader, split at patient boundaries over a few threads."""
    from concurrent.futures import ThreadPoolExecutor

    entries = bundle["entry"]
    starts = [i for i, e in enumerate(entries) if e["resource"]["resourceType"] == "Patient"]
    cuts = [starts[len(starts) * t // threads] for t in range(threads)] + [len(entries)]
    parts = [entries[a:b] for a, b in itertools.pairwise(cuts) if b > a]

    def one(part: list[dict[str, Any]]) -> None:
        with tempfile.NamedTemporaryFile("w", suffix=".json") as fh:
            json.dump({"resourceType": "Bundle", "type": "collection", "entry": part}, fh)
            fh.flush()
            load_file(Path(fh.name), base)

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, parts))
    return time.perf_counter() - started


def reidentified(text: str) -> str:
    """The same transaction with fresh uuids, so that HAPI creates every resource of it again."""
    return UUID.sub(lambda m: str(uuid.uuid5(uuid.NAMESPACE_URL, m.group(0))), text)


def ingest(base: str, spool: Path) -> Row:
    """The spooled transactions posted again one after another, each re-identified just before it is sent."""
    session = requests.Session()
    session.headers.update({"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"})
    patients = sent = 0
    seconds = 0.0
    with spool.open() as fh:
        for text in fh:
            if '"Patient/' not in text:  # the Device's own transaction aside
                continue
            body = reidentified(text)
            patients += len(set(re.findall(r'"Patient/(P\d+)"', body)))
            t0 = time.perf_counter()
            r = session.post(base, data=body.encode(), timeout=600)
            r.raise_for_status()
            seconds += time.perf_counter() - t0
            sent += 1
    return Row("HAPI's own ingest (same batches)", patients, seconds, sent, -1)


def population(base: str, k: Any, group: str, options: ChunkOptions, name: str, chunk: int, workers: int) -> Row:
    """A population run over a Group's members (`interpret --group`), as the CLI runs it."""
    clients: list[FhirClient] = []

    def factory() -> FhirClient:
        clients.append(Recording(base, timeout=(5.0, 600.0)))
        return clients[-1]

    cpu0 = time.process_time()
    with RssSampler() as rss, batch_gc():  # as `labinterp interpret --all|--group` runs it
        summary = run_population(factory, Selection(group=group), k, NOW, options, chunk_size=chunk, workers=workers)
    assert not summary.outcome.failed, summary.outcome.failed[:3]
    print(f"  {name}: {rss.summary()}", flush=True)
    return Row(name, summary.outcome.patients, summary.seconds, summary.requests, time.process_time() - cpu0)


def per_patient(base: str, k: Any, prefix: str, m: int, name: str) -> Row:
    """The per-patient path (`interpret_patient`: one batch read, one transaction) over patients prefix0..m-1."""
    client = FhirClient(base, timeout=(5.0, 120.0))
    cpu0, t0 = time.process_time(), time.perf_counter()
    for i in range(m):
        interpret_patient(client, f"{prefix}{i}", k, NOW)
    return Row(name, m, time.perf_counter() - t0, client.stats.requests, time.process_time() - cpu0)


def naive_run(base: str, k: Any, prefix: str, m: int) -> Row:
    naive = NaiveClient(base)
    cpu0, t0 = time.process_time(), time.perf_counter()
    for i in range(m):
        naive.run(f"{prefix}{i}", k)
    return Row("naive client", m, time.perf_counter() - t0, naive.requests, time.process_time() - cpu0)


def group(base: str, gid: str, prefix: str, ids: Iterable[int]) -> None:
    body = {
        "resourceType": "Group",
        "id": gid,
        "type": "person",
        "actual": True,
        "member": [{"entity": {"reference": f"Patient/{prefix}{i}"}} for i in ids],
    }
    requests.put(
        f"{base}/Group/{gid}", json=body, headers={"Content-Type": "application/fhir+json"}, timeout=600
    ).raise_for_status()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=1000, help="patients of the population run and of HAPI's ingest")
    ap.add_argument("--sample", type=int, default=200, help="patients of the per-patient and naive clients")
    ap.add_argument("--database", choices=["mem", "postgres"], default="mem")
    ap.add_argument("--fhir-url", default=None)
    ap.add_argument("--port", type=int, default=8099, help="the sandbox's port when the script starts its own")
    ap.add_argument("--chunk", type=int, default=100)
    ap.add_argument("--transaction-size", type=int, default=50)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--json", default=None, help="also write the figures here")
    ap.add_argument(
        "--hapi-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a launcher setting for the sandbox the script starts, e.g. LABINTERP_HAPI_MASS_INGESTION=true (repeatable)",
    )
    args = ap.parse_args()
    box = None
    base = args.fhir_url
    settings = dict(s.split("=", 1) for s in args.hapi_setting)
    if any(not name.startswith("LABINTERP_HAPI_") for name in settings):
        ap.error("--hapi-setting takes LABINTERP_HAPI_*=VALUE")
    if not base:
        box = Sandbox(ROOT / ".labinterp", port=args.port, database=args.database, heap="4g", pg_port=args.port + 1, env=settings)
        shown = ", ".join(f"{k}={v}" for k, v in settings.items())
        print(f"starting a local HAPI ({args.database}, request validation on{', ' + shown if shown else ''})...", flush=True)
        base = box.up(timeout=600)
    try:
        run(base, args)
    finally:
        if box is not None:
            box.down()


def run(base: str, args: argparse.Namespace) -> None:
    k = load_knowledge(SITE)
    n, m = args.patients, min(args.sample, args.patients)
    t = load(base, synthetic(n, args.seed, "P"))
    t += sum(load(base, synthetic(m, args.seed + 1, prefix)) for prefix in ("Q", "N", "U"))
    for gid, prefix, count in (("bench-p", "P", n), ("bench-u", "U", m)):
        group(base, gid, prefix, range(count))
    print(f"loaded {n} + 3 x {m} patients in {t:.0f} s", flush=True)
    options = ChunkOptions(transaction_size=args.transaction_size)
    rows: list[Row] = []

    # `--all` would take the other clients' patients too: the run is over a Group of the P patients
    spool = Path(tempfile.mkdtemp(prefix="bench-live-")) / "sent.ndjson"
    with spool.open("w") as Recording.spool:
        rows.append(population(base, k, "bench-p", options, "labinterp population run", args.chunk, args.workers))
    Recording.spool = None
    print(rows[-1].line(), flush=True)

    rows.append(per_patient(base, k, "Q", m, "labinterp per patient"))
    print(rows[-1].line(), flush=True)
    rows.append(naive_run(base, k, "N", m))
    print(rows[-1].line(), flush=True)

    # HAPI's ingest of the very transactions the population run sent, about the same patients, every uuid (content,
    # series, Provenance ids) replaced so that HAPI creates everything again: the same resources in the same batches
    rows.append(ingest(base, spool))
    spool.unlink()
    spool.parent.rmdir()
    print(rows[-1].line(), flush=True)

    rows.append(population(base, k, "bench-p", options, "population replay (nothing new)", args.chunk, args.workers))
    print(rows[-1].line(), flush=True)
    rows.append(population(base, k, "bench-u", ChunkOptions(write="put"), "population, PUT upserts", args.chunk, args.workers))
    print(rows[-1].line(), flush=True)

    pop, per, nai, hapi = rows[0], rows[1], rows[2], rows[3]
    rate = {r.name: r.patients / r.seconds for r in rows}
    print(f"\n{'':<34}{'patients':>9}{'patients/s':>12}{'requests/patient':>18}{'labinterp CPU':>18}")
    for r in rows:
        print(r.line())
    print(
        f"\npopulation vs per patient: {rate[pop.name] / rate[per.name]:.1f}x; vs naive: {rate[pop.name] / rate[nai.name]:.1f}x; "
        f"vs HAPI's own ingest of the same batches: {rate[pop.name] / rate[hapi.name] * 100:.0f} %"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "database": args.database,
                    "hapi_settings": args.hapi_setting,
                    "rows": [{**r.__dict__, "patients_per_second": r.patients / r.seconds} for r in rows],
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
