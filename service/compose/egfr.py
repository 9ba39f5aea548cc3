"""The derived eGFR Observation, written when labinterp computed an eGFR (SPEC sections 3 and 6)."""

from __future__ import annotations

from typing import Any

from service.compose import narrative as nv
from service.compose.common import Context, Written, coding, concept, effective, ref, status_of
from service.rules.renal import RenalFinding


def egfr_observation(ctx: Context, renal: RenalFinding) -> Written:
    assert renal.creatinine is not None and renal.egfr is not None and renal.stage is not None
    r, s = ctx.k.renal, ctx.systems
    eq = r.ckd_epi_2021 if renal.equation == "ckd_epi_2021" else r.mdrd_idms
    unit = ctx.k.analytes["egfr"].canonical_unit
    body: dict[str, Any] = {
        "resourceType": "Observation",
        "status": status_of([renal.creatinine]),
        "category": [concept(s["observation_category"], "laboratory", "Laboratory")],
        "code": {"coding": [coding(s["loinc"], eq.loinc, eq.display)], "text": f"eGFR ({renal.equation})"},
        "subject": ref(ctx.patient),
        **effective(renal.creatinine.time),
        "valueQuantity": {"value": round(renal.egfr, 1), "unit": "mL/min/1.73m2", "system": s["ucum"], "code": unit},
        "derivedFrom": [ref(renal.creatinine.source)],
        "note": [
            {
                "text": f"Computed by labinterp from serum creatinine {renal.creatinine.original}, age {renal.age} years and "
                f"sex; KDIGO {renal.stage.name}. {r.meta.source}"
            }
        ],
    }
    if renal.equation == "mdrd_idms":
        body["method"] = concept(s["snomed"], r.mdrd_idms.method_snomed, r.mdrd_idms.method_display)
    body["text"] = nv.div(
        "Estimated GFR", [f"eGFR {renal.egfr:.1f} mL/min/1.73 m2, KDIGO {renal.stage.name} ({renal.stage.text})."]
    )
    return ctx.new("egfr", body, [renal.creatinine.source, ctx.patient])
