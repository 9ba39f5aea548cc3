"""Genotype Observations in the shapes laboratories send, to GenotypeCall.

Shapes:
- Genomics Reporting IG Genotype (LOINC 84413-4) with a gene component, value text "CYP3A5 *1/*3";
- IG Variant (69548-6) with an rsID component, allelic state and optionally ref/alt alleles or c.HGVS;
- plain Observations naming a gene or rsID, whose value is "*1/*3", "AG", "A/G" or "rs1045642 C/T".

Bases are read in gene (c.) orientation, as laboratories and seed 000 write them. A reading on the other
strand is accepted only where it cannot be confused: the complement of the bases fits the SNP and the
bases as written do not. IG Variant ref/alt alleles are genomic (+ strand): they are mapped through the
SNP's verified genomic alleles, or the same unambiguous-complement rule, or c.HGVS when given.
"""

from __future__ import annotations

import re
from typing import Any

from service.errors import ResourceError
from service.extract.facts import GenotypeCall, SourceRef
from service.extract.observations import codings, concept_text, effective_time
from service.knowledge import Knowledge
from service.knowledge.model import Variant

_COMPLEMENT = str.maketrans("ACGT", "TGCA")
_RSID = re.compile(r"\brs\d+\b", re.IGNORECASE)
_HGVS_C = re.compile(r"(?:[A-Z]{2}_\d+(?:\.\d+)?:)?c\.(\d+)([ACGT])>([ACGT](?:/[ACGT])?)", re.IGNORECASE)
_STARS = re.compile(r"^\*(\w+?)\s*/?\s*\*(\w+)$")
_BASES = re.compile(r"^([ACGT])\s*[/|]?\s*([ACGT])$", re.IGNORECASE)


def _gene_in_words(words: str, k: Knowledge) -> str | None:
    found = [g for g in k.genes if re.search(rf"(?<![A-Za-z0-9]){re.escape(g)}(?![A-Za-z0-9])", words, re.IGNORECASE)]
    return found[0] if len(found) == 1 else None


def _gene_from_component(obs: dict[str, Any], k: Knowledge) -> str | None:
    code = k.genomics.codes["gene_studied"]
    by_hgnc = {g.gene.hgnc: s for s, g in k.genes.items()}
    for comp in obs.get("component", []) or []:
        if any(c.get("code") == code for c in codings(comp.get("code"))):
            value = comp.get("valueCodeableConcept")
            for c in codings(value):
                if c.get("code") in by_hgnc:
                    return by_hgnc[c["code"]]
            return _gene_in_words(concept_text(value), k)
    return None


def _component_value(obs: dict[str, Any], code: str) -> Any:
    for comp in obs.get("component", []) or []:
        if any(c.get("code") == code for c in codings(comp.get("code"))):
            for key, value in comp.items():
                if key.startswith("value"):
                    return value
    return None


def _value_text(obs: dict[str, Any]) -> str:
    if isinstance(obs.get("valueString"), str):
        return obs["valueString"]
    value = obs.get("valueCodeableConcept")
    if isinstance(value, dict):
        if isinstance(value.get("text"), str) and value["text"].strip():
            return value["text"]
        for c in codings(value):
            for key in ("display", "code"):
                if isinstance(c.get(key), str) and c[key].strip():
                    return c[key]
    return ""


def is_genotype(obs: dict[str, Any], k: Knowledge) -> bool:
    codes = {c.get("code") for c in codings(obs.get("code"))}
    if codes & {k.genomics.codes["genotype"], k.genomics.codes["variant"]}:
        return True
    if any(k.genotype_code(c.get("system"), c.get("code")) for c in codings(obs.get("code"))):
        return True
    words = concept_text(obs.get("code"))
    if _gene_in_words(words, k) or _RSID.search(words):
        return bool(_value_text(obs)) and obs.get("valueQuantity") is None
    return False


