"""Pure: findings → DiagnosticReport, RiskAssessment, Provenance, derived eGFR Observation,
assembled into one FHIR transaction Bundle with conditional creates."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from labinterp.compose.common import Context, Written
from labinterp.compose.egfr import egfr_observation
from labinterp.compose.genotype import genotype_report
from labinterp.compose.linezolid import linezolid_report
from labinterp.compose.magnesium import magnesium_report
from labinterp.compose.provenance import device, provenance
from labinterp.compose.renal import renal_report
from labinterp.compose.risk import arrhythmia_risk, exposure_risk
from labinterp.compose.unusable import unusable_report
from labinterp.extract.facts import Problem
from labinterp.knowledge import Knowledge
from labinterp.rules import Findings

__all__ = ["Context", "Written", "compose_patient", "device", "entry", "provenance", "transaction"]


def compose_patient(f: Findings, k: Knowledge, now: datetime, dev: Written, with_provenance: bool = True) -> list[Written]:
    """Everything to write for one patient; empty when nothing was interpretable. Without provenance the
    caller adds it for what it actually writes (see labinterp.writeback)."""
    ctx = Context(k, now, f.record.patient.source)
    out: list[Written] = []
    risk = exposure_risk(ctx, f) if f.exposure is not None else None
    if f.linezolid is not None:
        out.append(linezolid_report(ctx, f, f.linezolid, risk))
    if f.pgx is not None:
        out.append(genotype_report(ctx, f, f.pgx, risk))
    if risk is not None:
        out.append(risk)
    if f.renal is not None and f.renal.computed:
        egfr = egfr_observation(ctx, f.renal)
        out += [egfr, renal_report(ctx, f, f.renal, egfr)]
    if f.magnesium is not None:
        out.append(magnesium_report(ctx, f, f.magnesium))
        if f.magnesium.hypo and f.magnesium.arrhythmia_risk:
            out.append(arrhythmia_risk(ctx, f.magnesium))
    for kind, finding in (("linezolid", f.linezolid), ("magnesium", f.magnesium)):
        unusable = [p for p in f.record.problems if p.about == kind and p.source is not None]
        unusable += [  # a result sent without a value (dataAbsentReason) is answered too, not dropped silently
            Problem(i.source.reference, i.why, kind, i.source)
            for i in f.record.ignored
            if i.about == kind and i.why.startswith("no value")
        ]
        if finding is None and unusable:  # received, recognised, not usable: answered with a report that says so
            out.append(unusable_report(ctx, f, kind, unusable))
    if out and with_provenance:
        out.append(provenance(ctx, out, dev))
    return out


def entry(w: Written) -> dict[str, Any]:
    """A conditional create on the first identifier; a PUT to the deterministic id for resources without one."""
    rtype = w.resource["resourceType"]
    if "identifier" not in w.resource:
        return {"fullUrl": w.full_url, "resource": w.resource, "request": {"method": "PUT", "url": f"{rtype}/{w.resource['id']}"}}
    ident = w.resource["identifier"][0]
    return {
        "fullUrl": w.full_url,
        "resource": w.resource,
        "request": {"method": "POST", "url": rtype, "ifNoneExist": f"identifier={ident['system']}|{ident['value']}"},
    }


def transaction(written: list[Written]) -> dict[str, Any]:
    """One transaction Bundle: conditional creates keyed on content identifiers, so a replay writes nothing new."""
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "transaction"}
    if written:  # FHIR JSON has no empty arrays: nothing to write is a Bundle without entries
        bundle["entry"] = [entry(w) for w in written]
    return bundle
