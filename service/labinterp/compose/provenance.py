"""Provenance for every write and the Device that stands for labinterp (SPEC section 6)."""

from __future__ import annotations

from typing import Any

from labinterp import __version__
from labinterp.compose.common import Context, Written, concept, instant
from labinterp.compose.ids import content_uuid
from labinterp.extract.facts import SourceRef
from labinterp.knowledge import Knowledge


def device(k: Knowledge) -> Written:
    """The service as a Device, identified by its software and rule-set versions."""
    uid = content_uuid("device", "labinterp", [__version__], k.ruleset_version)
    value = f"labinterp-{__version__}-ruleset-{k.ruleset_version}"
    body: dict[str, Any] = {
        "resourceType": "Device",
        "identifier": [{"system": k.output.systems["device_identifier"], "value": value}],
        "status": "active",
        "deviceName": [{"name": "labinterp", "type": "manufacturer-name"}],
        "type": {"text": "Clinical decision support software (laboratory result interpretation)"},
        "version": [
            {"type": {"text": "software"}, "value": __version__},
            {"type": {"text": "rule set"}, "value": k.ruleset_version},
        ],
        "text": {
            "status": "generated",
            "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><p>labinterp {__version__}, rule set {k.ruleset_version}</p></div>',
        },
    }
    return Written("device", body, uid)


def provenance(ctx: Context, targets: list[Written], dev: Written) -> Written:
    p = ctx.k.output.provenance
    s = ctx.systems
    sources: list[SourceRef] = list(dict.fromkeys(src for w in targets for src in w.inputs))
    body: dict[str, Any] = {
        "resourceType": "Provenance",
        "target": [{"reference": w.full_url} for w in targets],
        "recorded": instant(ctx.now),
        "activity": concept(s["provenance_activity"], p.activity, p.activity_display),
        "agent": [
            {
                "type": concept(s["provenance_agent_type"], p.agent_type, p.agent_type_display),
                "who": {"reference": dev.full_url, "display": f"labinterp {__version__} (rule set {ctx.k.ruleset_version})"},
            }
        ],
        "entity": [
            {"role": p.entity_role, "what": {"reference": src.versioned, "display": f"version {src.version}"}} for src in sources
        ],
    }
    if ctx.patient.resource_type == "Patient":  # treatment is the purpose of a patient's reports, not of a batch's QC
        body = {**body, "reason": [concept(s["purpose_of_use"], p.reason, p.reason_display)]}
    inputs = [src for w in targets for src in w.inputs] + [SourceRef("Written", w.uuid, w.uuid, w.full_url) for w in targets]
    return ctx.new("provenance", body, inputs)
