"""Plans the one transaction that writes a patient's results, against what labinterp wrote before.

For each composed resource, by its series identifier (patient + report kind):
- the same content identifier already on the server: nothing is written (a replay writes nothing);
- the series exists with other content: PUT over the existing resource, status `amended`, guarded by
  If-Match on its version, so a concurrent writer makes this one fail instead of both succeeding;
- no such series: a conditional create keyed on the content identifier.
Provenance covers only what is written; the Device is a conditional create. Pure: no I/O."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from labinterp.compose import Context, Written, entry, provenance
from labinterp.knowledge import Knowledge

AMENDABLE = {"DiagnosticReport", "RiskAssessment", "Observation"}


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


def plan_writeback(composed: list[Written], existing: list[dict[str, Any]], ctx: Context, dev: Written) -> Plan:
    k: Knowledge = ctx.k
    series_sys, content_sys = k.output.systems["series_identifier"], k.output.systems["content_identifier"]
    by_series: dict[str, dict[str, Any]] = {}
    for r in sorted(existing, key=lambda r: (r.get("meta") or {}).get("lastUpdated", "")):
        series = _identifier(r, series_sys)
        if series:
            by_series[series] = r  # the latest of a series wins, should there ever be two
    plan = Plan({"resourceType": "Bundle", "type": "transaction"})  # entries only when something is written
    refs: dict[str, str] = {}
    to_write: list[tuple[Written, dict[str, Any]]] = []
    for w in composed:
        series, content = _identifier(w.resource, series_sys), _identifier(w.resource, content_sys)
        old = by_series.get(series or "")
        rtype = w.resource["resourceType"]
        if old is None:
            plan.created.append(w.kind)
            to_write.append((w, entry(w)))
            continue
        refs[w.full_url] = f"{rtype}/{old['id']}"
        if content and _identifier(old, content_sys) == content:
            plan.unchanged.append(w.kind)
            continue
        resource = copy.deepcopy(w.resource)
        resource["id"] = old["id"]
        if rtype in AMENDABLE and resource.get("status") != "preliminary":
            resource["status"] = "amended"
        request: dict[str, Any] = {"method": "PUT", "url": f"{rtype}/{old['id']}"}
        version = (old.get("meta") or {}).get("versionId")
        if version:
            request["ifMatch"] = f'W/"{version}"'
        plan.amended.append(w.kind)
        to_write.append((w, {"fullUrl": w.full_url, "resource": resource, "request": request}))
    if not to_write:
        return plan
    prov = provenance(ctx, [w for w, _ in to_write], dev)
    entries = [entry(dev)] + [e for _, e in to_write] + [entry(prov)]
    plan.bundle["entry"] = [rewrite_references(e, refs) if refs else e for e in entries]
    return plan