def orient(bases: tuple[str, str], variant: Variant, where: str, genomic: bool = False) -> tuple[str, str]:
    """Bases in gene orientation. `genomic` marks IG Variant alleles, which are + strand by definition."""
    bases = (bases[0].upper(), bases[1].upper())
    flipped = (bases[0].translate(_COMPLEMENT), bases[1].translate(_COMPLEMENT))
    fits, flip_fits = set(bases) <= variant.bases, set(flipped) <= variant.bases
    if genomic and variant.genomic_reference:
        table = dict(
            zip((variant.genomic_reference, *variant.genomic_alternates), (variant.reference, *variant.alternates), strict=True)
        )
        if set(bases) <= set(table):
            return table[bases[0]], table[bases[1]]
        raise ResourceError(where, f"alleles {'/'.join(bases)} are not the GRCh38 alleles of {variant.rsid} ({'/'.join(table)})")
    if fits and (not genomic or not flip_fits or sorted(bases) == sorted(flipped)):
        return bases
    if flip_fits and not fits:
        return flipped
    if fits and flip_fits:
        raise ResourceError(where, f"{variant.rsid} alleles {'/'.join(bases)} read differently on the two strands; give c.HGVS")
    raise ResourceError(
        where, f"{'/'.join(bases)} are not alleles of {variant.rsid} ({variant.reference}>{'/'.join(variant.alternates)})"
    )


def _variant_for(gene: str | None, rsid: str | None, hgvs_pos: str | None, k: Knowledge, where: str) -> tuple[str, Variant]:
    if rsid:
        found = k.variant(rsid)
        if found is None:
            raise ResourceError(where, f"{rsid} is not a variant labinterp interprets")
        if gene and found[0] != gene:
            raise ResourceError(where, f"{rsid} belongs to {found[0]}, not {gene}")
        return found
    if gene is None:
        raise ResourceError(where, "genotype names neither a gene labinterp knows nor an rsID")
    variants = k.genes[gene].variants
    if hgvs_pos:
        match = [v for v in variants if v.hgvs_c.startswith(f"c.{hgvs_pos}")]
        if len(match) == 1:
            return gene, match[0]
    if len(variants) == 1:
        return gene, variants[0]
    raise ResourceError(where, f"{gene} genotype does not say which variant ({', '.join(v.rsid for v in variants)})")


def parse_value(
    text: str, gene: str | None, k: Knowledge, where: str, context_rsid: str | None = None, context_hgvs: str | None = None
) -> tuple[str, tuple[str, str] | None, str | None, tuple[str, str] | None]:
    """(gene, stars, rsid, bases) from a genotype value such as "CYP3A5 *1/*3", "AG" or "rs1045642 C/T"."""
    rest = text.strip()
    if not rest:
        raise ResourceError(where, "genotype value is empty")
    named = _gene_in_words(rest, k)
    if named:
        if gene and named != gene:
            raise ResourceError(where, f"value names {named} but the Observation is about {gene}")
        gene = named
        rest = re.sub(rf"(?i)(?<![A-Za-z0-9]){re.escape(named)}(?![A-Za-z0-9])", " ", rest)
    rsid = context_rsid
    if m := _RSID.search(rest):
        rsid = m.group(0).lower()
        rest = rest.replace(m.group(0), " ")
    hgvs_pos = None
    source_for_hgvs = context_hgvs or ""
    if m := _HGVS_C.search(rest):
        source_for_hgvs = m.group(0)
        rest = rest.replace(m.group(0), " ")
    if hm := _HGVS_C.search(source_for_hgvs):
        hgvs_pos = hm.group(1)
    rest = re.sub(r"(?i)\b(genotype|diplotype|result)\b[:=]?", " ", rest).strip(" :;,")
    rest = re.sub(r"\s+", " ", rest).strip()
    if m := _STARS.match(rest):
        if gene is None:
            raise ResourceError(where, f"star alleles {rest!r} without a gene")
        return gene, (f"*{m.group(1)}", f"*{m.group(2)}"), None, None
    if m := _BASES.match(rest):
        gene, variant = _variant_for(gene, rsid, hgvs_pos, k, where)
        return gene, None, variant.rsid, orient((m.group(1), m.group(2)), variant, where)
    raise ResourceError(where, f"cannot read genotype {text!r} (expected e.g. '*1/*3', 'AG', 'A/G' or 'rs1045642 C/T')")


