"""A short plain-text summary of one patient's findings, for people at a terminal."""

from __future__ import annotations

from labinterp.extract.observations import IGNORED_STATUSES
from labinterp.pipeline import PatientResult
from labinterp.rules.qc import BatchFinding

AWAITED = f"status registered: {IGNORED_STATUSES['registered']}"  # how extract lists a result ordered, not yet sent


def _risk(label: str, risk: str | None, probability: float | None, contributors: list[str]) -> str:
    text = f"{label} {risk or 'not assessable'}"
    if probability is not None:
        text += f" (p={probability:.3f})"
    if contributors:
        text += " [" + ", ".join(contributors) + "]"
    return text


def summarize(result: PatientResult) -> list[str]:
    f = result.findings
    p = f.record.patient
    lines = [f"{p.source.reference}: {p.sex}, " + (f"{f.age} years" if f.age is not None else "age unknown")]
    if f.linezolid:
        lz = f.linezolid
        cat = lz.band.interpretation if lz.band else "?"
        lines.append(
            f"  linezolid trough {lz.trough.original} -> {lz.category} [{cat}], timing {lz.timing.status}"
            + (f", trend {lz.trend}" if lz.trend else "")
            + (f", below MIC {lz.mic.original}" if lz.below_mic and lz.mic else "")
        )
        lines.append(f"    {lz.suggestion.text}")
    if f.exposure:
        e = f.exposure
        lines.append(
            "  "
            + _risk("underexposure", e.under.risk, e.under.probability, e.under.contributors)
            + "; "
            + _risk("overexposure", e.over.risk, e.over.probability, e.over.contributors)
        )
    if f.pgx:
        genes = []
        for g in f.pgx.genes.values():
            extra = g.phenotype.name if g.phenotype else (g.haplotype or "")
            groups = "/".join(v or "unclassifiable" for v in g.groups.values())
            genes.append(f"{g.label()}" + (f" {extra}" if extra else "") + f" ({groups})")
        lines.append("  genotypes: " + "; ".join(genes))
    if f.renal:
        r = f.renal
        if r.egfr is not None and r.stage is not None:
            lines.append(
                f"  eGFR {r.egfr:.1f} ({r.equation}) KDIGO {r.stage.name}" + (f", CrCl {r.crcl:.0f} mL/min" if r.crcl else "")
            )
        else:
            lines.append(f"  eGFR not computed: {r.why_not}")
    if f.magnesium:
        mg = f.magnesium
        lines.append(
            f"  magnesium {mg.mg.original} -> {mg.band.name if mg.band else 'indeterminate'}"
            + (f", arrhythmia risk {mg.arrhythmia_risk}" if mg.hypo else "")
            + (f", causes: {len(mg.causes)}" if mg.causes else "")
            + (", digoxin" if mg.digoxin and mg.hypo else "")
            + (f", FEMg {mg.femg.percent:.1f} %" if mg.femg else "")
            + (", dose -50 % (renal)" if mg.renal_reduction else "")
        )
    left_out = f.record.problems
    if left_out:
        lines.append(f"  left out: {len(left_out)} resource(s) that could not be used (listed under 'Not used')")
    awaited = [i for i in f.record.ignored if i.why == AWAITED]
    if awaited:  # ordered, no result yet: not a problem, and the run says it will come back to them
        lines.append(
            f"  awaiting: {len(awaited)} result(s) registered without a value yet; interpreted when the laboratory sends them"
        )
    kinds = [w.kind for w in result.written]
    nothing = "nothing yet (results awaited)" if awaited else "nothing (no interpretable results)"
    lines.append(f"  writes: {', '.join(kinds) if kinds else nothing}")
    return lines


def summarize_batch(f: BatchFinding) -> str:
    """One line for a formulation batch: its conclusion and why."""
    r = f.record
    return f"{r.batch.reference}: {r.product_name or 'product not recorded'} lot {r.lot or '-'} -> {f.conclusion}" + (
        f" ({'; '.join(f.reasons)})" if f.reasons else ""
    )
