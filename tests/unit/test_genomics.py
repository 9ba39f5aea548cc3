"""Genomics (issue 7, points 12 and 5): IG Variant alleles read with their reference assembly, never guessed
(rs776746 on GRCh38: NC_000007.14:g.99672916T>C, terminology.md 2.5); rs-number genotypes under a generic
"Genotype" code resolved to their gene through mappings/pgx; every unusable genotype left out and named."""

from __future__ import annotations

from typing import Any

import pytest

from labinterp.knowledge import Knowledge
from tests.builders import LOINC, SCR, SITE, P
from tests.conftest import findings_of, record_of

GRCH38 = {"coding": [{"system": LOINC, "code": "LA26806-2", "display": "GRCh38"}]}
GRCH37 = {"coding": [{"system": LOINC, "code": "LA14029-5", "display": "GRCh37"}]}


def _component(code: str, **value: Any) -> dict[str, Any]:
    return {"code": {"coding": [{"system": LOINC, "code": code}]}, **value}


def variant(
    gene: str,
    rsid: str,
    state: str | None,
    ref: str | None = None,
    alt: str | None = None,
    *,
    present: bool = True,
    assembly: dict[str, Any] | None = None,
    accession: str | None = None,
    position: int | None = None,
    zero_based: bool = False,
) -> P:
    p = P("v", "male", "1960-01-01", "")
    p.variant(gene, rsid, state, ref=ref, alt=alt, present=present)
    comps = p.resources[-1]["component"]
    if assembly is not None:
        comps.append(_component("62374-4", valueCodeableConcept=assembly))
    if accession:
        comps.append(
            _component(
                "48013-7", valueCodeableConcept={"coding": [{"system": "http://www.ncbi.nlm.nih.gov/refseq", "code": accession}]}
            )
        )
    if position is not None:
        comps.append(_component("81254-5", valueRange={"low": {"value": position}}))
        code = "LA30100-4" if zero_based else "LA30102-0"
        comps.append(_component("92822-6", valueCodeableConcept={"coding": [{"system": LOINC, "code": code}]}))
    return p


# (label, builder arguments, expected gene-orientation bases and assembly, or the words of the problem)
VARIANTS: list[tuple[str, dict[str, Any], tuple[tuple[str, str], str | None] | str]] = [
    # terminology.md 2.8: GRCh38 REF T (*1) / ALT C (*3), gene orientation A/G
    ("het T/C on GRCh38", {"state": "het", "ref": "T", "alt": "C", "assembly": GRCH38}, (("A", "G"), "GRCh38")),
    ("hom C on GRCh38", {"state": "hom", "ref": "T", "alt": "C", "assembly": GRCH38}, (("G", "G"), "GRCh38")),
    ("Absent on GRCh38: homozygous T", {"state": None, "present": False, "assembly": GRCH38}, (("A", "A"), "GRCh38")),
    ("Absent, NC_000007.14 only", {"state": None, "present": False, "accession": "NC_000007.14"}, (("A", "A"), "GRCh38")),
    (
        "assembly as text GRCh38.p13",
        {"state": "hom", "alt": "C", "ref": "T", "assembly": {"text": "GRCh38.p13"}},
        (("G", "G"), "GRCh38"),
    ),
    (
        "position given, 1-based",
        {"state": "het", "ref": "T", "alt": "C", "assembly": GRCH38, "position": 99672916},
        (("A", "G"), "GRCh38"),
    ),
    (
        "position given, 0-based",
        {"state": "het", "ref": "T", "alt": "C", "assembly": GRCH38, "position": 99672915, "zero_based": True},
        (("A", "G"), "GRCh38"),
    ),
    # the letters of a SNP that is not A/T or C/G tell the strand on any assembly: read, assembly kept
    ("het T/C, no assembly", {"state": "het", "ref": "T", "alt": "C"}, (("A", "G"), None)),
    ("hom T on GRCh37", {"state": "hom", "ref": "C", "alt": "T", "assembly": GRCH37}, (("A", "A"), "GRCh37")),
    (
        "POR hom T, no table",
        {"gene": "POR", "rsid": "rs1057868", "state": "hom", "ref": "C", "alt": "T", "assembly": GRCH38},
        (("T", "T"), "GRCh38"),
    ),
    (
        "POR het G/A: the other strand",
        {"gene": "POR", "rsid": "rs1057868", "state": "het", "ref": "G", "alt": "A"},
        (("C", "T"), None),
    ),
    # the defects: a base that cannot be told from verified facts was guessed
    ("Absent, no assembly", {"state": None, "present": False}, "depends on the reference assembly, and none is given"),
    ("Absent on GRCh37", {"state": None, "present": False, "assembly": GRCH37}, "no verified GRCh37 reference allele for it"),
    ("Absent on hg19", {"state": None, "present": False, "assembly": {"text": "hg19"}}, "on hg19: labinterp has no verified"),
    (
        "ref C on GRCh38",
        {"state": "hom", "ref": "C", "alt": "T", "assembly": GRCH38},
        "ref allele C is not the GRCh38 reference allele of rs776746 (T)",
    ),
    (
        "gene letters as genomic",
        {"state": "hom", "ref": "T", "alt": "G", "assembly": GRCH38},
        "alleles G/G are not the GRCh38 alleles of rs776746 (T/C)",
    ),
    (
        "GRCh37 with a GRCh38 accession",
        {"state": "het", "ref": "T", "alt": "C", "assembly": GRCH37, "accession": "NC_000007.14"},
        "contradicts the reference sequence NC_000007.14 (GRCh38)",
    ),
    (
        "position of another SNP",
        {"state": "het", "ref": "T", "alt": "C", "assembly": GRCH38, "position": 99270539},
        "position 99270539 is not rs776746 on GRCh38 (99672916",
    ),
    ("ref equals alt", {"state": "hom", "ref": "T", "alt": "T", "assembly": GRCH38}, "ref and alt alleles are both T"),
    (
        "tri-allelic A/A, genomic",
        {"gene": "ABCB1", "rsid": "rs2032582", "state": "hom", "ref": "C", "alt": "A"},
        "A/T or C/G complement",
    ),
    (
        "POR Absent, no table",
        {"gene": "POR", "rsid": "rs1057868", "state": None, "present": False, "assembly": GRCH38},
        "no verified GRCh38 reference allele",
    ),
]


