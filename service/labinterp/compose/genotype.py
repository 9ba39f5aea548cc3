"""The genotype interpretation DiagnosticReport (Genomics Reporting IG shapes; SPEC section 2) and its view."""

from __future__ import annotations

from typing import Any

from labinterp.compose.common import Context, Written, concept, ref, status_of
from labinterp.compose.renal import renal_section
from labinterp.compose.reports import report, report_view
from labinterp.compose.risk import exposure_table
from labinterp.compose.view import BASIS, GENOTYPE_HEADER, section, table
from labinterp.rules import Findings
from labinterp.rules.exposure import ExposureRisk
from labinterp.rules.pgx import GeneResult, PgxFinding

GENOMIC_RISK = "http://hl7.org/fhir/uv/genomics-reporting/StructureDefinition/genomic-risk-assessment"


def genotype_report(ctx: Context, f: Findings, pgx: PgxFinding, risk: Written | None) -> Written:
    no_effect = {line.split(":")[0]: line for line in (f.exposure.no_effect if f.exposure else [])}
    calls = [c for g in pgx.genes.values() for c in g.calls]
    lines: list[str] = []
    codes: list[dict[str, Any]] = []
    for gene, g in pgx.genes.items():
        lines += _gene_lines(gene, g, no_effect)
        if g.phenotype and g.phenotype.code:
            codes.append(concept(ctx.systems["loinc"], g.phenotype.code, g.phenotype.name, f"{gene} {g.phenotype.name}"))
    if f.exposure:
        lines += _exposure_lines(f.exposure)
    status = status_of(calls)
    body = report(ctx, "genotype", status, {}, [ref(c.source) for c in calls], " ".join(lines), codes)
    if risk is not None:
        extension = [{"url": GENOMIC_RISK, "valueReference": {"reference": risk.full_url}}]
        body = {"resourceType": body.pop("resourceType"), "extension": extension, **body}
    times = sorted((c.time for c in calls if c.time is not None), key=lambda t: t.start)
    rows = [_gene_row(gene, g) for gene, g in pgx.genes.items()]
    view = report_view(
        ctx,
        f,
        "genotype",
        status,
        lines[0] if lines else ctx.k.output.reports["genotype"].title,
        collected=times[-1].text if times else "",
        interpretation=lines[1:],
        tables=[*table("Genotypes", GENOTYPE_HEADER, rows), *exposure_table(f.exposure)],
        sections=[
            *(renal_section(f.renal) if f.renal is not None else []),
            *section(BASIS, [ctx.k.linezolid.meta.source]),  # its citation names the cohort
        ],
    )
    return ctx.new("genotype", body, [c.source for c in calls] + [ctx.patient], view)


def _phenotype(g: GeneResult) -> str:
    phenotype = g.phenotype.name if g.phenotype else ""
    return f"haplotype {g.haplotype}" if g.haplotype else phenotype


def _gene_lines(gene: str, g: GeneResult, no_effect: dict[str, str]) -> list[str]:
    phenotype = _phenotype(g)
    line = g.label() + (f": {phenotype}" if phenotype else "")
    effects = [no_effect[key] for key in no_effect if key.startswith(tuple(g.groups))]
    if effects:
        line += "; " + "; ".join(e.split(": ", 1)[1] for e in effects)
    return [line + ".", *(f"{gene}: {n}." for n in g.notes)]


def _gene_row(gene: str, g: GeneResult) -> list[str]:
    """Gene, genotype, phenotype (and haplotype), the cohort's groups, and the shapes it was reported in."""
    phenotype = "; ".join(x for x in (g.phenotype.name if g.phenotype else "", g.haplotype and f"haplotype {g.haplotype}") if x)
    return [
        gene,
        g.label().removeprefix(f"{gene} "),
        phenotype or "-",
        ", ".join(f"{factor}: {grp or 'not classifiable'}" for factor, grp in g.groups.items()) or "-",
        ", ".join(sorted({c.shape + (f" ({c.assembly})" if c.assembly else "") for c in g.calls})),
    ]


def _exposure_lines(e: ExposureRisk) -> list[str]:
    u = e.under
    factors = f" ({', '.join(u.contributors)})" if u.contributors else ""
    if u.measured:  # the genotype is a prior: the measured trough decides, and the report says both
        prior = u.prior_risk or "not assessable"
        out = [
            f"Linezolid underexposure risk: {u.risk}, as the measured trough shows; from genotype alone (prior): {prior}{factors}."
        ]
    else:
        out = [f"Linezolid underexposure risk (prior, before any trough): {u.label}{factors if u.risk is None else ''}."]
    if u.caution:
        out.append(u.caution[:1].upper() + u.caution[1:] + ".")
    return out
