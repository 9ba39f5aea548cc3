"""Genotype Observations in the shapes laboratories send, to GenotypeCall.

Shapes:
- Genomics Reporting IG Genotype (LOINC 84413-4) with a gene component, value text "CYP3A5 *1/*3"; or, with
  no gene named, an rs-number value ("rs776746 A/G", "rs1057868 TT"): the gene comes from the rsID (mappings/pgx);
- IG Variant (69548-6) with an rsID component, allelic state and optionally ref/alt alleles or c.HGVS,
  the reference assembly (62374-4) and the genomic reference sequence (48013-7, a RefSeq NC_ accession);
- plain Observations naming a gene or rsID, whose value is "*1/*3", "AG", "A/G" or "rs1045642 C/T"; and plain
  Observations under a generic code ("Genotype") whose value names a gene or an rsID labinterp interprets.
IG-coded Observations about other genes or variants (a gene-studied component naming another gene, an
rsID labinterp does not interpret) are not labinterp's: skipped, like any other Observation it does not read.

Bases are read in gene (c.) orientation, as laboratories and the linezolid cohort paper write them. A reading on the other
strand is accepted only where it cannot be confused: the complement of the bases fits the SNP and the
bases as written do not.

IG Variant ref/alt alleles are genomic (+ strand of the stated assembly), never guessed:
- where mappings/pgx holds the SNP's verified alleles on the stated assembly (rs776746 on GRCh38), the
  alleles must be those (the ref allele that assembly's reference base; the position, when given, its
  position) and are turned to gene orientation by the verified strand;
- otherwise the letters are read by the unambiguous-complement rule: the letters of a SNP that is not
  A/T or C/G tell the strand by themselves on any assembly; an ambiguous complement is unclassifiable;
- "Absent" (homozygous for the reference allele) needs the reference base of the stated assembly from
  the verified table: with no assembly, or one whose alleles are not verified, it is unclassifiable.
Every such case raises ResourceError: the Observation is left out and listed with its reason.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from labinterp.errors import ResourceError
from labinterp.extract.facts import GenotypeCall, SourceRef
from labinterp.extract.observations import codings, concept_text, effective_time
from labinterp.knowledge import Knowledge
from labinterp.knowledge.model import GenomicAlleles, GenotypeCode, Variant

_COMPLEMENT = str.maketrans("ACGT", "TGCA")
_RSID = re.compile(r"\brs\d+\b", re.IGNORECASE)
_HGVS_C = re.compile(r"(?:[A-Z]{2}_\d+(?:\.\d+)?:)?c\.(\d+)([ACGT])>([ACGT](?:/[ACGT])?)", re.IGNORECASE)
_STARS = re.compile(r"^\*(\w+?)\s*/?\s*\*(\w+)$")
_BASES = re.compile(r"^([ACGT])\s*[/|;]?\s*([ACGT])$", re.IGNORECASE)
_GENERIC = re.compile(r"\b(genotyp\w*|diplotypes?|pharmacogen\w*)\b", re.IGNORECASE)  # a code naming no gene
_ASSEMBLY = re.compile(r"^\s*GRCh(3[78])(?:\.p\d+)?\s*$", re.IGNORECASE)
_ACCESSION = re.compile(r"^NC_\d+\.\d+$")
_FILLER = re.compile(r"(?i)\b(genotype|diplotype|result)\b")
_PUNCTUATION = re.compile(r"[()\[\]=:,]")
_SPACES = re.compile(r"\s+")


@lru_cache(maxsize=1024)
def _word_pattern(word: str) -> re.Pattern[str]:
    """`word` as a whole word (not inside a longer run of letters and digits), any case; compiled once."""
    return re.compile(rf"(?<![A-Za-z0-9]){re.escape(word)}(?![A-Za-z0-9])", re.IGNORECASE)


def _gene_in_words(words: str, k: Knowledge) -> str | None:
    key = ("gene_in_words", words)
    hit = k.memo(key)
    if hit is None:
        found = [g for g in k.genes if _word_pattern(g).search(words)]
        hit = k.remember(key, (found[0] if len(found) == 1 else None,))
    return hit[0]


def _gene_from_component(obs: dict[str, Any], k: Knowledge) -> str | None:
    code = k.genomics.codes["gene_studied"]
    components = obs.get("component", []) or []
    if not components:
        return None
    by_hgnc: dict[str, str] | None = k.memo("genes_by_hgnc")
    if by_hgnc is None:
        by_hgnc = k.remember("genes_by_hgnc", {g.gene.hgnc: s for s, g in k.genes.items()})
    for comp in components:
        if any(c.get("code") == code for c in codings(comp.get("code"))):
            value = comp.get("valueCodeableConcept")
            for c in codings(value):
                if c.get("code") in by_hgnc:
                    return by_hgnc[c["code"]]
            return _gene_in_words(concept_text(value), k)
    return None


def _has_component(obs: dict[str, Any], code: str) -> bool:
    return any(any(c.get("code") == code for c in codings(comp.get("code"))) for comp in obs.get("component", []) or [])


def _names_ours(text: str, k: Knowledge) -> bool:
    """The text names a gene, or an rsID, that labinterp interprets."""
    return bool(_gene_in_words(text, k)) or any(k.variant(rs) for rs in _RSID.findall(text))


def _about_ours(obs: dict[str, Any], k: Knowledge) -> bool:
    """An IG Genotype or Variant about a gene or variant labinterp interprets, or naming neither gene nor rsID
    (then it is read, and reported if it cannot be). One about another gene or variant is not labinterp's."""
    if _gene_from_component(obs, k):
        return True
    rsids = [
        c["code"] for c in codings(_component_value(obs, k.genomics.codes["variation_code"])) if isinstance(c.get("code"), str)
    ]
    rsids = [r for r in rsids if _RSID.fullmatch(r)] + _RSID.findall(_value_text(obs))
    if any(k.variant(r) for r in rsids) or _names_ours(_value_text(obs), k) or _names_ours(concept_text(obs.get("code")), k):
        return True
    return not rsids and not _has_component(obs, k.genomics.codes["gene_studied"])


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


