"""Pharmacogenetics (seed 000 section 2.3, Tables 1-3): every genotype row of Table 1 in each shape a
laboratory sends, the groups of Table 2, the odds ratios of Table 3, and broken genotype strings."""

from __future__ import annotations

import pytest

from labinterp.errors import ResourceError
from labinterp.extract.genotypes import parse_value
from labinterp.knowledge import Knowledge
from tests.builders import ATC, LZD, SCR, P
from tests.conftest import findings_of, record_of

# Table 1 rows: (gene, plain value, rsid in the code text, expected diplotype or bases, factor, group)
TABLE1 = [
    ("CYP3A5", "AA", "rs776746", ("*1", "*1"), "CYP3A5", "expresser"),
    ("CYP3A5", "AG", "rs776746", ("*1", "*3"), "CYP3A5", "expresser"),
    ("CYP3A5", "GG", "rs776746", ("*3", "*3"), "CYP3A5", "non-expresser"),
    ("CYP3A4", "CC", "rs35599367", ("*1", "*1"), "CYP3A4*22", "CC"),
    ("CYP3A4", "CT", "rs35599367", ("*1", "*22"), "CYP3A4*22", "CT+TT"),
    ("CYP3A4", "TT", "rs35599367", ("*22", "*22"), "CYP3A4*22", "CT+TT"),
    ("POR", "CC", "rs1057868", ("*1", "*1"), "POR*28", "CC+CT"),
    ("POR", "CT", "rs1057868", ("*1", "*28"), "POR*28", "CC+CT"),
    ("POR", "TT", "rs1057868", ("*28", "*28"), "POR*28", "TT"),
    ("ABCB1", "CC", "rs1045642", None, "ABCB1 c.3435C>T", "CC+CT"),
    ("ABCB1", "CT", "rs1045642", None, "ABCB1 c.3435C>T", "CC+CT"),
    ("ABCB1", "TT", "rs1045642", None, "ABCB1 c.3435C>T", "TT"),
]


@pytest.mark.parametrize(("gene", "value", "rsid", "stars", "factor", "group"), TABLE1)
def test_table1_rows_plain(
    k: Knowledge, gene: str, value: str, rsid: str, stars: tuple[str, str] | None, factor: str, group: str
) -> None:
    p = P("g1", "male", "1960-01-01", "")
    p.plain_genotype(f"{gene} {rsid} genotype", f"{value[0]}/{value[1]}")
    f = findings_of(p.bundle(), k)
    assert f.pgx is not None
    g = f.pgx.genes[gene]
    assert g.stars == stars
    assert g.groups[factor] == group


@pytest.mark.parametrize(
    ("text", "gene", "stars", "rsid", "bases"),
    [
        ("*1/*3", "CYP3A5", ("*1", "*3"), None, None),
        ("CYP3A5 *1/*3", None, ("*1", "*3"), None, None),
        ("*1*1", "POR", ("*1", "*1"), None, None),  # Table 1 writes "(*1*1)"
        ("AG", "CYP3A5", None, "rs776746", ("A", "G")),
        ("A/G", "CYP3A5", None, "rs776746", ("A", "G")),
        ("T/C", "CYP3A5", None, "rs776746", ("A", "G")),  # GRCh38 + strand: the complement, unambiguous
        ("rs1045642 C/T", None, None, "rs1045642", ("C", "T")),
        ("rs1045642 G/A", None, None, "rs1045642", ("C", "T")),  # other strand, unambiguous for C/T SNPs
        ("c.3435C>T TT", "ABCB1", None, "rs1045642", ("T", "T")),
        ("rs2032582 G/A", None, None, "rs2032582", ("G", "A")),  # tri-allelic: read as written (c. orientation)
    ],
)
def test_value_shapes(
    k: Knowledge, text: str, gene: str | None, stars: tuple[str, str] | None, rsid: str | None, bases: tuple[str, str] | None
) -> None:
    found_gene, found_stars, found_rsid, found_bases = parse_value(text, gene, k, "Observation/x value")
    assert found_stars == stars and found_rsid == rsid and found_bases == bases
    assert found_gene in k.genes


@pytest.mark.parametrize(
    ("text", "gene", "message"),
    [
        ("", "CYP3A5", "empty"),
        ("*1/", "CYP3A5", "cannot read genotype"),
        ("A/X", "CYP3A5", "cannot read genotype"),
        ("heterozygous", "CYP3A5", "cannot read genotype"),
        ("AC", "CYP3A5", "are not alleles of rs776746"),
        ("CT", "ABCB1", "does not say which variant"),
        ("rs999999 A/G", None, "not a variant labinterp interprets"),
        ("CYP3A4 *1/*22", "CYP3A5", "names CYP3A4 but the Observation is about CYP3A5"),
        ("*1/*3", None, "without a gene"),
    ],
)
def test_broken_genotype_strings(k: Knowledge, text: str, gene: str | None, message: str) -> None:
    with pytest.raises(ResourceError, match=message) as exc:
        parse_value(text, gene, k, "Observation/x value")
    assert exc.value.where == "Observation/x value"


