"""The linezolid TDM DiagnosticReport (SPEC section 2) and its view."""

from __future__ import annotations

from labinterp.compose.common import Context, Written, effective, ref, status_of
from labinterp.compose.renal import renal_section
from labinterp.compose.reports import report, report_view
from labinterp.compose.risk import exposure_table
from labinterp.compose.view import BASIS, LEVELS_HEADER, SUGGESTION, RangeBar, Section, section, table, when
from labinterp.extract.facts import Measurement
from labinterp.knowledge import Knowledge
from labinterp.rules import Findings
from labinterp.rules.linezolid import LinezolidFinding


def linezolid_report(ctx: Context, f: Findings, lz: LinezolidFinding, risk: Written | None) -> Written:
    t, band = lz.trough, lz.band
    headline, findings = _headline(lz), _findings(lz)
    notes = [f"Note: {n}." for n in lz.notes]
    conclusion = " ".join([headline, *findings, lz.suggestion.text, *notes])
    codes = [ctx.interpretation(band.interpretation)] if band else []
    earlier = [lz.last_trough[0]] if lz.last_trough else []
    inputs: list[Measurement] = [*earlier, *lz.previous, t] + ([lz.mic] if lz.mic else [])
    status = status_of(inputs)
    body = report(ctx, "linezolid", status, effective(t.time), [ref(m.source) for m in inputs], conclusion, codes)
    levels = [[when(m.time.text) if m.time else "-", m.original, m.status] for m in [*lz.previous, t]]
    view = report_view(
        ctx,
        f,
        "linezolid",
        status,
        headline,
        about=t,
        measured=inputs,
        bar=_bar(lz, ctx.k),
        interpretation=[*findings, *notes],
        tables=[*table("Linezolid levels", LEVELS_HEADER, levels), *exposure_table(f.exposure)],
        sections=_sections(ctx.k, f, lz, risk is not None),
    )
    return ctx.new("linezolid", body, [m.source for m in inputs] + [ctx.patient], view)


def _headline(lz: LinezolidFinding) -> str:
    t = lz.trough
    what = "level (not a trough)" if lz.timing.is_trough is False else "trough"
    converted = t.unit == "mg/L" and not t.comparator and not t.original.startswith(f"{t.value:g} mg/L")
    headline = f"Linezolid {what} {t.original}" + (f" ({t.value:.2f} mg/L)" if converted else "")
    return f"{headline}: {lz.band.text if lz.band else lz.why_indeterminate}."


def _findings(lz: LinezolidFinding) -> list[str]:
    """What the report found beside the headline: the timing, the course's trend, its last trough, the MIC."""
    out = [f"{timing_label(lz)}: {'; '.join(lz.timing.reasons)}."]
    if lz.trend_text:
        out.append(f"{lz.trend_text}.")
    if lz.last_trough is not None:
        m, last = lz.last_trough
        out.append(f"The last trough of this course: {m.original} ({m.time.text if m.time else 'undated'}): {last.text}.")
    if lz.mic is not None:
        level = "level" if lz.timing.is_trough is False else "trough"
        verdict = {
            True: f"the {level} is BELOW the MIC",
            False: f"the {level} is not below the MIC",
            None: "comparison with the MIC is not possible",
        }[lz.below_mic]
        out.append(f"Linezolid MIC of the isolate {lz.mic.original}: {verdict}.")
    return out


def _bar(lz: LinezolidFinding, k: Knowledge) -> RangeBar | None:
    """The trough against the therapeutic range; none for a level that is not a trough, or without a value."""
    within, t = k.linezolid.band("within"), lz.trough
    if t.value is None or lz.timing.is_trough is False or within.lower is None or within.upper is None:
        return None
    top = k.linezolid.assay.linearity_upper_mg_per_l * 1.25
    return RangeBar("Linezolid trough", round(t.value, 2), "mg/L", within.lower, within.upper, top, t.comparator)


def _sections(k: Knowledge, f: Findings, lz: LinezolidFinding, with_risk: bool) -> list[Section]:
    t, assay, within = lz.trough, k.linezolid.assay, k.linezolid.band("within")
    basis = [
        f"Therapeutic range {within.lower:g}-{within.upper:g} mg/L; limit of quantification {assay.loq_mg_per_l:g} mg/L; "
        f"assay linear to {assay.linearity_upper_mg_per_l:g} mg/L ({within.source}).",
        f"Regimen: {lz.regimen.label()}" + ("" if lz.regimen_known else " (standard regimen assumed: none recorded)") + ".",
        f"Basis of the suggestion: {lz.suggestion.basis}" if lz.suggestion.basis else None,
        "Risk of under- and overexposure: see the linked RiskAssessment." if with_risk else None,
    ]
    return [
        *section(SUGGESTION, [lz.suggestion.text.removeprefix(f"{SUGGESTION}: ")]),
        *renal_section(f.renal, t.time.start if t.time else None),
        *section(BASIS, basis),
        *section(
            "Earlier linezolid levels not used in the trend",
            [f"{m.source.reference} ({m.original}): {why}" for m, why in lz.not_used],
        ),
    ]


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