def _genotype_code(system: Any, code: Any, k: Knowledge) -> GenotypeCode | None:
    """k.genotype_code, answered from a dict made once per Knowledge (genotype_codes.csv: the first row wins)."""
    index: dict[tuple[str, str], GenotypeCode] | None = k.memo("genotype_code_index")
    if index is None:
        index = {}
        for g in k.genotype_codes:
            index.setdefault((g.system, g.code), g)
        k.remember("genotype_code_index", index)
    if not isinstance(system, str) or not isinstance(code, str):
        return k.genotype_code(system, code)  # an odd shape: the one lookup decides
    return index.get((system, code))


def is_genotype(obs: dict[str, Any], k: Knowledge) -> bool:
    code = obs.get("code")
    cs = codings(code)
    gcodes = k.genomics.codes
    if {c.get("code") for c in cs} & {gcodes["genotype"], gcodes["variant"]}:
        return _about_ours(obs, k)
    if any(_genotype_code(c.get("system"), c.get("code"), k) for c in cs):
        return True
    value = _value_text(obs)
    if not value or obs.get("valueQuantity") is not None:
        return False
    words = concept_text(code)
    if _gene_in_words(words, k) or _RSID.search(words):
        return True
    # a generic code ("Genotype", a site's "PGx genotype") naming no gene: used when its value names one of ours
    return bool(_GENERIC.search(words)) and _names_ours(value, k)


def orient(bases: tuple[str, str], variant: Variant, where: str, genomic: bool = False) -> tuple[str, str]:
    """Bases in gene orientation. `genomic` marks + strand alleles of an assembly whose alleles for this SNP are
    not in the verified table: read only where the two strands cannot be confused."""
    bases = (bases[0].upper(), bases[1].upper())
    flipped = (bases[0].translate(_COMPLEMENT), bases[1].translate(_COMPLEMENT))
    fits, flip_fits = set(bases) <= variant.bases, set(flipped) <= variant.bases
    if fits and (not genomic or not flip_fits or sorted(bases) == sorted(flipped)):
        return bases
    if flip_fits and not fits:
        return flipped
    if fits and flip_fits:
        raise ResourceError(
            where,
            f"{variant.rsid} alleles {'/'.join(bases)} read differently on the two strands (an A/T or C/G complement); give c.HGVS",
        )
    raise ResourceError(
        where, f"{'/'.join(bases)} are not alleles of {variant.rsid} ({variant.reference}>{'/'.join(variant.alternates)})"
    )


def _on_assembly(bases: tuple[str, str], table: GenomicAlleles, variant: Variant, assembly: str, where: str) -> tuple[str, str]:
    """+ strand alleles of an assembly whose alleles for this SNP are verified, in gene orientation."""
    bases = (bases[0].upper(), bases[1].upper())
    if not set(bases) <= set(table.bases):
        raise ResourceError(
            where, f"alleles {'/'.join(bases)} are not the {assembly} alleles of {variant.rsid} ({'/'.join(table.bases)})"
        )
    return table.to_gene(bases[0]), table.to_gene(bases[1])


