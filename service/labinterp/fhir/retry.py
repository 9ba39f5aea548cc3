"""Which failures are worth retrying, how long to wait, and messages built from the server's
OperationOutcome. Pure: no I/O."""

from __future__ import annotations

import email.utils
import random
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from labinterp.errors import FhirAuthError, FhirConflict, FhirError, FhirNotFound, FhirRequestError, FhirTemporaryError

TEMPORARY = {408, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5  # tries in all, the first included
    base_delay: float = 0.5  # seconds before the second try
    max_delay: float = 30.0  # cap of any one wait, Retry-After included
    jitter: float = 0.1  # +/- share of random spread

    def delay(self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed try number `attempt` (1-based): capped exponential backoff, or the
        server's Retry-After when it gave one (also capped)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        base = min(self.base_delay * 2 ** (attempt - 1), self.max_delay)
        spread = (rng or random).uniform(-self.jitter, self.jitter) if self.jitter else 0.0
        return max(0.0, min(base * (1 + spread), self.max_delay))


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP-date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def outcome_issues(body: Any) -> list[dict[str, str]]:
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return []
    out = []
    for issue in body.get("issue", []) or []:
        if isinstance(issue, dict):
            text = issue.get("diagnostics") or (issue.get("details") or {}).get("text") or ""
            out.append(
                {
                    "severity": str(issue.get("severity", "")),
                    "code": str(issue.get("code", "")),
                    "diagnostics": str(text),
                    "expression": ", ".join(issue.get("expression", []) or []),
                }
            )
    return out


def summarize_issues(issues: list[dict[str, str]], limit: int = 3) -> str:
    """The server's issues as codes and FHIRPath locations. Their free text is not passed on: a server's
    diagnostics may quote a patient's data (a name in a narrative, an identifier), and this message reaches
    logs, OperationOutcomes and the queue."""
    errors = [i for i in issues if i["severity"] in ("error", "fatal")] or issues
    parts = []
    for i in errors[:limit]:
        server_codes = sorted(set(re.findall(r"\bHAPI-\d{1,5}\b", i.get("diagnostics", ""))))  # the server's message ids
        parts.append(
            (i["code"] or "error")
            + (f" ({', '.join(server_codes)})" if server_codes else "")
            + (f" at {i['expression']}" if i.get("expression") else "")
        )
    more = f" (+{len(errors) - limit} more)" if len(errors) > limit else ""
    return "; ".join(parts) + more


def error_for(method: str, url: str, status: int, body: Any, reason: str = "") -> FhirError:
    """The typed error for an HTTP error status, its message from the OperationOutcome when there is one."""
    issues = outcome_issues(body)
    message = summarize_issues(issues) or reason or "error"
    if status in TEMPORARY:
        cls: type[FhirError] = FhirTemporaryError
    elif status in (401, 403):
        cls = FhirAuthError
    elif status in (404, 410):
        cls = FhirNotFound
    elif status in (409, 412):
        cls = FhirConflict
    else:
        cls = FhirRequestError
    return cls(method, url, status, message, issues)
