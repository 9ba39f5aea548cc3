"""Typed, frozen models of pgx/*.toml: one gene per file. Unknown keys are rejected."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from labinterp.knowledge.model.base import Meta, Strict

# --- pgx/*.toml -------------------------------------------------------------------------------


class Gene(Strict):
    symbol: str
    hgnc: str = Field(pattern=r"^HGNC:\d+$")


_COMPLEMENT = str.maketrans("ACGT", "TGCA")
Assembly = Literal["GRCh37", "GRCh38"]


class GenomicAlleles(Strict):
    """A SNP's alleles on one reference assembly's + strand (as IG Variant ref/alt alleles are written):
    verified facts only, each with its source."""

    accession: str = Field(default="", pattern=r"^(NC_\d+\.\d+)?$")  # RefSeq of the chromosome on this assembly
    position: int | None = Field(default=None, ge=1)  # 1-based
    reference: str = Field(pattern=r"^[ACGT]$")
    alternates: tuple[str, ...] = Field(min_length=1)
    strand: Literal["+", "-"]  # the strand the gene's c. orientation reads on
    source: str = Field(min_length=1)

    @property
    def bases(self) -> tuple[str, ...]:
        return (self.reference, *self.alternates)

    def to_gene(self, base: str) -> str:
        return base.translate(_COMPLEMENT) if self.strand == "-" else base


class Variant(Strict):
    rsid: str = Field(pattern=r"^rs\d+$")
    label: str
    hgvs_c: str = ""
    reference: str = Field(pattern=r"^[ACGT]$")
    alternates: tuple[str, ...] = Field(min_length=1)
    star_reference: str = ""
    star_alternate: str = ""
    genomic: dict[Assembly, GenomicAlleles] = Field(default_factory=dict)

    @property
    def bases(self) -> frozenset[str]:
        return frozenset((self.reference, *self.alternates))

    @model_validator(mode="after")
    def _genomic_fits(self) -> Variant:
        for assembly, g in self.genomic.items():
            if {g.to_gene(b) for b in g.bases} != set(self.bases):
                raise ValueError(
                    f"genomic.{assembly}: alleles {'/'.join(g.bases)} on strand {g.strand} are not "
                    f"{self.rsid}'s {'/'.join(sorted(self.bases))} in gene orientation"
                )
        return self


class AlleleDef(Strict):
    function: Literal["normal", "decreased", "no", "unknown"]


class Phenotype(Strict):
    functions: tuple[str, str]
    name: str
    code: str = ""


class GroupRule(Strict):
    factor: str
    name: str
    variant: str = ""
    alternate_counts: tuple[int, ...] = ()
    any_function: str = ""
    all_function: str = ""

    @model_validator(mode="after")
    def _one_rule(self) -> GroupRule:
        kinds = [bool(self.variant and self.alternate_counts), bool(self.any_function), bool(self.all_function)]
        if sum(kinds) != 1:
            raise ValueError(f"group {self.name!r}: give exactly one of variant+alternate_counts, any_function, all_function")
        return self


class Haplotype(Strict):
    factor: str
    variants: tuple[str, ...] = Field(min_length=2)
    allele: str
    names: dict[str, str]
    groups: dict[str, str]


class GeneFile(Strict):
    meta: Meta
    gene: Gene
    variants: tuple[Variant, ...] = ()
    alleles: dict[str, AlleleDef] = Field(default_factory=dict)
    phenotypes: tuple[Phenotype, ...] = ()
    groups: tuple[GroupRule, ...] = ()
    haplotype: Haplotype | None = None

    @model_validator(mode="after")
    def _refs(self) -> GeneFile:
        rsids = {v.rsid for v in self.variants}
        for g in self.groups:
            if g.variant and g.variant not in rsids:
                raise ValueError(f"group {g.name!r}: variant {g.variant} is not defined in variants")
        for v in self.variants:
            for star in (v.star_reference, v.star_alternate):
                if star and star not in self.alleles:
                    raise ValueError(f"variant {v.rsid}: star allele {star} is not defined in alleles")
        functions = {a.function for a in self.alleles.values()}
        for ph in self.phenotypes:
            if not set(ph.functions) <= functions:
                raise ValueError(
                    f"phenotype {ph.name!r}: functions {ph.functions} not all among the alleles' {sorted(functions)}"
                )
        if self.haplotype:
            for rs in self.haplotype.variants:
                if rs not in rsids:
                    raise ValueError(f"haplotype: variant {rs} is not defined in variants")
        return self
