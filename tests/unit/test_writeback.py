"""The writeback plan: a replay writes nothing; changed inputs amend the existing report in place (PUT,
If-Match, status amended); new kinds are conditional creates; references to kept resources point at
their server ids; Provenance covers only what is written."""

from __future__ import annotations

import copy
from typing import Any

from labinterp.compose import Context, device
from labinterp.knowledge import Knowledge
from labinterp.pipeline import interpret_bundle
from labinterp.writeback import plan_writeback
from tests.conftest import NOW
from tests.unit.test_pipeline import example


def composed(k: Knowledge, bundle: dict[str, Any]) -> tuple[list[Any], Context]:
    run = interpret_bundle(bundle, k, NOW, with_provenance=False)
    result = run.patients[0]
    return result.written, Context(k, NOW, result.findings.record.patient.source)


def stored(written: list[Any]) -> list[dict[str, Any]]:
    """What the server holds after the first write: the same resources with server ids and versions."""
    out = []
    for i, w in enumerate(written):
        r = copy.deepcopy(w.resource)
        r["id"] = str(100 + i)
        r["meta"] = {"versionId": "1", "lastUpdated": "2026-01-20T12:00:00Z"}
        out.append(r)
    return out


def test_first_write_creates_everything(site_k: Knowledge) -> None:
    written, ctx = composed(site_k, example().bundle())
    plan = plan_writeback(written, [], ctx, device(site_k))
    methods = [e["request"]["method"] for e in plan.bundle["entry"]]
    assert plan.created == [w.kind for w in written] and not plan.amended and not plan.unchanged
    assert methods[0] == "POST" and plan.bundle["entry"][0]["resource"]["resourceType"] == "Device"
    assert methods[-1] == "PUT" and plan.bundle["entry"][-1]["resource"]["resourceType"] == "Provenance"


def test_replay_writes_nothing(site_k: Knowledge) -> None:
    written, ctx = composed(site_k, example().bundle())
    plan = plan_writeback(written, stored(written), ctx, device(site_k))
    assert not plan.writes and plan.unchanged == [w.kind for w in written]


def test_changed_input_amends_in_place(site_k: Knowledge) -> None:
    p = example()
    first, ctx = composed(site_k, p.bundle())
    on_server = stored(first)
    trough = next(r for r in p.resources if r["id"].startswith("x1-lzd"))
    trough["valueQuantity"]["value"] = 1.6
    trough["meta"]["versionId"] = "2"
    second, ctx = composed(site_k, p.bundle())
    plan = plan_writeback(second, on_server, ctx, device(site_k))
    assert sorted(plan.amended) == ["exposure-risk", "linezolid"] and not plan.created
    entries = {e["resource"]["resourceType"] + ":" + e["request"]["method"]: e for e in plan.bundle["entry"]}
    report = entries["DiagnosticReport:PUT"]
    old = next(
        r for r in on_server if r["resourceType"] == "DiagnosticReport" and r["identifier"][1]["value"].startswith("linezolid")
    )
    assert report["request"] == {"method": "PUT", "url": f"DiagnosticReport/{old['id']}", "ifMatch": 'W/"1"'}
    assert report["resource"]["status"] == "amended" and report["resource"]["id"] == old["id"]
    prov = entries["Provenance:PUT"]["resource"]
    targets = {t["reference"] for t in prov["target"]}
    assert len(targets) == 2 and all(t.split("/")[0] in ("DiagnosticReport", "RiskAssessment") for t in targets)


def test_references_to_kept_resources_use_server_ids(site_k: Knowledge) -> None:
    p = example()
    first, ctx = composed(site_k, p.bundle())
    on_server = [
        r for r in stored(first) if r["resourceType"] != "DiagnosticReport" or "Pharmacogenetic" not in r["code"]["text"]
    ]
    plan = plan_writeback(first, on_server, ctx, device(site_k))
    assert plan.created == ["genotype"]
    report = next(e["resource"] for e in plan.bundle["entry"] if e["resource"]["resourceType"] == "DiagnosticReport")
    risk_id = next(r["id"] for r in on_server if r["resourceType"] == "RiskAssessment")
    assert report["extension"][0]["valueReference"]["reference"] == f"RiskAssessment/{risk_id}"
