"""The derived eGFR Observation, written when labinterp computed an eGFR (SPEC sections 3 and 6).

With unknown sex no single-sex eGFR is written as the patient's: the Observation carries the two
estimates as a valueRange (low = the lower, high = the higher) and says so in a note."""

from __future__ import annotations

from typing import Any

from labinterp.compose import narrative as nv
from labinterp.compose.common import Context, Written, coding, concept, effective, ref, status_of
from labinterp.rules.renal import RenalFinding


def egfr_observation(ctx: Context, renal: RenalFinding) -> Written:
    assert renal.creatinine is not None
    r, s = ctx.k.renal, ctx.systems
    eq = r.ckd_epi_2021 if renal.equation == "ckd_epi_2021" else r.mdrd_idms
    unit = ctx.k.analytes["egfr"].canonical_unit

    def quantity(v: float) -> dict[str, Any]:
        return {"value": round(v, 1), "unit": "mL/min/1.73m2", "system": s["ucum"], "code": unit}

    body: dict[str, Any] = {
        "resourceType": "Observation",
        "status": status_of([renal.creatinine]),
        "category": [concept(s["observation_category"], "laboratory", "Laboratory")],
        "code": {"coding": [coding(s["loinc"], eq.loinc, eq.display)], "text": f"eGFR ({renal.equation})"},
        "subject": ref(ctx.patient),
        **effective(renal.creatinine.time),
    }
    source = f"Computed by labinterp from serum creatinine {renal.creatinine.original}, age {renal.age} years and sex"
    estimates = [(e.sex, e.egfr, e.stage) for e in renal.by_sex if e.egfr is not None and e.stage is not None]
    if renal.egfr is None and len(estimates) == 2:
        (_, lo, lo_stage), (_, hi, hi_stage) = sorted(estimates, key=lambda e: e[1])
        assert lo is not None and hi is not None and lo_stage is not None and hi_stage is not None
        words = "; ".join(
            f"if {sex} {v:.1f} mL/min/1.73 m2 (KDIGO {st.name})" for sex, v, st in estimates if v is not None and st
        )
        body["valueRange"] = {"low": quantity(lo), "high": quantity(hi)}
        note = (
            f"{source} unknown: no single eGFR is stated as the patient's. Both sexes computed: {words}. "
            f"The range spans the two; rules take the lower. {r.meta.source}"
        )
        narrative = f"Sex unknown: eGFR {words}; no single value is stated."
    else:
        assert renal.egfr is not None and renal.stage is not None
        body["valueQuantity"] = quantity(renal.egfr)
        note = f"{source}; KDIGO {renal.stage.name}. {r.meta.source}"
        narrative = f"eGFR {renal.egfr:.1f} mL/min/1.73 m2, KDIGO {renal.stage.name} ({renal.stage.text})."
    body["derivedFrom"] = [ref(renal.creatinine.source)]
    body["note"] = [{"text": note}]
    if renal.equation == "mdrd_idms":
        body["method"] = concept(s["snomed"], r.mdrd_idms.method_snomed, r.mdrd_idms.method_display)
    body["text"] = nv.div("Estimated GFR", [narrative])
    return ctx.new("egfr", body, [renal.creatinine.source, ctx.patient])
