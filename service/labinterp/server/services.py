"""What the HTTP layer and the worker share: knowledge, the FHIR connection, the queue. Joins them to
the pipeline; holds no clinical logic."""

from __future__ import annotations

import logging
import threading
import time
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests

from labinterp.errors import FhirError, LabinterpError
from labinterp.fhir.client import FhirClient
from labinterp.fhir.notifications import carried_resource, check_path, patient_of
from labinterp.fhir.retry import RetryPolicy
from labinterp.fhir.search import is_fhir_id
from labinterp.knowledge import Knowledge
from labinterp.pipeline import LiveResult, interpret_patient
from labinterp.server.queue import JobQueue

LOCK_STRIPES = 256  # serializes one patient's read-plan-write within a process; two patients rarely share one

log = logging.getLogger("labinterp.service")


@dataclass
class Services:
    knowledge: Knowledge
    fhir_base_url: str
    queue: JobQueue
    api_token: str | None = None
    fhir_token: str | None = None
    fhir_basic: tuple[str, str] | None = None
    strict: bool = False  # any resource that cannot be used fails the patient (LABINTERP_STRICT)
    equation: str | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    render: bool = True
    session: requests.Session = field(default_factory=requests.Session)
    _ready_cache: tuple[float, list[str]] = (0.0, [])
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # a fixed set of lock stripes (a patient's id picks one): bounded memory however many patients pass by
    _locks: tuple[threading.Lock, ...] = field(default_factory=lambda: tuple(threading.Lock() for _ in range(LOCK_STRIPES)))

    def client(self) -> FhirClient:
        return FhirClient(
            self.fhir_base_url, token=self.fhir_token, basic=self.fhir_basic, session=self.session, retry=self.retry
        )

    def interpret(
        self, patient_id: str, *, dry_run: bool = False, now: datetime | None = None, strict: bool | None = None
    ) -> LiveResult:
        """One patient at a time per process (API calls and queue workers alike): the read-plan-write of
        two concurrent calls would otherwise both plan a create. Across processes, conditional creates
        and If-Match on amendments keep the server consistent. `strict` overrides the service's setting for
        this call; the resources left out are in `LiveResult.problems`."""
        with self._patient_lock(patient_id):
            return interpret_patient(
                self.client(),
                patient_id,
                self.knowledge,
                now or datetime.now(UTC).replace(microsecond=0),
                dry_run=dry_run,
                strict=self.strict if strict is None else strict,
                equation=self.equation,
                render=self.render,
            )

    def _patient_lock(self, patient_id: str) -> threading.Lock:
        return self._locks[zlib.crc32(patient_id.encode()) % len(self._locks)]

    def process(self, patient_id: str) -> list[str]:
        """What the worker does for one queued patient; returns the warnings (one line per resource left out)
        for the queue to record with the finished job."""
        return [p.line for p in self.interpret(patient_id).problems]

    def group_members(self, group_id: str) -> tuple[list[str], list[tuple[str, str]]]:
        """The active Patient members of a Group, and the members that cannot be read, each (where, why): one odd
        member is named and the others are interpreted. A Group the server answers with something that is not a
        Group is the server's fault (FhirError: 502)."""
        group = self.client().read("Group", group_id)
        if not isinstance(group, dict) or group.get("resourceType") != "Group":
            raise FhirError(
                "GET", self.client().url("Group"), None, "the server answered the Group read with something that is not a Group"
            )
        member_list = group.get("member")
        if member_list is not None and not isinstance(member_list, list):
            return [], [(f"Group/{group_id} member", "expected a list of members")]
        members: list[str] = []
        bad: list[tuple[str, str]] = []
        for i, m in enumerate(member_list or []):
            where = f"Group/{group_id} member[{i}]"
            entity = m.get("entity") if isinstance(m, dict) else None
            ref = entity.get("reference") if isinstance(entity, dict) else None
            if not isinstance(m, dict):
                bad.append((where, "expected a member object"))
            elif not isinstance(entity, dict):
                bad.append((f"{where}.entity", 'expected a Reference object, e.g. {"reference": "Patient/id"}'))
            elif not isinstance(ref, str):
                bad.append((f"{where}.entity.reference", 'expected a reference text, e.g. "Patient/id"'))
            elif m.get("inactive") is True or not ref.startswith("Patient/"):
                continue  # an inactive member, or one that is not a Patient: not interpreted
            elif not is_fhir_id(ref.split("/", 1)[1]):
                bad.append((f"{where}.entity.reference", "is not Patient/ followed by a FHIR resource id"))
            else:
                members.append(ref.split("/", 1)[1])
        return members, bad

    def patient_of_notification(self, body: Any, rtype: str | None, rid: str | None) -> str | None:
        """The patient a rest-hook notification is about: from the resource it carries (parsed by
        labinterp.fhir.notifications), or by reading the resource the path names. None when it is about no
        patient; BundleError (422) naming the element when the notification is of the wrong shape."""
        resource = carried_resource(body)
        if resource is None and rtype and rid:
            check_path(rtype, rid)
            try:
                resource = self.client().read(rtype, rid)
            except FhirError:
                return None
        return patient_of(resource) if isinstance(resource, dict) else None

    def readiness_problems(self) -> list[str]:
        """Empty when ready; cached for 5 s so probes do not hammer the FHIR server."""
        with self._lock:
            stamp, problems = self._ready_cache
            if time.monotonic() - stamp < 5.0:
                return problems
            problems = []
            try:
                self.client().metadata()
            except LabinterpError as exc:
                problems.append(f"FHIR server not reachable: {exc}")
            if not self.knowledge.analytes:
                problems.append("mappings not loaded")
            self._ready_cache = (time.monotonic(), problems)
            return problems
