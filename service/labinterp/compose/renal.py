"""The renal function DiagnosticReport and the renal line other reports carry (SPEC section 3)."""

from __future__ import annotations

from datetime import datetime

from labinterp.compose.common import Context, Written, effective, ref, status_of
from labinterp.compose.reports import report, report_view
from labinterp.compose.view import BASIS, RENAL, Section, section
from labinterp.extract.facts import Measurement
from labinterp.rules import Findings
from labinterp.rules.renal import EQUATION_NAMES, RenalFinding, staleness


def _both_sexes(renal: RenalFinding) -> str:
    parts = []
    for e in renal.by_sex:
        figures = []
        if e.egfr is not None and e.stage is not None:
            figures.append(f"eGFR {e.egfr:.1f} mL/min/1.73 m2, KDIGO {e.stage.name}")
        if e.crcl is not None:
            figures.append(f"Cockcroft-Gault {e.crcl:.0f} mL/min")
        if figures:
            parts.append(f"if {e.sex}: " + ", ".join(figures))
    return "; ".join(parts)


def renal_line(renal: RenalFinding | None, at: datetime | None = None) -> str:
    """One sentence on renal function; `at` (the interpreted sample's time) adds the staleness warning. An
    older renal result on record that was not used is named."""
    if renal is None:
        return "Renal function: no creatinine or eGFR result."
    _, stale = staleness(renal, at)
    what = "eGFR" if renal.basis is not None and renal.basis is renal.reported else "Creatinine"
    tail = f" {what} {stale}." if stale.startswith("stale") else (f" Note: {stale}." if stale else "")
    if renal.superseded:
        tail += f" Note: {renal.superseded}."
    if renal.egfr is None and renal.by_sex:
        eq = EQUATION_NAMES[renal.equation]
        return (
            f"Renal function: sex unknown, so no single eGFR is stated; both sexes computed ({eq}): "
            f"{_both_sexes(renal)}. Rules take the lower value.{tail}"
        )
    if renal.egfr is None:
        scr, on_record = renal.creatinine, ""
        if scr is not None:
            on_record = (
                f"creatinine {scr.original} ({scr.time.start.date().isoformat() if scr.time else 'undated'}) on record, but "
            )
        return f"Renal function: {on_record}no eGFR, because {renal.why_not}.{tail}"
    when = ""
    if renal.equation == "reported" and renal.reported is not None and renal.reported.time is not None:
        when = f", {renal.reported.time.start.date().isoformat()}"
    stage = (
        f"KDIGO {renal.stage.name} ({renal.stage.text})"
        if renal.stage is not None
        else "KDIGO stage not determinable (the value is a bound spanning more than one stage)"
    )
    line = f"eGFR {renal.egfr_words} mL/min/1.73 m2 ({EQUATION_NAMES[renal.equation]}{when}), {stage}"
    if renal.crcl is not None:
        line += f"; Cockcroft-Gault creatinine clearance {renal.crcl:.0f} mL/min (actual body weight)"
    if renal.by_sex:  # a reported eGFR with unknown sex: Cockcroft-Gault for both sexes
        line += f"; sex unknown: {_both_sexes(renal)}"
    return line + "." + tail


def renal_section(renal: RenalFinding | None, at: datetime | None = None) -> list[Section]:
    """The renal sentence as the "Renal function" section of another report's view."""
    return section(RENAL, [renal_line(renal, at).removeprefix("Renal function: ")])


def renal_report(ctx: Context, f: Findings, renal: RenalFinding, egfr: Written) -> Written:
    assert renal.creatinine is not None
    sex = f.record.patient.sex
    lines = [
        renal_line(renal),
        f"From serum creatinine {renal.creatinine.original}, age {renal.age} years, sex {sex}"
        + (" (both sexes computed)." if renal.by_sex else "."),
    ]
    inputs: list[Measurement] = [renal.creatinine]
    if renal.weight and (renal.crcl is not None or any(e.crcl is not None for e in renal.by_sex)):
        inputs.append(renal.weight)
        lines.append(
            f"Weight for Cockcroft-Gault: {renal.weight.original}"
            + (f" ({renal.weight.time.text})." if renal.weight.time else ".")
        )
    results = [{"reference": egfr.full_url}] + [ref(m.source) for m in inputs]
    status = status_of(inputs)
    body = report(ctx, "renal", status, effective(renal.creatinine.time), results, " ".join(lines), [])
    view = report_view(
        ctx,
        f,
        "renal",
        status,
        lines[0],
        about=renal.creatinine,
        measured=inputs,
        interpretation=lines[1:],
        sections=section(BASIS, [f"Equations and KDIGO categories: {ctx.k.renal.meta.source}."]),
    )
    return ctx.new("renal", body, [m.source for m in inputs] + [ctx.patient], view)