def test_ig_genotype_and_variant_shapes(k: Knowledge) -> None:
    p = P("g2", "female", "1960-01-01", "")
    p.genotype("CYP3A4", "CYP3A4 *1/*22")
    p.variant("CYP3A5", "rs776746", "het", ref="T", alt="C")  # GRCh38 alleles: *1/*3
    p.variant("POR", "rs1057868", "hom", ref="C", alt="T")
    r = record_of(p.bundle(), k)
    shapes = {c.gene: (c.shape, c.stars, c.bases) for c in r.genotypes}
    assert shapes["CYP3A4"] == ("ig-genotype", ("*1", "*22"), None)
    assert shapes["CYP3A5"] == ("ig-variant", None, ("A", "G"))
    assert shapes["POR"] == ("ig-variant", None, ("T", "T"))


def test_ig_variant_needs_alleles_when_homozygous(k: Knowledge) -> None:
    p = P("g3", "female", "1960-01-01", "")
    p.variant("ABCB1", "rs1045642", "hom")
    r = record_of(p.bundle(), k)
    assert r.problems and "homozygous rs1045642 without the alternate allele" in r.problems[0].what
    q = P("g4", "female", "1960-01-01", "")
    q.variant("ABCB1", "rs1045642", None)
    assert "allelic state" in record_of(q.bundle(), k).problems[0].what


def test_abcb1_haplotype_rule(k: Knowledge) -> None:
    def haplo(b1236: str, b2677: str, b3435: str) -> tuple[str | None, str | None]:
        p = P("h", "male", "1960-01-01", "")
        p.plain_genotype("ABCB1 rs1128503", b1236)
        p.plain_genotype("ABCB1 rs2032582", b2677)
        p.plain_genotype("ABCB1 rs1045642", b3435)
        f = findings_of(p.bundle(), k)
        assert f.pgx is not None
        g = f.pgx.genes["ABCB1"]
        return g.haplotype, g.groups["ABCB1 haplotype"]

    assert haplo("CC", "GG", "CC") == ("CGC/CGC", "CGC/CGC + TTT carriers")
    assert haplo("CT", "GT", "CT") == ("TTT carrier", "CGC/CGC + TTT carriers")
    assert haplo("TT", "TT", "TT") == ("TTT/TTT", "TTT/TTT")
    assert haplo("CT", "GT", "TT") == (None, None)  # other diplotypes are unclassifiable
    assert haplo("TT", "TA", "TT") == (None, None)  # an A at c.2677


def test_cyp3a5_star_alleles_and_cpic_phenotypes(k: Knowledge) -> None:
    cases = {
        "*1/*1": ("Normal metabolizer", "expresser"),
        "*1/*3": ("Intermediate metabolizer", "expresser"),
        "*3/*3": ("Poor metabolizer", "non-expresser"),
        "*6/*7": ("Poor metabolizer", "non-expresser"),
        "*3/*6": ("Poor metabolizer", "non-expresser"),
        "*1/*8": ("Possible intermediate metabolizer", "expresser"),
        "*3/*8": (None, None),
    }
    for diplotype, (phenotype, group) in cases.items():
        p = P("c", "male", "1960-01-01", "")
        p.genotype("CYP3A5", f"CYP3A5 {diplotype}")
        f = findings_of(p.bundle(), k)
        assert f.pgx is not None
        g = f.pgx.genes["CYP3A5"]
        assert (g.phenotype.name if g.phenotype else None) == phenotype, diplotype
        assert g.groups["CYP3A5"] == group, diplotype


def test_conflicting_reports_are_not_used(k: Knowledge) -> None:
    p = P("c2", "male", "1960-01-01", "")
    p.genotype("CYP3A5", "CYP3A5 *1/*3")
    p.plain_genotype("CYP3A5 rs776746", "GG")
    f = findings_of(p.bundle(), k)
    assert f.pgx is not None and f.pgx.genes["CYP3A5"].groups["CYP3A5"] is None
    assert f.exposure is not None and f.exposure.under.risk is None


# --- exposure risk: Table 2 and 3 numbers --------------------------------------------------------


def risk_patient(*genotypes: tuple[str, str], birth: str = "1970-01-01", rifampicin: bool = False) -> P:
    """A patient with priors only: no trough, whose measurement would outrank them (issue 7 point 1)."""
    p = P("r", "female", birth, "")
    p.lab(SCR, 0.8, "mg/dL", "2026-01-15T08:00:00+01:00")  # the age is taken at this sample
    p.med("MedicationRequest", LZD, when="2026-01-14T09:00:00+01:00", dose_mg=600, every_h=12)  # on linezolid
    for code_text, value in genotypes:
        p.plain_genotype(code_text, value)
    if rifampicin:
        p.med("MedicationStatement", {"coding": [{"system": ATC, "code": "J04AB02"}]}, when="2026-01-01")
    return p