def _assembly(obs: dict[str, Any], k: Knowledge, where: str) -> tuple[str | None, str]:
    """(the reference assembly, "GRCh37" | "GRCh38" or None, and what the Observation said about it) from the
    assembly component (62374-4) or the RefSeq accession's version (48013-7) where mappings/pgx verifies it."""
    codes, answers = k.genomics.codes, k.genomics.answers
    by_answer = {answers.get("grch38"): "GRCh38", answers.get("grch37"): "GRCh37"}
    named: str | None = None
    said = ""
    value = _component_value(obs, codes.get("assembly", ""))
    if value is not None:
        texts = [value] if isinstance(value, str) else [value.get("text")] if isinstance(value, dict) else []
        for c in codings(value):
            if c.get("code") in by_answer:
                named = by_answer[c["code"]]
            texts += [c.get("code"), c.get("display")]
        for text in texts:
            if named is None and isinstance(text, str) and (m := _ASSEMBLY.match(text)):
                named = f"GRCh{m.group(1)}"
        said = named or next((t for t in texts if isinstance(t, str) and t.strip()), "?")
    seq = _component_value(obs, codes.get("genomic_ref_seq", ""))
    accession = (
        next((c.get("code") for c in codings(seq) if isinstance(c.get("code"), str)), None) if isinstance(seq, dict) else seq
    )
    if isinstance(accession, str) and _ACCESSION.match(accession.strip()):
        known = {t.accession: a for g in k.genes.values() for v in g.variants for a, t in v.genomic.items() if t.accession}
        by_accession = known.get(accession.strip())
        if by_accession and named and by_accession != named:
            raise ResourceError(
                f"{where} component",
                f"reference assembly {named} contradicts the reference sequence {accession} ({by_accession})",
            )
        named = named or by_accession
        said = said or accession.strip()
    return named, said


