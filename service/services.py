"""What the HTTP layer and the worker share: knowledge, the FHIR connection, the queue. Joins them to
the pipeline; holds no clinical logic."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests

from service.errors import FhirError, LabinterpError
from service.fhir.client import FhirClient
from service.fhir.retry import RetryPolicy
from service.knowledge import Knowledge
from service.pipeline import LiveResult, interpret_patient
from service.queue import JobQueue

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
    _locks: dict[str, threading.Lock] = field(default_factory=dict)

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
        with self._lock:
            return self._locks.setdefault(patient_id, threading.Lock())

    def process(self, patient_id: str) -> list[str]:
        """What the worker does for one queued patient; returns the warnings (one line per resource left out)
        for the queue to record with the finished job."""
        return [p.line for p in self.interpret(patient_id).problems]

    def group_members(self, group_id: str) -> list[str]:
        group = self.client().read("Group", group_id)
        members = []
        for m in group.get("member", []) or []:
            ref = ((m or {}).get("entity") or {}).get("reference", "")
            if ref.startswith("Patient/") and m.get("inactive") is not True:
                members.append(ref.split("/", 1)[1])
        return members

    def patient_of_notification(self, body: Any, rtype: str | None, rid: str | None) -> str | None:
        """The patient a rest-hook notification is about: from the resource it carries, or by reading it."""
        resource = body
        if isinstance(body, dict) and body.get("resourceType") == "Bundle":  # a notification Bundle: take the focus
            resource = next(
                (
                    e.get("resource")
                    for e in body.get("entry", []) or []
                    if (e.get("resource") or {}).get("resourceType") not in (None, "Parameters", "SubscriptionStatus")
                ),
                None,
            )
        if not isinstance(resource, dict) and rtype and rid:
            try:
                resource = self.client().read(rtype, rid)
            except FhirError:
                return None
        if not isinstance(resource, dict):
            return None
        if resource.get("resourceType") == "Patient":
            return resource.get("id")
        ref = (resource.get("subject") or {}).get("reference", "")
        return ref.split("/", 1)[1] if ref.startswith("Patient/") else None

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
