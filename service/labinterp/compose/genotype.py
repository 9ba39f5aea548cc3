"""The genotype interpretation DiagnosticReport (Genomics Reporting IG shapes; SPEC section 2)."""

from __future__ import annotations

from labinterp.compose import narrative as nv
from labinterp.compose.common import Context, Written, concept, ref, status_of
from labinterp.compose.reports import not_used, report
from labinterp.rules import Findings
from labinterp.rules.pgx import PgxFinding


def genotype_report(ctx: Context, f: Findings, pgx: PgxFinding, risk: Written | None) -> Written:
    k = ctx.k
    lines, rows, codes = [], [], []
    no_effect = {line.split(":")[0]: line for line in (f.exposure.no_effect if f.exposure else [])}
    calls = [c for g in pgx.genes.values() for c in g.calls]
    for gene, g in pgx.genes.items():
        groups = ", ".join(f"{factor}: {grp or 'not classifiable'}" for factor, grp in g.groups.items())
        phenotype = g.phenotype.name if g.phenotype else ""
        if g.haplotype:
            phenotype = f"haplotype {g.haplotype}"
        rows.append(
            [
                gene,
                g.label().removeprefix(f"{gene} "),
                phenotype or "-",
                groups or "-",
                ", ".join(sorted({c.shape + (f" ({c.assembly})" if c.assembly else "") for c in g.calls})),
            ]
        )
        line = g.label() + (f": {phenotype}" if phenotype else "")
        effects = [no_effect[key] for key in no_effect if key.startswith(tuple(g.groups))]
        if effects:
            line += "; " + "; ".join(e.split(": ", 1)[1] for e in effects)
        lines.append(line + ".")
        lines += [f"{gene}: {n}." for n in g.notes]
        if g.phenotype and g.phenotype.code:
            codes.append(concept(ctx.systems["loinc"], g.phenotype.code, g.phenotype.name, f"{gene} {g.phenotype.name}"))
    if f.exposure:
        u = f.exposure.under
        factors = f" ({', '.join(u.contributors)})" if u.contributors else ""
        if u.measured:  # the genotype is a prior: the measured trough decides, and the report says both
            prior = u.prior_risk or "not assessable"
            lines.append(
                f"Linezolid underexposure risk: {u.risk}, as the measured trough shows; from genotype alone (prior): {prior}{factors}."
            )
        else:
            lines.append(
                f"Linezolid underexposure risk (prior, before any trough): {u.label}{factors if u.risk is None else ''}."
            )
        if u.caution:
            lines.append(u.caution[:1].upper() + u.caution[1:] + ".")
    text = nv.div(
        k.output.reports["genotype"].title,
        lines,
        nv.table(["Gene", "Genotype", "Phenotype", "Groups (linezolid cohort)", "Reported as"], rows),
        not_used(f),
    )
    body = report(ctx, "genotype", status_of(calls), {}, [ref(c.source) for c in calls], " ".join(lines), codes, text)
    if risk is not None:
        body["extension"] = [
            {
                "url": "http://hl7.org/fhir/uv/genomics-reporting/StructureDefinition/genomic-risk-assessment",
                "valueReference": {"reference": risk.full_url},
            }
        ]
        body = {"resourceType": body.pop("resourceType"), "extension": body.pop("extension"), **body}
    return ctx.new("genotype", body, [c.source for c in calls] + [ctx.patient])
