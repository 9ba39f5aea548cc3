"""A small in-memory FHIR server behind `responses`, for tests of population runs and batches: searches by `_id`,
`subject` (comma-separated), `focus`, `specimen.subject`, `identifier` (system| or system|value), `_include=*:medication`, `_lastUpdated=ge`, `_count`
with `next` pages, `_summary=count`; batch and transaction Bundles with conditional creates, PUTs with If-Match,
and urn:uuid references resolved. It counts requests and can be told to refuse transactions."""

from __future__ import annotations

import copy
import itertools
import json
import re
from typing import Any
from urllib.parse import parse_qsl

import responses

BASE = "http://fake.test/fhir"


class FakeFhir:
    def __init__(self, rsps: responses.RequestsMock, base: str = BASE, max_page: int = 1000) -> None:
        self.base, self.max_page = base, max_page
        self.store: dict[tuple[str, str], dict[str, Any]] = {}
        self.ids = itertools.count(1)
        self.clock = itertools.count(1)
        self.requests: list[tuple[str, str]] = []
        self.refuse: list[int] = []  # statuses to answer the next transactions with, one per transaction
        self.client_ids = True  # False: a PUT to an id that does not exist is refused (400), as many servers do
        self.transactions = 0
        pattern = re.compile(re.escape(base) + r".*")
        rsps.add_callback(responses.GET, pattern, callback=self._get)
        rsps.add_callback(responses.POST, pattern, callback=self._post)

    # --- data ------------------------------------------------------------------------------------

    def load(self, resources: list[dict[str, Any]]) -> None:
        for r in resources:
            r = copy.deepcopy(r)
            r.setdefault("id", str(next(self.ids)))
            self._stamp(r, 1)
            self.store[(r["resourceType"], r["id"])] = r

    def of_type(self, rtype: str) -> list[dict[str, Any]]:
        return [r for (t, _), r in self.store.items() if t == rtype]

    def _stamp(self, r: dict[str, Any], version: int) -> None:
        r["meta"] = {"versionId": str(version), "lastUpdated": f"2026-01-01T00:00:{next(self.clock) % 60:02d}Z"}

    # --- HTTP ------------------------------------------------------------------------------------

    def _get(self, request: Any) -> tuple[int, dict[str, str], str]:
        self.requests.append(("GET", request.url))
        rel = request.url[len(self.base) + 1 :]
        return 200, {}, json.dumps(self._read(rel))

    def _post(self, request: Any) -> tuple[int, dict[str, str], str]:
        self.requests.append(("POST", request.url))
        bundle = json.loads(request.body)
        if bundle["type"] == "batch":
            entries = [{"resource": self._read(e["request"]["url"]), "response": {"status": "200 OK"}} for e in bundle["entry"]]
            return 200, {}, json.dumps({"resourceType": "Bundle", "type": "batch-response", "entry": entries})
        only_device = all(e["resource"]["resourceType"] == "Device" for e in bundle["entry"])
        if self.refuse and not only_device:  # refusals are for patients' transactions, not a run's Device write
            status = self.refuse.pop(0)
            outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "processing"}]}
            return status, {}, json.dumps(outcome)
        try:
            response = self._transaction(bundle)
        except ClientIdRefused:
            diagnostics = "HAPI-0959: no resource exists with this id, and client-assigned ids are not enabled"
            outcome = {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "processing", "diagnostics": diagnostics}],
            }
            return 400, {}, json.dumps(outcome)
        except Conflict:
            outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "conflict"}]}
            return 412, {}, json.dumps(outcome)
        self.transactions += 1
        return 200, {}, json.dumps(response)

    def _read(self, rel: str) -> dict[str, Any]:
        path, _, qs = rel.partition("?")
        parts = path.split("/")
        if len(parts) == 2:
            return copy.deepcopy(self.store[(parts[0], parts[1])])
        params = parse_qsl(qs)
        if dict(params).get("_summary") == "count":
            return {"resourceType": "Bundle", "type": "searchset", "total": len(self.of_type(parts[0]))}
        return self._search(parts[0], params)

    def _search(self, rtype: str, params: list[tuple[str, str]]) -> dict[str, Any]:
        found = sorted(self.of_type(rtype), key=lambda r: r["id"])
        count, offset, include = self.max_page, 0, None
        for name, value in params:
            if name == "_id":
                found = [r for r in found if r["id"] in value.split(",")]
            elif name == "subject":
                found = [r for r in found if (r.get("subject") or {}).get("reference") in value.split(",")]
            elif name == "focus":
                found = [r for r in found if any(f.get("reference") in value.split(",") for f in r.get("focus") or [])]
            elif name == "specimen.subject":
                found = [r for r in found if self._specimen_subject(r) in value.split(",")]
            elif name == "identifier":
                system, _, val = value.partition("|")
                found = [
                    r
                    for r in found
                    if any(i.get("system") == system and (not val or i.get("value") == val) for i in r.get("identifier", []))
                ]
            elif name == "_lastUpdated":
                found = [r for r in found if r["meta"]["lastUpdated"] >= value[2:]]
            elif name == "_count":
                count = min(int(value), self.max_page)
            elif name == "_offset":
                offset = int(value)
            elif name == "_include":
                include = value
        page = found[offset : offset + count]
        entries = [{"resource": copy.deepcopy(r), "search": {"mode": "match"}} for r in page]
        if include:
            refs = {(r.get("medicationReference") or {}).get("reference") for r in page} - {None}
            entries += [{"resource": copy.deepcopy(self.store[tuple(ref.split("/"))])} for ref in sorted(refs)]  # type: ignore[index]
        bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "entry": entries}
        if offset + count < len(found):
            rest = [(n, v) for n, v in params if n != "_offset"] + [("_offset", str(offset + count))]
            query = "&".join(f"{n}={v}" for n, v in rest)
            bundle["link"] = [{"relation": "next", "url": f"{self.base}/{rtype}?{query}"}]
        return bundle

    def _specimen_subject(self, r: dict[str, Any]) -> str | None:
        ref = (r.get("specimen") or {}).get("reference")
        specimen = self.store.get(tuple(ref.split("/", 1))) if isinstance(ref, str) and "/" in ref else None  # type: ignore[arg-type]
        return (specimen.get("subject") or {}).get("reference") if specimen else None

    def _transaction(self, bundle: dict[str, Any]) -> dict[str, Any]:
        ids: dict[str, str] = {}
        plans = []
        for e in bundle["entry"]:
            req, r = e["request"], e["resource"]
            if req["method"] == "POST":
                system, _, value = req["ifNoneExist"].split("=", 1)[1].partition("|")
                match = [
                    x
                    for x in self.of_type(r["resourceType"])
                    if any(i.get("system") == system and i.get("value") == value for i in x.get("identifier", []))
                ]
                if len(match) > 1:  # HAPI: "Failed to CREATE resource with match URL ... multiple resources match"
                    raise Conflict()
                rid = match[0]["id"] if match else str(next(self.ids))
                plans.append(("exists" if match else "create", r["resourceType"], rid, e))
            else:
                rtype, rid = req["url"].split("/")
                old = self.store.get((rtype, rid))
                if "ifMatch" in req and (old is None or f'W/"{old["meta"]["versionId"]}"' != req["ifMatch"]):
                    raise_conflict()
                if old is None and not self.client_ids:
                    raise ClientIdRefused()
                plans.append(("update", rtype, rid, e))
            ids[e["fullUrl"]] = f"{plans[-1][1]}/{plans[-1][2]}"
        out = []
        for action, rtype, rid, e in plans:
            if action == "exists":
                out.append({"response": {"status": "200 OK", "location": f"{rtype}/{rid}/_history/1"}})
                continue
            r = resolve(copy.deepcopy(e["resource"]), ids)
            r["id"] = rid
            old = self.store.get((rtype, rid))
            version = int(old["meta"]["versionId"]) + 1 if old else 1
            self._stamp(r, version)
            self.store[(rtype, rid)] = r
            out.append({"response": {"status": "201 Created", "location": f"{rtype}/{rid}/_history/{version}"}})
        return {"resourceType": "Bundle", "type": "transaction-response", "entry": out}


class Conflict(Exception):
    pass


class ClientIdRefused(Exception):
    pass


def raise_conflict() -> None:
    raise Conflict


def resolve(node: Any, ids: dict[str, str]) -> Any:
    if isinstance(node, dict):
        if isinstance(node.get("reference"), str) and node["reference"] in ids:
            node["reference"] = ids[node["reference"]]
        for v in node.values():
            resolve(v, ids)
    elif isinstance(node, list):
        for v in node:
            resolve(v, ids)
    return node