def _check_position(
    obs: dict[str, Any], table: GenomicAlleles, variant: Variant, assembly: str, k: Knowledge, where: str
) -> None:
    """The allele's start, when given, must be the SNP's verified position on the assembly."""
    codes, answers = k.genomics.codes, k.genomics.answers
    rng = _component_value(obs, codes.get("allele_start_end", ""))
    low = (rng.get("low") or {}).get("value") if isinstance(rng, dict) else None
    if table.position is None or not isinstance(low, int | float):
        return
    system = {c.get("code") for c in codings(_component_value(obs, codes.get("coordinate_system", "")))}
    position = int(low) + (1 if answers.get("zero_based") in system else 0)
    if position != table.position:
        raise ResourceError(
            f"{where} component", f"position {position} is not {variant.rsid} on {assembly} ({table.position}, 1-based)"
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
        rest = _word_pattern(named).sub(" ", rest)
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
    rest = _FILLER.sub(" ", rest)
    rest = _PUNCTUATION.sub(" ", rest).strip(" ;")
    rest = _SPACES.sub(" ", rest).strip()
    if m := _STARS.match(rest):
        if gene is None:
            raise ResourceError(where, f"star alleles {rest!r} without a gene")
        stars = (f"*{m.group(1)}", f"*{m.group(2)}")
        unknown = [s for s in stars if gene in k.genes and s not in k.genes[gene].alleles]
        if unknown:  # "*banana/*42": left out and listed, not passed on as a diplotype no rule can classify
            raise ResourceError(where, f"{'/'.join(unknown)} is not a {gene} star allele labinterp knows (mappings/pgx)")
        return gene, stars, None, None
    if m := _BASES.match(rest):
        gene, variant = _variant_for(gene, rsid, hgvs_pos, k, where)
        return gene, None, variant.rsid, orient((m.group(1), m.group(2)), variant, where)
    raise ResourceError(where, f"cannot read genotype {text!r} (expected e.g. '*1/*3', 'AG', 'A/G' or 'rs1045642 C/T')")


def _variant_shape(obs: dict[str, Any], ref: SourceRef, k: Knowledge, where: str) -> GenotypeCall:
    """A Genomics Reporting IG Variant: which variant (rsID or c.HGVS), on which assembly, present or absent,
    heterozygous or homozygous; the bases in gene orientation."""
    codes, answers = k.genomics.codes, k.genomics.answers
    gene, variant, hgvs_match = _which_variant(obs, k, where)
    assembly, said = _assembly(obs, k, where)
    table = next((t for a, t in variant.genomic.items() if a == assembly), None)
    if table is not None and assembly:
        _check_position(obs, table, variant, assembly, k, where)
    present_codes = {c.get("code") for c in codings(obs.get("valueCodeableConcept"))}
    present_words = concept_text(obs.get("valueCodeableConcept")).strip().lower()
    state = {c.get("code") for c in codings(_component_value(obs, codes["allelic_state"]))}
    ref_b, alt_b, genomic = _stated_alleles(obs, k, hgvs_match, variant, where)
    if genomic and table is not None and ref_b and ref_b != table.reference:
        raise ResourceError(
            f"{where} component",
            f"ref allele {ref_b} is not the {assembly} reference allele of {variant.rsid} ({table.reference})",
        )
    absent = answers["present"] not in present_codes and present_words == "absent"
    if absent:  # homozygous for the reference allele of the stated assembly
        if table is None:
            why = (
                f"'Absent' for {variant.rsid} on {said}: labinterp has no verified {said} reference allele for it (mappings/pgx)"
                if said
                else f"'Absent' for {variant.rsid} means homozygous for the reference allele, which depends on the reference "
                f"assembly, and none is given (component {codes.get('assembly')} or a RefSeq NC_ accession)"
            )
            raise ResourceError(where, f"{why}: unclassifiable")
        bases = _on_assembly((table.reference, table.reference), table, variant, str(assembly), where)
    else:
        if answers["present"] not in present_codes and present_words != "present":
            raise ResourceError(f"{where} valueCodeableConcept", "a Variant must say Present (LA9633-4) or Absent")
        pair, genomic = _present_pair(state, ref_b, alt_b, genomic, variant, k, where)
        if genomic and table is not None:
            bases = _on_assembly(pair, table, variant, str(assembly), where)
        else:
            bases = orient(pair, variant, where, genomic=genomic)
    raw = f"{variant.rsid} {'absent' if absent else ('heterozygous' if answers['heterozygous'] in state else 'homozygous')}"
    return GenotypeCall(
        gene=gene,
        source=ref,
        shape="ig-variant",
        raw=raw + (f" ({assembly})" if assembly else ""),
        status=str(obs.get("status")),
        rsid=variant.rsid,
        bases=bases,
        time=effective_time(obs, where),
        assembly=assembly,
    )


def _which_variant(obs: dict[str, Any], k: Knowledge, where: str) -> tuple[str, Variant, re.Match[str] | None]:
    """The gene and the variant the Observation names (by rsID, or by c.HGVS), with the c.HGVS match if any."""
    codes = k.genomics.codes
    rsid = None
    for c in codings(_component_value(obs, codes["variation_code"])):
        if isinstance(c.get("code"), str) and _RSID.fullmatch(c["code"]):
            rsid = c["code"].lower()
    hgvs = _component_value(obs, codes["hgvs_c"])
    hgvs_text = next((c.get("code") for c in codings(hgvs) if c.get("code")), None) if isinstance(hgvs, dict) else hgvs
    hgvs_match = _HGVS_C.search(hgvs_text) if isinstance(hgvs_text, str) else None
    gene, variant = _variant_for(_gene_from_component(obs, k), rsid, hgvs_match.group(1) if hgvs_match else None, k, where)
    return gene, variant, hgvs_match


def _stated_alleles(
    obs: dict[str, Any], k: Knowledge, hgvs_match: re.Match[str] | None, variant: Variant, where: str
) -> tuple[str, str, bool]:
    """The reference and alternate bases the Observation states, and whether they are genomic (on the assembly's
    strand) rather than in gene orientation, as a c.HGVS is."""
    codes = k.genomics.codes
    ref_allele, alt_allele = _component_value(obs, codes["ref_allele"]), _component_value(obs, codes["alt_allele"])
    ref_b = ref_allele.strip().upper() if isinstance(ref_allele, str) else ""
    alt_b = alt_allele.strip().upper() if isinstance(alt_allele, str) else ""
    if hgvs_match:  # c.HGVS is in gene orientation already
        return hgvs_match.group(2).upper(), hgvs_match.group(3).upper().split("/")[0], False
    if ref_b and alt_b and ref_b == alt_b:
        raise ResourceError(f"{where} component", f"{variant.rsid}: ref and alt alleles are both {ref_b}")
    return ref_b, alt_b, True


def _present_pair(
    state: set[Any], ref_b: str, alt_b: str, genomic: bool, variant: Variant, k: Knowledge, where: str
) -> tuple[tuple[str, str], bool]:
    """The two bases of a present variant from its allelic state; whether they are still genomic."""
    codes, answers = k.genomics.codes, k.genomics.answers
    if answers["heterozygous"] in state:
        if ref_b and alt_b:
            return (ref_b, alt_b), genomic
        if len(variant.alternates) == 1:
            return (variant.reference, variant.alternates[0]), False
        raise ResourceError(where, f"heterozygous {variant.rsid} without ref/alt alleles: which alternate?")
    if answers["homozygous"] in state:
        if not alt_b:
            raise ResourceError(where, f"homozygous {variant.rsid} without the alternate allele: cannot tell which base")
        return (alt_b, alt_b), genomic
    raise ResourceError(f"{where} component", f"allelic state ({codes['allelic_state']}) heterozygous or homozygous is required")


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
    assembly, _ = _assembly(obs, k, where)
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
        assembly=assembly,
    )
