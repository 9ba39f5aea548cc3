"""The linezolid TDM DiagnosticReport (SPEC section 2)."""

from __future__ import annotations

from labinterp.compose import narrative as nv
from labinterp.compose.common import Context, Written, effective, ref, status_of
from labinterp.compose.renal import renal_line
from labinterp.compose.reports import not_used, report
from labinterp.extract.facts import Measurement
from labinterp.rules import Findings
from labinterp.rules.linezolid import LinezolidFinding


def linezolid_report(ctx: Context, f: Findings, lz: LinezolidFinding, risk: Written | None) -> Written:
    k = ctx.k
    t = lz.trough
    band = lz.band
    what = "level (not a trough)" if lz.timing.is_trough is False else "trough"
    converted = t.unit == "mg/L" and not t.comparator and not t.original.startswith(f"{t.value:g} mg/L")
    headline = f"Linezolid {what} {t.original}" + (f" ({t.value:.2f} mg/L)" if converted else "")
    category = band.text if band else lz.why_indeterminate
    lines = [f"{headline}: {category}."]
    timing = timing_label(lz)
    lines.append(f"{timing}: {'; '.join(lz.timing.reasons)}.")
    if lz.trend_text:
        lines.append(f"{lz.trend_text}.")
    if lz.last_trough is not None:
        m, last = lz.last_trough
        lines.append(f"The last trough of this course: {m.original} ({m.time.text if m.time else 'undated'}): {last.text}.")
    if lz.mic is not None:
        level = "level" if lz.timing.is_trough is False else "trough"
        verdict = {
            True: f"the {level} is BELOW the MIC",
            False: f"the {level} is not below the MIC",
            None: "comparison with the MIC is not possible",
        }[lz.below_mic]
        lines.append(f"Linezolid MIC of the isolate {lz.mic.original}: {verdict}.")
    lines.append(lz.suggestion.text)
    lines += [f"Note: {n}." for n in lz.notes]
    conclusion = " ".join(lines)
    codes = [ctx.interpretation(band.interpretation)] if band else []
    earlier = [lz.last_trough[0]] if lz.last_trough else []
    inputs: list[Measurement] = [*earlier, *lz.previous, t] + ([lz.mic] if lz.mic else [])
    rows = [[m.time.text if m.time else "-", m.original, m.status] for m in [*lz.previous, t]]
    assay = k.linezolid.assay
    facts = [
        f"Therapeutic range {k.linezolid.band('within').lower:g}-{k.linezolid.band('within').upper:g} mg/L; limit of quantification "
        f"{assay.loq_mg_per_l:g} mg/L; assay linear to {assay.linearity_upper_mg_per_l:g} mg/L ({k.linezolid.band('within').source}).",
        f"Regimen: {lz.regimen.label()}" + ("" if lz.regimen_known else " (standard regimen assumed: none recorded)") + ".",
        renal_line(f.renal, t.time.start if t.time else None),
    ]
    if lz.suggestion.basis:
        facts.append(f"Basis of the suggestion: {lz.suggestion.basis}")
    if risk is not None:
        facts.append("Risk of under- and overexposure: see the linked RiskAssessment.")
    text = nv.div(
        k.output.reports["linezolid"].title,
        lines,
        nv.table(["Sampled", "Result", "Status"], rows),
        nv.section("Basis", facts),
        nv.section(
            "Earlier linezolid levels not used in the trend",
            [f"{m.source.reference} ({m.original}): {why}" for m, why in lz.not_used],
        ),
        not_used(f),
    )
    body = report(
        ctx, "linezolid", status_of(inputs), effective(t.time), [ref(m.source) for m in inputs], conclusion, codes, text
    )
    return ctx.new("linezolid", body, [m.source for m in inputs] + [ctx.patient])


def timing_label(lz: LinezolidFinding) -> str:
    """What the timing check concluded, in the words of a TDM report."""
    t = lz.timing
    if t.status == "valid":
        return "Valid trough"
    if t.is_trough and t.steady_state == "not_reached":
        return "Trough taken before steady state"
    if t.is_trough:
        return "Trough by its timing; steady state could not be confirmed"
    if t.is_trough is False:
        return "Not a valid trough"
    return "Not a valid trough" if t.status == "invalid" else "Timing could not be checked"