def _variant_shape(obs: dict[str, Any], ref: SourceRef, k: Knowledge, where: str) -> GenotypeCall:
    codes, answers = k.genomics.codes, k.genomics.answers
    rsid_value = _component_value(obs, codes["variation_code"])
    rsid = None
    for c in codings(rsid_value):
        if isinstance(c.get("code"), str) and _RSID.fullmatch(c["code"]):
            rsid = c["code"].lower()
    hgvs = _component_value(obs, codes["hgvs_c"])
    hgvs_text = next((c.get("code") for c in codings(hgvs) if c.get("code")), None) if isinstance(hgvs, dict) else hgvs
    hgvs_match = _HGVS_C.search(hgvs_text) if isinstance(hgvs_text, str) else None
    gene, variant = _variant_for(_gene_from_component(obs, k), rsid, hgvs_match.group(1) if hgvs_match else None, k, where)
    present_codes = {c.get("code") for c in codings(obs.get("valueCodeableConcept"))}
    present_words = concept_text(obs.get("valueCodeableConcept")).strip().lower()
    state = {c.get("code") for c in codings(_component_value(obs, codes["allelic_state"]))}
    ref_allele, alt_allele = _component_value(obs, codes["ref_allele"]), _component_value(obs, codes["alt_allele"])
    if hgvs_match:  # c.HGVS is in gene orientation already
        ref_b, alt_b, genomic = hgvs_match.group(2).upper(), hgvs_match.group(3).upper().split("/")[0], False
    elif isinstance(ref_allele, str) and isinstance(alt_allele, str):
        ref_b, alt_b, genomic = ref_allele.upper(), alt_allele.upper(), True
    else:
        ref_b = alt_b = ""
        genomic = True
    absent = answers["present"] not in present_codes and present_words == "absent"
    if absent:
        if not variant.genomic_reference:
            raise ResourceError(where, f"'Absent' for {variant.rsid} cannot be read without knowing its GRCh38 reference allele")
        pair = (variant.genomic_reference, variant.genomic_reference)
        bases = orient(pair, variant, where, genomic=True)
    else:
        if answers["present"] not in present_codes and present_words != "present":
            raise ResourceError(f"{where} valueCodeableConcept", "a Variant must say Present (LA9633-4) or Absent")
        if answers["heterozygous"] in state:
            if ref_b and alt_b:
                pair = (ref_b, alt_b)
            elif len(variant.alternates) == 1:
                pair, genomic = (variant.reference, variant.alternates[0]), False
            else:
                raise ResourceError(where, f"heterozygous {variant.rsid} without ref/alt alleles: which alternate?")
        elif answers["homozygous"] in state:
            if not alt_b:
                raise ResourceError(where, f"homozygous {variant.rsid} without the alternate allele: cannot tell which base")
            pair = (alt_b, alt_b)
        else:
            raise ResourceError(
                f"{where} component", f"allelic state ({codes['allelic_state']}) heterozygous or homozygous is required"
            )
        bases = orient(pair, variant, where, genomic=genomic)
    raw = f"{variant.rsid} {'absent' if absent else ('heterozygous' if answers['heterozygous'] in state else 'homozygous')}"
    return GenotypeCall(
        gene=gene,
        source=ref,
        shape="ig-variant",
        raw=raw,
        status=str(obs.get("status")),
        rsid=variant.rsid,
        bases=bases,
        time=effective_time(obs, where),
    )


def extract_genotype(obs: dict[str, Any], ref: SourceRef, k: Knowledge) -> GenotypeCall:
    where = ref.reference
    codes = {c.get("code") for c in codings(obs.get("code"))}
    if k.genomics.codes["variant"] in codes:
        return _variant_shape(obs, ref, k, where)
    shape = "ig-genotype" if k.genomics.codes["genotype"] in codes else "plain"
    gene = _gene_from_component(obs, k)
    rsid = None
    site = next((g for c in codings(obs.get("code")) if (g := k.genotype_code(c.get("system"), c.get("code")))), None)
    if site:
        gene, rsid = site.gene, site.rsid or None
    words = concept_text(obs.get("code"))
    gene = gene or _gene_in_words(words, k)
    if rsid is None and (m := _RSID.search(words)):
        rsid = m.group(0).lower()
    hgvs = _HGVS_C.search(words)
    text = _value_text(obs)
    gene_found, stars, rsid, bases = parse_value(text, gene, k, f"{where} value", rsid, hgvs.group(0) if hgvs else None)
    return GenotypeCall(
        gene=gene_found,
        source=ref,
        shape=shape,
        raw=text,
        status=str(obs.get("status")),
        stars=stars,
        rsid=rsid,
        bases=bases,
        time=effective_time(obs, where),
    )
