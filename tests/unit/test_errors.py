"""One error tree decides what is retried (issue 8 point 4): each class says whether it is temporary, and the
FHIR client and the queue worker read that and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

from labinterp.errors import (
    BundleError,
    FhirAuthError,
    FhirError,
    FhirLinkError,
    LabinterpError,
    MappingsError,
    ResourceError,
    SmartAuthError,
    is_temporary,
)
from labinterp.fhir.retry import error_for
from labinterp.server.queue import JobQueue
from labinterp.server.worker import Worker


@pytest.mark.parametrize(
    ("status", "temporary"),
    [
        *[(s, True) for s in (408, 429, 500, 502, 503, 504, 409, 412)],
        *[(s, False) for s in (400, 401, 403, 404, 405, 410, 413, 422)],
    ],
)
def test_http_statuses_map_to_classes_that_say_if_they_are_temporary(status: int, temporary: bool) -> None:
    err = error_for("GET", "http://fhir.test/fhir/Patient/x", status, None)
    assert isinstance(err, FhirError) and err.status == status and is_temporary(err) is temporary


def test_input_and_mappings_errors_are_never_retried() -> None:
    for exc in (BundleError("input", "x"), ResourceError("Observation/a", "x"), MappingsError("f.toml", "k", "x")):
        assert not is_temporary(exc)
    assert is_temporary(OSError("disk")) and not is_temporary(ValueError("a bug")) and not LabinterpError.temporary


@pytest.mark.parametrize(("status", "tries"), [(405, 1), (413, 1), (503, 3)])
def test_the_worker_retries_only_what_the_tree_calls_temporary(tmp_path: Path, status: int, tries: int) -> None:
    calls: list[str] = []

    def process(pid: str) -> None:
        calls.append(pid)
        raise error_for("POST", "http://fhir.test/fhir", status, None)

    from labinterp.fhir.retry import RetryPolicy

    q = JobQueue(tmp_path / "q.db")
    q.enqueue("p1", "test")
    worker = Worker(q, process, attempts=3, backoff=RetryPolicy(base_delay=0.0, max_delay=0.0, jitter=0.0))
    worker.drain(timeout=10)
    assert len(calls) == tries and q.counts()["failed"] == 1


def test_errors_quote_neither_credentials_nor_server_free_text() -> None:
    body = {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "invariant",
                "diagnostics": "Zebulon Quixotic (MRN-99887766) HAPI-0450",
                "expression": ["Patient.name"],
            }
        ],
    }
    err = error_for("GET", "http://admin:s3cr3tPW@fhir.test/fhir/Patient?identifier=MRN-99887766&token=abc", 422, body)
    text = str(err)
    for secret in ("s3cr3tPW", "admin", "MRN-99887766", "abc", "Zebulon"):
        assert secret not in text
    assert text == "GET http://fhir.test/fhir/Patient?identifier=…&token=…: HTTP 422: invariant (HAPI-0450) at Patient.name"


def test_smart_and_link_errors_are_fatal_and_show_no_credentials() -> None:
    """A refused client assertion or a link away from the FHIR base is not worth retrying (issue 9)."""
    smart = SmartAuthError("POST", "https://client:pw@auth.test/token?assertion=eyJabc", 400, "invalid_client")
    link = FhirLinkError("GET", "http://u:pw@evil.test/fhir?_getpages=abc", None, "outside the FHIR base: not followed")
    assert isinstance(smart, FhirAuthError) and isinstance(link, FhirError) and not isinstance(link, FhirAuthError)
    assert not is_temporary(smart) and not is_temporary(link)
    assert str(smart) == "POST https://auth.test/token?assertion=…: HTTP 400: invalid_client"
    assert str(link) == "GET http://evil.test/fhir?_getpages=…: no response: outside the FHIR base: not followed"
