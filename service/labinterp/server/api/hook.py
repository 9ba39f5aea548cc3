"""What guards the rest-hook endpoint (/hook, /hook/{type}/{id}): its own bearer token, a body size limit and a
rate limit per caller. Pure of Flask apart from the request it is given.

- **Token.** LABINTERP_HOOK_TOKEN opens the hook and nothing else; the API token does not open it (the
  Subscription that carries the hook token can be read by anyone who reads Subscriptions on the FHIR server, so
  the two are kept apart). With an API token but no hook token the hook is closed (401); with neither (a local
  sandbox) it is open, as the API is.
- **Size.** A body over LABINTERP_HOOK_MAX_BYTES is refused (413): by its Content-Length before anything is read,
  and by reading at most one byte more than the limit when no length is given.
- **Rate.** LABINTERP_HOOK_PER_MINUTE notifications per minute and caller (the remote address), in bursts of up
  to a minute's worth: a token bucket in this process. Each process (gunicorn worker, replica) counts on its own,
  so the limit a caller meets is this one times the number of processes; behind a proxy every caller is the
  proxy's address unless the proxy is made to pass the client's (ProxyFix)."""

from __future__ import annotations

import hmac
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge, TooManyRequests, Unauthorized

MAX_CALLERS = 10_000  # buckets kept; the least recently seen caller's is dropped first (it starts full again)


class RateLimiter:
    """A token bucket per caller: `per_minute` tokens, refilled continuously, one taken per request."""

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic, max_callers: int = MAX_CALLERS) -> None:
        self.capacity, self.rate = float(per_minute), per_minute / 60.0
        self.clock, self.max_callers = clock, max_callers
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # caller -> (tokens, when)
        self._lock = threading.Lock()

    def wait(self, caller: str) -> float:
        """0 when `caller` may go on (a token is taken); otherwise the seconds until it may."""
        now = self.clock()
        with self._lock:
            tokens, then = self._buckets.pop(caller, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - then) * self.rate)
            wait = 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate
            self._buckets[caller] = (tokens - 1.0 if wait == 0.0 else tokens, now)
            while len(self._buckets) > self.max_callers:
                self._buckets.popitem(last=False)
        return wait

    def check(self, caller: str) -> None:
        """TooManyRequests (429, with Retry-After) when `caller` is over its rate."""
        wait = self.wait(caller)
        if wait > 0:
            raise TooManyRequests("too many notifications from this caller: try again later", retry_after=max(1, math.ceil(wait)))


def check_token(request: Request, hook_token: str | None, api_token: str | None) -> None:
    """Unauthorized (401) unless the request may use the hook (see the module's docstring)."""
    if hook_token is None:
        if api_token is None:
            return  # a local sandbox: no token anywhere
        raise Unauthorized("the hook is closed: the service has an API token but no LABINTERP_HOOK_TOKEN")
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {hook_token}".encode()):
        raise Unauthorized("the hook's bearer token is required (Authorization: Bearer ...)")


def bounded_body(request: Request, max_bytes: int) -> bytes:
    """The request body, never more than `max_bytes` read; RequestEntityTooLarge (413) when it is longer."""
    too_large = RequestEntityTooLarge(f"a notification is at most {max_bytes} bytes")
    length = request.content_length
    if length is not None and length > max_bytes:
        raise too_large
    data = request.stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise too_large
    return data