def test_expresser_high_underexposure_risk(site_k: Knowledge) -> None:
    f = findings_of(risk_patient(("CYP3A5 rs776746", "AG")).bundle(), site_k)
    u = f.exposure.under  # type: ignore[union-attr]
    assert (u.risk, u.probability) == ("high", 0.259)
    assert u.relative_risk == pytest.approx(0.259 / 0.068, rel=0.02)  # a relative risk from Table 2, not the OR 9.09
    text = " ".join(u.rationale)
    assert "9.09" in text and "2.32-32.25" in text and "5.88" in text and "1.47-23.08" in text


def test_por28_tt_high_with_age_adjusted_or(site_k: Knowledge) -> None:
    f = findings_of(risk_patient(("CYP3A5 rs776746", "GG"), ("POR rs1057868", "TT")).bundle(), site_k)
    u = f.exposure.under  # type: ignore[union-attr]
    assert (u.risk, u.probability) == ("high", 0.273)
    assert u.relative_risk == pytest.approx(0.273 / 0.084, rel=0.02)
    assert "8.28" in " ".join(u.rationale) and "1.36-50.28" in " ".join(u.rationale) and "4.6" in " ".join(u.rationale)


def test_non_expresser_low_baseline(site_k: Knowledge) -> None:
    f = findings_of(risk_patient(("CYP3A5 rs776746", "GG"), ("POR rs1057868", "CT")).bundle(), site_k)
    u = f.exposure.under  # type: ignore[union-attr]
    assert (u.risk, u.probability, u.relative_risk) == ("low", 0.068, None)


def test_missing_genotype_is_not_called_low(site_k: Knowledge) -> None:
    f = findings_of(risk_patient(("POR rs1057868", "CT")).bundle(), site_k)
    u = f.exposure.under  # type: ignore[union-attr]
    assert u.risk is None and any("could not be assessed from genotype" in r for r in u.rationale)


def test_rifampicin_raises_to_moderate_and_is_named(site_k: Knowledge) -> None:
    f = findings_of(risk_patient(("CYP3A5 rs776746", "GG"), rifampicin=True).bundle(), site_k)
    u = f.exposure.under  # type: ignore[union-attr]
    assert u.risk == "moderate" and u.probability is None and "rifampicin" in u.contributors
    assert any("-32 %" in r for r in u.rationale)
    g = findings_of(risk_patient(rifampicin=True).bundle(), site_k)
    assert g.exposure.under.risk == "moderate"  # type: ignore[union-attr]


def test_no_effect_genotypes_reported(site_k: Knowledge) -> None:
    f = findings_of(risk_patient(("CYP3A4 rs35599367", "CT"), ("ABCB1 rs1045642", "TT")).bundle(), site_k)
    text = " ".join(f.exposure.no_effect)  # type: ignore[union-attr]
    assert "CYP3A4*22 CT+TT: no known effect" in text and "OR 0.9 (95 % CI 0.23-3.6" in text
    assert "ABCB1 c.3435C>T TT: no known effect" in text and "OR 0.85" in text


@pytest.mark.parametrize(
    ("birth", "age", "risk", "probability"),
    [
        ("1961-01-15", 65, "moderate", 0.50),
        ("1961-01-16", 64, "low", 0.30),
        ("1945-01-15", 81, "high", 0.65),
        ("1945-01-16", 80, "moderate", 0.50),
    ],
)
def test_age_bands(site_k: Knowledge, birth: str, age: int, risk: str, probability: float) -> None:
    f = findings_of(risk_patient(birth=birth).bundle(), site_k)
    assert f.age == age
    o = f.exposure.over  # type: ignore[union-attr]
    assert (o.risk, o.probability) == (risk, probability)


def test_table2_rows_are_in_mappings(k: Knowledge) -> None:
    rows = {(r.factor, r.group): (r.above, r.within, r.below) for r in k.linezolid.cohort.table2}
    assert rows[("CYP3A5", "expresser")] == (0.556, 0.185, 0.259)
    assert rows[("CYP3A5", "non-expresser")] == (0.521, 0.411, 0.068)
    assert rows[("POR*28", "TT")] == (0.455, 0.273, 0.273)
    assert rows[("POR*28", "CC+CT")] == (0.531, 0.386, 0.084)
    assert rows[("CYP3A4*22", "CC")] == (0.543, 0.364, 0.093)
    assert rows[("CYP3A4*22", "CT+TT")] == (0.429, 0.464, 0.107)
    assert rows[("ABCB1 c.3435C>T", "CC+CT")] == (0.518, 0.383, 0.099)
    assert rows[("ABCB1 c.3435C>T", "TT")] == (0.551, 0.367, 0.082)
    assert rows[("ABCB1 haplotype", "CGC/CGC + TTT carriers")] == (0.537, 0.381, 0.082)
    assert rows[("ABCB1 haplotype", "TTT/TTT")] == (0.517, 0.379, 0.103)
