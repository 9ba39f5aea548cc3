"""`labinterp serve` as an operator runs it (gunicorn in a subprocess; no FHIR server needed for these checks)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from labinterp.cli.main import cli


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    work = tmp_path_factory.mktemp("serve")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABINTERP_")}
    env |= {"LABINTERP_FHIR_BASE_URL": "http://127.0.0.1:9/fhir", "LABINTERP_WORKDIR": str(work), "LABINTERP_POLL_SECONDS": "0"}
    log = (work / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "labinterp.cli.main", "serve", "--port", str(port), "--no-worker"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail("labinterp serve exited: " + (work / "serve.log").read_text()[-2000:])
            try:
                if requests.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()


def test_a_request_line_past_gunicorns_limit_is_a_414_operation_outcome(served: str) -> None:
    """gunicorn refuses it before the application; the answer is still an OperationOutcome with the headers."""
    r = requests.post(f"{served}/Patient/p01/$interpret?dry-run&x=" + "a" * 10_000, timeout=10)
    assert r.status_code == 414 and r.json()["resourceType"] == "OperationOutcome"
    assert r.headers["Content-Type"] == "application/fhir+json" and r.headers["X-Frame-Options"] == "DENY"


def test_headers_past_the_limit_are_a_431_operation_outcome(served: str) -> None:
    r = requests.get(f"{served}/healthz", headers={f"X-Pad-{i}": "x" for i in range(150)}, timeout=10)
    assert r.status_code == 431 and r.json()["issue"][0]["code"] == "too-long"


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10"])
def test_serving_beyond_loopback_needs_an_api_token(host: str, tmp_path: Path) -> None:
    env = {"LABINTERP_WORKDIR": str(tmp_path)}
    r = CliRunner().invoke(cli, ["serve", "--host", host], env=env)
    assert r.exit_code == 2 and "LABINTERP_API_TOKEN" in r.output
