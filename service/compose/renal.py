"""The renal function DiagnosticReport and the renal line other reports carry (SPEC section 3)."""

from __future__ import annotations

from service.compose import narrative as nv
from service.compose.common import Context, Written, effective, ref, status_of
from service.compose.reports import report
from service.extract.facts import Measurement
from service.rules import Findings
from service.rules.renal import RenalFinding

EQUATIONS = {
    "ckd_epi_2021": "CKD-EPI 2021, race-free",
    "mdrd_idms": "IDMS-traceable MDRD",
    "reported": "reported by the laboratory",
}


def renal_line(renal: RenalFinding | None) -> str:
    if renal is None:
        return "Renal function: no creatinine or eGFR result."
    if renal.egfr is None:
        return f"Renal function: no eGFR, because {renal.why_not}."
    assert renal.stage is not None
    line = f"eGFR {renal.egfr:.1f} mL/min/1.73 m2 ({EQUATIONS[renal.equation]}), KDIGO {renal.stage.name} ({renal.stage.text})"
    if renal.crcl is not None:
        line += f"; Cockcroft-Gault creatinine clearance {renal.crcl:.0f} mL/min (actual body weight)"
    return line + "."


def renal_report(ctx: Context, f: Findings, renal: RenalFinding, egfr: Written) -> Written:
    assert renal.creatinine is not None
    lines = [
        renal_line(renal),
        f"From serum creatinine {renal.creatinine.original}, age {renal.age} years, sex {f.record.patient.sex}.",
    ]
    inputs: list[Measurement] = [renal.creatinine] + ([renal.weight] if renal.weight and renal.crcl is not None else [])
    results = [{"reference": egfr.full_url}] + [ref(m.source) for m in inputs]
    text = nv.div(
        ctx.k.output.reports["renal"].title,
        lines,
        nv.section("Basis", [f"Equations and KDIGO categories: {ctx.k.renal.meta.source}."]),
    )
    body = report(ctx, "renal", status_of(inputs), effective(renal.creatinine.time), results, " ".join(lines), [], text)
    return ctx.new("renal", body, [m.source for m in inputs] + [ctx.patient])
