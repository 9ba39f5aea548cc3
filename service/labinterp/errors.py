"""The exception tree. Every error names its subject: file and key, resource and element,
URL and status. Each class says whether it is `temporary` (worth trying again later): the FHIR client's
retries, the queue worker's retries and nothing else read that flag, so they cannot disagree.

    LabinterpError                                                                     temporary
    ├── MappingsError          a mappings/ file is missing, malformed or inconsistent    no
    ├── InputError             input that is not usable FHIR (where, what)               no
    │   ├── BundleError        not JSON, not a Bundle, a malformed entry
    │   └── ResourceError      a resource, unit, genotype string, date or reference that is broken: by
    │                          default caught per resource (extract) and turned into a Problem, listed
    │                          under "Not used" and warned about; raised as the error in strict mode
    └── FhirError              a FHIR server answered with an error or not at all        no
        ├── FhirTemporaryError 408, 429, 5xx, timeouts and connection errors              yes
        ├── FhirAuthError      401, 403                                                   no
        │   └── SmartAuthError the SMART token endpoint refused the client (400           no
        │                      invalid_client, 401 …), or discovery or the token response
        │                      cannot be used (its 408/429/5xx are FhirTemporaryErrors)
        ├── FhirLinkError      a link the server gave (a Bundle's `next`) leads away      no
        │                      from the configured FHIR base (another scheme, host, port
        │                      or path): not followed, no credentials sent there
        ├── FhirNotFound       404, 410                                                   no
        ├── FhirConflict       409, 412 (a version conflict or a conditional that         yes: read and
        │                      matched several)                                           plan again
        └── FhirRequestError   any other 4xx (400, 405, 413, 422 …): the request is wrong no

"Not enough data" is never an exception: rules return an indeterminate finding that says why.
"""

from __future__ import annotations


class LabinterpError(Exception):
    """Base class of every error labinterp raises on purpose."""

    temporary: bool = False  # worth trying again later (a retry by the client or the queue worker)


class MappingsError(LabinterpError):
    def __init__(self, file: str, key: str, problem: str) -> None:
        self.file, self.key, self.problem = file, key, problem
        where = f"{file}: {key}" if key else file
        super().__init__(f"{where}: {problem}")


class InputError(LabinterpError):
    """Input that cannot be used. `where` names the resource and element, `what` the problem."""

    def __init__(self, where: str, what: str) -> None:
        self.where, self.what = where, what
        super().__init__(f"{where}: {what}" if where else what)


class BundleError(InputError):
    pass


class ResourceError(InputError):
    pass


class FhirError(LabinterpError):
    """A FHIR server's error. `issues` are the OperationOutcome's (severity, code, diagnostics)."""

    def __init__(
        self, method: str, url: str, status: int | None, message: str, issues: list[dict[str, str]] | None = None
    ) -> None:
        self.method, self.url, self.status, self.issues = method, shown_url(url), status, issues or []
        self.detail = message  # what the server (or the client) said, without the method, URL and status
        shown = f"HTTP {status}" if status is not None else "no response"
        super().__init__(f"{method} {self.url}: {shown}: {message}")


class FhirTemporaryError(FhirError):
    temporary = True


class FhirAuthError(FhirError):
    pass


class SmartAuthError(FhirAuthError):
    """SMART Backend Services: the token endpoint refused the client, or its discovery or answer cannot be used. The
    message names the endpoint and the OAuth error code, never the assertion, the key or a token."""


class FhirLinkError(FhirError):
    """A link the server gave (a Bundle's `next`) outside the configured FHIR base: not followed."""


class FhirNotFound(FhirError):
    pass


class FhirConflict(FhirError):
    temporary = True  # someone wrote meanwhile: reading and planning again resolves it


class FhirRequestError(FhirError):
    pass


class FhirWritesRefused(FhirError):
    """A population run's transaction whose every patient the server refused, each on its own: the cause is the
    server's (its configuration, e.g. no client-assigned ids), not one patient's. The run stops (resumable) instead
    of naming every patient of the population as failed, two requests each. `patients`: that transaction's."""

    def __init__(
        self,
        method: str,
        url: str,
        status: int | None,
        message: str,
        issues: list[dict[str, str]] | None = None,
        patients: list[str] | None = None,
    ) -> None:
        super().__init__(method, url, status, message, issues)
        self.patients = patients or []


def is_temporary(exc: BaseException) -> bool:
    """Worth retrying: a temporary labinterp error, or an unexpected OS-level failure (disk, socket)."""
    if isinstance(exc, LabinterpError):
        return exc.temporary
    return isinstance(exc, OSError)


def shown_url(url: str) -> str:
    """A URL as an error may show it: no user or password, no query values (a search may carry an identifier,
    a URL a token), only the parameter names."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return "(a URL that cannot be read)"
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    names = sorted({p.split("=", 1)[0] for p in parts.query.split("&") if p})
    query = ("?" + "&".join(f"{n}=…" for n in names)) if names else ""
    return f"{parts.scheme}://{host}{parts.path}{query}" if parts.scheme else f"{parts.path}{query}"
