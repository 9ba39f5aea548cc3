"""The exception tree. Every error names its subject: file and key, resource and element,
URL and status.

    LabinterpError
    ├── MappingsError          a mappings/ file is missing, malformed or inconsistent (file, key)
    ├── InputError             input that is not usable FHIR (where, what)
    │   ├── BundleError        not JSON, not a Bundle, a malformed entry
    │   └── ResourceError      a resource, unit, genotype string, date or reference that is broken: by
    │                          default caught per resource (extract) and turned into a Problem, listed
    │                          under "Not used" and warned about; raised as the error in strict mode
    └── FhirError              a FHIR server answered with an error or not at all (method, URL, status, outcome)
        ├── FhirTemporaryError 408, 429, 5xx, timeouts and connection errors: worth retrying
        ├── FhirAuthError      401, 403
        ├── FhirNotFound       404, 410
        ├── FhirConflict       409, 412 (a version conflict or a conditional that matched several)
        └── FhirRequestError   any other 4xx: the request itself is wrong (e.g. validation failed)

"Not enough data" is never an exception: rules return an indeterminate finding that says why.
"""

from __future__ import annotations


class LabinterpError(Exception):
    """Base class of every error labinterp raises on purpose."""


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
        self.method, self.url, self.status, self.issues = method, url, status, issues or []
        shown = f"HTTP {status}" if status is not None else "no response"
        super().__init__(f"{method} {url}: {shown}: {message}")


class FhirTemporaryError(FhirError):
    pass


class FhirAuthError(FhirError):
    pass


class FhirNotFound(FhirError):
    pass


class FhirConflict(FhirError):
    pass


class FhirRequestError(FhirError):
    pass
