"""Pharmacogenetics: genotype calls → diplotypes, CPIC phenotypes and the genotype groups of the linezolid
cohort (190 adults on linezolid 600 mg every 12 h, Luigi Sacco University Hospital, Milan).

Pure functions over GenotypeCall and the gene definitions of mappings/pgx/."""

from __future__ import annotations

from dataclasses import dataclass, field

from labinterp.extract.facts import GenotypeCall, PatientRecord
from labinterp.knowledge import Knowledge
from labinterp.knowledge.model import GeneFile, Phenotype


@dataclass
class GeneResult:
    gene: str
    calls: list[GenotypeCall]
    stars: tuple[str, str] | None = None
    bases: dict[str, tuple[str, str]] = field(default_factory=dict)  # rsid -> gene-orientation bases
    phenotype: Phenotype | None = None
    groups: dict[str, str | None] = field(default_factory=dict)  # factor -> group name, None when indeterminate
    haplotype: str | None = None  # ABCB1: "CGC/CGC" | "TTT carrier" | "TTT/TTT"
    notes: list[str] = field(default_factory=list)

    @property
    def preliminary(self) -> bool:
        return any(c.preliminary for c in self.calls)

    def label(self) -> str:
        parts = []
        if self.stars:
            parts.append(f"{self.stars[0]}/{self.stars[1]}")
        parts += [f"{rs} {b[0]}{b[1]}" for rs, b in self.bases.items() if not self.stars]
        return f"{self.gene} " + ", ".join(parts) if parts else f"{self.gene} (not determined)"


@dataclass
class PgxFinding:
    genes: dict[str, GeneResult]

    def group(self, factor: str) -> str | None:
        for g in self.genes.values():
            if factor in g.groups:
                return g.groups[factor]
        return None

    def has_factor(self, factor: str) -> bool:
        return any(factor in g.groups for g in self.genes.values())


def _order(stars: tuple[str, str]) -> tuple[str, str]:
    def key(s: str) -> tuple[int, str]:
        digits = "".join(ch for ch in s if ch.isdigit())
        return (int(digits) if digits else 10**6, s)

    a, b = sorted(stars, key=key)
    return a, b


def _alt_count(g: GeneFile, result: GeneResult, rsid: str) -> int | None:
    variant = next(v for v in g.variants if v.rsid == rsid)
    if rsid in result.bases:
        return sum(b != variant.reference for b in result.bases[rsid])
    if result.stars and variant.star_reference and set(result.stars) <= {variant.star_reference, variant.star_alternate}:
        return result.stars.count(variant.star_alternate)
    return None


def _functions(g: GeneFile, stars: tuple[str, str] | None) -> tuple[str, str] | None:
    if stars is None or not all(s in g.alleles for s in stars):
        return None
    return g.alleles[stars[0]].function, g.alleles[stars[1]].function


def interpret_gene(g: GeneFile, calls: list[GenotypeCall]) -> GeneResult:
    """One gene's calls read together: the diplotype (reported, or from the variant's bases), the phenotype
    from the allele functions, and the cohort's groups. Conflicting calls leave every group undetermined."""
    result = GeneResult(g.gene.symbol, calls)
    star_calls = {c.stars for c in calls if c.stars}
    if len(star_calls) > 1:
        result.notes.append("conflicting diplotypes reported: " + "; ".join(f"{a}/{b}" for a, b in sorted(star_calls)))
    elif star_calls:
        result.stars = _order(next(iter(star_calls)))
    _read_bases(g, calls, result, bool(star_calls))
    if any("conflicting" in n or "disagrees" in n for n in result.notes):
        for rule in g.groups:
            result.groups[rule.factor] = None
        if g.haplotype:
            result.groups[g.haplotype.factor] = None
        return result
    functions = _functions(g, result.stars)
    if result.stars and functions is None:
        unknown = [s for s in result.stars if s not in g.alleles]
        result.notes.append(f"{g.gene.symbol} {', '.join(unknown)}: allele not in the function table (mappings/pgx)")
    if functions:
        result.phenotype = next((p for p in g.phenotypes if sorted(p.functions) == sorted(functions)), None)
    _assign_groups(g, result, functions)
    if g.haplotype:
        _haplotype(g, result)
    return result