@pytest.mark.parametrize(("label", "args", "expected"), VARIANTS, ids=[v[0] for v in VARIANTS])
def test_variant_alleles_with_their_assembly(k: Knowledge, label: str, args: dict[str, Any], expected: Any) -> None:
    args = dict(args)
    gene, rsid, state = args.pop("gene", "CYP3A5"), args.pop("rsid", "rs776746"), args.pop("state")
    r = record_of(variant(gene, rsid, state, **args).bundle(), k)
    if isinstance(expected, str):
        assert not r.genotypes and len(r.problems) == 1, label
        assert expected in r.problems[0].what, r.problems[0].what
        assert r.problems[0].where.startswith("Observation/v-var")
    else:
        assert not r.problems, r.problems
        (call,) = r.genotypes
        assert (call.bases, call.assembly) == expected


def test_absent_on_grch38_is_cyp3a5_star1_star1_expresser(k: Knowledge) -> None:
    p = variant("CYP3A5", "rs776746", None, present=False, assembly=GRCH38)
    p.lab(SCR, 0.8, "mg/dL", "2026-01-15T08:00:00+01:00")
    f = findings_of(p.bundle(), k)
    assert f.pgx is not None
    g = f.pgx.genes["CYP3A5"]
    assert (g.stars, g.groups["CYP3A5"]) == (("*1", "*1"), "expresser")


def test_assembly_filled_for_genotype_shape(k: Knowledge) -> None:
    p = P("v2", "male", "1960-01-01", "")
    p.genotype("CYP3A5", "CYP3A5 *1/*3")
    p.resources[-1]["component"].append(_component("62374-4", valueCodeableConcept=GRCH37))
    (call,) = record_of(p.bundle(), k).genotypes
    assert (call.stars, call.assembly) == (("*1", "*3"), "GRCh37")  # star alleles do not depend on it


def test_genomic_table_is_checked(k: Knowledge) -> None:
    from pydantic import ValidationError

    from labinterp.knowledge.model import Variant

    good = k.variant("rs776746")
    assert good is not None
    data = good[1].model_dump()
    data["genomic"]["GRCh38"]["strand"] = "+"  # T/C on the gene's strand is not A/G
    with pytest.raises(ValidationError, match="are not rs776746's A/G in gene orientation"):
        Variant.model_validate(data)


# --- point 5: an rs-number genotype under a generic "Genotype" code ------------------------------------------

GENERIC_LOINC = {"coding": [{"system": LOINC, "code": "84413-4", "display": "Genotype display name"}]}

