"""Plans the one transaction that writes a patient's results, against what labinterp wrote before.

For each composed resource, by its series identifier (patient + report kind):
- the same content identifier already on the server: nothing is written (a replay writes nothing);
- the series exists with other content: PUT over the existing resource, status `amended`, guarded by
  If-Match on its version, so a concurrent writer makes this one fail instead of both succeeding;
- no such series: a conditional create keyed on the content identifier (`mode="conditional"`, the portable
  default), or (`mode="put"`) a PUT to a deterministic id made from the series identifier: an upsert that needs no
  search on the server, for servers that accept client-assigned ids.
Provenance covers only what is written; the Device is a conditional create (a PUT to its deterministic id in put
mode), or, when the caller already knows its id on the server (`device_id`), only referenced.
`prepare` is called with what will be written before its entries are made (the narrative and renderings are
made there, so what is unchanged is never rendered). Pure but for `prepare`: no I/O."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from labinterp.compose import Context, Written, entry, provenance
from labinterp.compose.common import deterministic_id
from labinterp.errors import InputError
from labinterp.extract.fhirtime import parse_fhir_time
from labinterp.fhir.search import is_fhir_id
from labinterp.knowledge import Knowledge

AMENDABLE = {"DiagnosticReport", "RiskAssessment", "Observation"}
WriteMode = Literal["conditional", "put"]


@dataclass
class Plan:
    bundle: dict[str, Any]
    created: list[str] = field(default_factory=list)  # kinds
    amended: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def writes(self) -> bool:
        return bool(self.bundle.get("entry"))


def _identifier(resource: dict[str, Any], system: str) -> str | None:
    return next((i.get("value") for i in resource.get("identifier", []) or [] if i.get("system") == system), None)


def rewrite_references(node: Any, refs: dict[str, str]) -> Any:
    """A copy of `node` in which every Reference to a key of `refs` points at its value instead."""
    if isinstance(node, dict):
        if isinstance(node.get("reference"), str) and node["reference"] in refs:
            return {**node, "reference": refs[node["reference"]]}
        return {k: rewrite_references(v, refs) for k, v in node.items()}
    if isinstance(node, list):
        return [rewrite_references(v, refs) for v in node]
    return node


def put_entry(w: Written, rid: str) -> dict[str, Any]:
    """An upsert of `w` at `rid`: no search on the server, and a replay of the same content makes no new version."""
    rtype = w.resource["resourceType"]
    return {"fullUrl": w.full_url, "resource": {**w.resource, "id": rid}, "request": {"method": "PUT", "url": f"{rtype}/{rid}"}}


def series_id(w: Written, series_system: str) -> str | None:
    """The deterministic id of a report's series slot (`labinterp-<uuid>`), for PUT upserts."""
    series = _identifier(w.resource, series_system)
    return deterministic_id(series.rsplit(":", 1)[-1]) if series else None


def device_on_server(resources: list[dict[str, Any]], ident: dict[str, str]) -> str | None:
    """The id of the server's Device with labinterp's identifier; should there be several (a server written to by an
    older release, or someone who planted one), always the same one of them, so that nothing more is created: the
    one the server stamped first (`meta.lastUpdated`, which a client cannot set; labinterp never updates its Device),
    then the smallest id. A Device planted later is never preferred to labinterp's own, whatever id it was given."""
    found = sorted(
        (_stamp(r), r["id"])
        for r in resources
        if r.get("resourceType") == "Device"
        and is_fhir_id(r.get("id"))
        and any(
            isinstance(i, dict) and i.get("system") == ident["system"] and i.get("value") == ident["value"]
            for i in r.get("identifier") or []
        )
    )
    return found[0][1] if found else None


def _stamp(resource: dict[str, Any]) -> float:
    """When the server last wrote a resource (seconds since the epoch); infinity when it does not say."""
    meta = resource.get("meta")
    stamp = meta.get("lastUpdated") if isinstance(meta, dict) else None
    try:
        return parse_fhir_time(stamp, "meta.lastUpdated").start.timestamp()
    except (InputError, ValueError, OverflowError):
        return math.inf


def plan_writeback(
    composed: list[Written],
    existing: list[dict[str, Any]],
    ctx: Context,
    dev: Written,
    *,
    mode: WriteMode = "conditional",
    device_id: str | None = None,
    prepare: Callable[[list[Written]], None] | None = None,
) -> Plan:
    k: Knowledge = ctx.k
    series_sys, content_sys = k.output.systems["series_identifier"], k.output.systems["content_identifier"]
    by_series: dict[str, dict[str, Any]] = {}
    for r in sorted(existing, key=lambda r: (r.get("meta") or {}).get("lastUpdated", "")):
        series = _identifier(r, series_sys)
        if series:
            by_series[series] = r  # the latest of a series wins, should there ever be two
    plan = Plan({"resourceType": "Bundle", "type": "transaction"})  # entries only when something is written
    refs: dict[str, str] = {}
    to_write: list[tuple[Written, dict[str, Any] | None]] = []  # with the resource it amends, None for a new one
    for w in composed:
        series, content = _identifier(w.resource, series_sys), _identifier(w.resource, content_sys)
        old = by_series.get(series or "")
        if old is None:
            plan.created.append(w.kind)
            to_write.append((w, None))
            continue
        refs[w.full_url] = f"{w.resource['resourceType']}/{old['id']}"
        if content and _identifier(old, content_sys) == content:
            plan.unchanged.append(w.kind)
            continue
        plan.amended.append(w.kind)
        to_write.append((w, old))
    if not to_write:
        return plan
    if prepare is not None:  # before any entry shares or copies the resources
        prepare([w for w, _ in to_write])
    entries = [_new(w, mode, series_sys, refs) if old is None else _amend(w, old) for w, old in to_write]
    entries.append(entry(provenance(ctx, [w for w, _ in to_write], dev)))
    if device_id:  # the Device the server already holds: referenced, not written again
        refs[dev.full_url] = f"Device/{device_id}"
    elif mode == "put":
        refs[dev.full_url] = f"Device/{deterministic_id(dev.uuid)}"
        entries.insert(0, put_entry(dev, deterministic_id(dev.uuid)))
    else:
        entries.insert(0, entry(dev))
    plan.bundle["entry"] = [rewrite_references(e, refs) if refs else e for e in entries]
    return plan


def _new(w: Written, mode: WriteMode, series_sys: str, refs: dict[str, str]) -> dict[str, Any]:
    """A new series: a conditional create, or in put mode an upsert at the series' deterministic id."""
    rid = series_id(w, series_sys) if mode == "put" else None
    if not rid:
        return entry(w)
    refs[w.full_url] = f"{w.resource['resourceType']}/{rid}"
    return put_entry(w, rid)


def _amend(w: Written, old: dict[str, Any]) -> dict[str, Any]:
    """A PUT over the series' stored resource, status `amended`, guarded by If-Match on its version."""
    rtype = w.resource["resourceType"]
    resource = copy.deepcopy(w.resource)
    resource["id"] = old["id"]
    if rtype in AMENDABLE and resource.get("status") != "preliminary":
        resource["status"] = "amended"
    request: dict[str, Any] = {"method": "PUT", "url": f"{rtype}/{old['id']}"}
    version = (old.get("meta") or {}).get("versionId")
    if version:
        request["ifMatch"] = f'W/"{version}"'
    return {"fullUrl": w.full_url, "resource": resource, "request": request}