def _read_bases(g: GeneFile, calls: list[GenotypeCall], result: GeneResult, stars_reported: bool) -> None:
    """Each variant's bases (reference first); the diplotype from them when none was reported; a note when two
    calls of one variant differ or the bases disagree with the reported diplotype."""
    by_rsid: dict[str, set[tuple[str, str]]] = {}
    for c in calls:
        if c.rsid and c.bases:
            by_rsid.setdefault(c.rsid, set()).add(tuple(sorted(c.bases)))  # type: ignore[arg-type]
    for rsid, found in by_rsid.items():
        if len(found) > 1:
            result.notes.append(f"conflicting {rsid} genotypes reported: " + "; ".join("".join(b) for b in sorted(found)))
            continue
        bases = next(iter(found))
        variant = next(v for v in g.variants if v.rsid == rsid)
        result.bases[rsid] = (bases[0], bases[1]) if bases[0] == variant.reference else (bases[1], bases[0])
        if variant.star_reference and not result.stars and not stars_reported:
            stars = tuple(
                variant.star_reference if b == variant.reference else variant.star_alternate for b in result.bases[rsid]
            )
            result.stars = _order((stars[0], stars[1]))
        elif variant.star_reference and result.stars:
            from_bases = sorted(variant.star_reference if b == variant.reference else variant.star_alternate for b in bases)
            if set(result.stars) <= {variant.star_reference, variant.star_alternate} and from_bases != sorted(result.stars):
                result.notes.append(f"{rsid} {''.join(bases)} disagrees with the diplotype {result.stars[0]}/{result.stars[1]}")


def _assign_groups(g: GeneFile, result: GeneResult, functions: tuple[str, str] | None) -> None:
    """The cohort's group of each factor (by a variant's alternate count, or by the allele functions); a note
    for a factor the diplotype fits no group of."""
    for rule in g.groups:
        if rule.factor not in result.groups:
            result.groups[rule.factor] = None
        member: bool | None
        if rule.variant:
            count = _alt_count(g, result, rule.variant)
            member = None if count is None else count in rule.alternate_counts
        elif functions is None:
            member = None
        elif rule.any_function:
            member = rule.any_function in functions
        else:
            member = all(f == rule.all_function for f in functions)
        if member:
            result.groups[rule.factor] = rule.name
    for factor, grp in result.groups.items():
        if grp is None and functions and not result.notes:
            result.notes.append(
                f"{factor}: diplotype {result.stars[0]}/{result.stars[1]} fits none of the groups of the linezolid cohort"
                if result.stars
                else f"{factor}: not determined"
            )


def _haplotype(g: GeneFile, result: GeneResult) -> None:
    h = g.haplotype
    assert h is not None
    result.groups[h.factor] = None
    missing = [rs for rs in h.variants if rs not in result.bases]
    if missing:
        if len(missing) < len(h.variants):
            result.notes.append(f"{h.factor}: needs all of {', '.join(h.variants)}; missing {', '.join(missing)}")
        return
    counts = []
    for rs in h.variants:
        variant = next(v for v in g.variants if v.rsid == rs)
        bases = result.bases[rs]
        if any(b not in (variant.reference, h.allele) for b in bases):
            result.notes.append(
                f"{h.factor}: {rs} {''.join(bases)} carries an allele other than {variant.reference}/{h.allele}: unclassifiable diplotype"
            )
            return
        counts.append(bases.count(h.allele))
    if len(set(counts)) != 1:
        result.notes.append(
            f"{h.factor}: allele counts {counts} at {', '.join(h.variants)} are not CGC/CGC, TTT carrier or TTT/TTT: unclassifiable diplotype (the linezolid cohort's haplotype groups exclude it)"
        )
        return
    result.haplotype = h.names[str(counts[0])]
    result.groups[h.factor] = h.groups[str(counts[0])]


def interpret_pgx(record: PatientRecord, k: Knowledge) -> PgxFinding | None:
    """None when the patient has no genotype for any gene labinterp knows."""
    if not record.genotypes:
        return None
    genes: dict[str, GeneResult] = {}
    for symbol, g in k.genes.items():
        calls = [c for c in record.genotypes if c.gene == symbol]
        if calls:
            genes[symbol] = interpret_gene(g, calls)
    return PgxFinding(genes) if genes else None