# (code of the Observation, value, expected (gene, rsid, bases) or None when not labinterp's, or a problem's words)
GENERIC: list[tuple[dict[str, Any], str, tuple[str, str, tuple[str, str]] | str | None]] = [
    ({"text": "Genotype"}, "rs776746 A/G", ("CYP3A5", "rs776746", ("A", "G"))),
    ({"text": "Genotype"}, "rs1057868 TT", ("POR", "rs1057868", ("T", "T"))),
    ({"text": "Genotype"}, "rs776746: AG", ("CYP3A5", "rs776746", ("A", "G"))),
    ({"text": "Genotype"}, "rs776746 (A;G)", ("CYP3A5", "rs776746", ("A", "G"))),
    ({"text": "Genotype"}, "rs35599367 C/T", ("CYP3A4", "rs35599367", ("C", "T"))),
    ({"text": "genotyping result"}, "rs1045642 T/T", ("ABCB1", "rs1045642", ("T", "T"))),
    ({"coding": [{"system": SITE, "code": "GT"}], "text": "PGx genotype"}, "rs776746 GG", ("CYP3A5", "rs776746", ("G", "G"))),
    (GENERIC_LOINC, "rs1057868 TT", ("POR", "rs1057868", ("T", "T"))),
    (GENERIC_LOINC, "rs776746 A/G", ("CYP3A5", "rs776746", ("A", "G"))),
    # neighbours: not labinterp's genes (skipped, as any Observation it does not read), and broken ones (named)
    ({"text": "Genotype"}, "rs4149056 T/C", None),
    ({"text": "Hemoglobin genotype"}, "HbAS", None),
    (GENERIC_LOINC, "rs4149056 T/C", None),
    ({"text": "Genotype"}, "rs776746 A/X", "cannot read genotype 'rs776746 A/X'"),
    ({"text": "Genotype"}, "rs776746 AC", "A/C are not alleles of rs776746"),
    ({"text": "Genotype"}, "CYP3A5 heterozygous", "cannot read genotype"),
    (GENERIC_LOINC, "*1/*3", "star alleles '*1/*3' without a gene"),
]


@pytest.mark.parametrize(("code", "value", "expected"), GENERIC)
def test_rs_number_under_a_generic_genotype_code(k: Knowledge, code: dict[str, Any], value: str, expected: Any) -> None:
    p = P("g", "female", "1970-01-01", "")
    p._obs("gen", code, "2025-11-03", valueString=value)
    p.lab(SCR, 0.8, "mg/dL", "2026-01-15T08:00:00+01:00")
    r = record_of(p.bundle(), k)
    assert len(r.measurements) == 1  # the patient's other data are read whatever the genotype is
    if expected is None:
        assert not r.genotypes and not r.problems
    elif isinstance(expected, str):
        assert not r.genotypes and len(r.problems) == 1 and expected in r.problems[0].what, r.problems
    else:
        assert not r.problems, r.problems
        (call,) = r.genotypes
        assert (call.gene, call.rsid, call.bases) == expected


def test_ig_observations_about_other_genes_are_not_labinterps(k: Knowledge) -> None:
    p = P("g2", "female", "1970-01-01", "")
    p.genotype("CYP3A5", "CYP3A5 *1/*3")
    p.resources[-1]["component"][0]["valueCodeableConcept"] = {
        "coding": [{"system": "http://www.genenames.org", "display": "SLCO1B1"}]
    }
    p.resources[-1]["valueCodeableConcept"] = {"text": "SLCO1B1 *1/*5"}
    p.variant("CYP3A5", "rs776746", "het", ref="T", alt="C")
    p.resources[-1]["component"] = [
        c for c in p.resources[-1]["component"] if c["code"]["coding"][0]["code"] != "48018-6"
    ]  # no gene named: the rsID tells
    p.resources[-1]["component"][0]["valueCodeableConcept"]["coding"][0]["code"] = "rs4149056"
    r = record_of(p.bundle(), k)
    assert not r.genotypes and not r.problems


def test_generic_genotype_feeds_the_cohort_groups(k: Knowledge) -> None:
    p = P("g3", "female", "1970-01-01", "")
    p._obs("gen", {"text": "Genotype"}, "2025-11-03", valueString="rs776746 A/G")
    p._obs("gen", {"text": "Genotype"}, "2025-11-03", valueString="rs1057868 TT")
    p.lab(SCR, 0.8, "mg/dL", "2026-01-15T08:00:00+01:00")
    f = findings_of(p.bundle(), k)
    assert f.pgx is not None
    assert f.pgx.group("CYP3A5") == "expresser" and f.pgx.group("POR*28") == "TT"
    assert f.pgx.genes["CYP3A5"].stars == ("*1", "*3") and f.pgx.genes["POR"].stars == ("*28", "*28")
