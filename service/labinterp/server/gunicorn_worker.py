"""gunicorn's gthread worker, answering what gunicorn refuses before the application sees it (a request line past
its limit: 414; headers past theirs: 431; a request it cannot parse: 400) as every other answer of this service
is: an OperationOutcome with the security headers (labinterp.server.security), never gunicorn's HTML page. Its log
line names the status and the error's class only: gunicorn's own quotes the request line, which carries patient
ids and query values."""

from __future__ import annotations

import json
from typing import Any

from gunicorn import util
from gunicorn.http import errors
from gunicorn.workers.gthread import ThreadWorker

from labinterp.server.security import HEADERS

STATUS: tuple[tuple[type[Exception] | tuple[type[Exception], ...], int, str, str], ...] = (
    (errors.LimitRequestLine, 414, "URI Too Long", "the request line is too long: send the parameters in a body"),
    (errors.LimitRequestHeaders, 431, "Request Header Fields Too Large", "too many or too large request headers"),
    (errors.ForbiddenProxyRequest, 403, "Forbidden", "request forbidden"),
    (errors.UnsupportedTransferCoding, 501, "Not Implemented", "unsupported transfer coding"),
    (errors.ExpectationFailed, 417, "Expectation Failed", "unsupported Expect header"),
    (errors.ConfigurationProblem, 500, "Internal Server Error", "a configuration problem of the server"),
    (errors.ParseException, 400, "Bad Request", "the request is not valid HTTP"),
)


def refusal(exc: BaseException) -> tuple[int, str, str]:
    """(status, reason, what to tell the client) for an exception gunicorn met before the application."""
    for kind, status, reason, text in STATUS:
        if isinstance(exc, kind):
            return status, reason, text
    return 500, "Internal Server Error", "internal error: see the service's log"


def response_bytes(status: int, reason: str, text: str) -> bytes:
    code = {400: "invalid", 403: "forbidden", 414: "too-long", 431: "too-long", 501: "not-supported"}.get(status, "exception")
    body = json.dumps(
        {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code, "diagnostics": text}]}
    ).encode()
    head = [
        f"HTTP/1.1 {status} {reason}",
        "Connection: close",
        "Content-Type: application/fhir+json",
        f"Content-Length: {len(body)}",
    ]
    head += [f"{name}: {value}" for name, value in HEADERS.items()] + ["Cache-Control: no-store"]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


class Worker(ThreadWorker):
    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        status, reason, text = refusal(exc)
        if status >= 500:
            self.log.error("request failed before the application: %s (%s)", status, type(exc).__name__)
        else:
            self.log.warning("request refused before the application: %s (%s)", status, type(exc).__name__)
        try:
            util.write_nonblock(client, response_bytes(status, reason, text))
        except Exception:
            self.log.debug("the refusal could not be sent")
