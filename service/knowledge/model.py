"""Typed, frozen models of every mappings/ file. Unknown keys are rejected; cross-field rules
(contiguous bands, known risk levels) are checked here so that a bad file fails at load time."""

from __future__ import annotations

import itertools
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Risk = Literal["negligible", "low", "moderate", "high", "certain"]
RISK_ORDER: tuple[str, ...] = ("negligible", "low", "moderate", "high", "certain")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Meta(Strict):
    source: str = Field(min_length=1)
    version: str = Field(min_length=1)


class Band(Strict):
    """A half-open or closed interval [lower, upper] of a continuous value; either end may be open-ended."""

    name: str
    lower: float | None = None
    lower_closed: bool = True
    upper: float | None = None
    upper_closed: bool = False
    interpretation: str = ""
    snomed: str = ""
    text: str = ""
    source: str = ""
    risk: Risk | None = None
    probability: float | None = Field(default=None, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> Band:
        if self.lower is not None and self.upper is not None and self.lower >= self.upper:
            raise ValueError(f"band {self.name!r}: lower {self.lower} is not below upper {self.upper}")
        return self


def check_contiguous(bands: tuple[Band, ...], what: str) -> None:
    """Bands must cover the whole line in order: open below, open above, and each edge owned once."""
    if not bands:
        raise ValueError(f"{what}: no bands")
    if bands[0].lower is not None:
        raise ValueError(f"{what}: first band {bands[0].name!r} must have no lower bound")
    if bands[-1].upper is not None:
        raise ValueError(f"{what}: last band {bands[-1].name!r} must have no upper bound")
    for a, b in itertools.pairwise(bands):
        if a.upper is None or b.lower is None or a.upper != b.lower:
            raise ValueError(f"{what}: gap or overlap between {a.name!r} (upper {a.upper}) and {b.name!r} (lower {b.lower})")
        if a.upper_closed == b.lower_closed:
            raise ValueError(f"{what}: the edge {a.upper} between {a.name!r} and {b.name!r} must belong to exactly one band")


# --- ruleset.toml, units.toml, analytes.toml -------------------------------------------------


class RulesetInfo(Strict):
    name: str
    version: str
    history: tuple[str, ...]


class RulesetFile(Strict):
    meta: Meta
    ruleset: RulesetInfo


class UnitsFile(Strict):
    meta: Meta
    mass_concentration_to_mg_per_l: dict[str, float]
    aliases: dict[str, str]

    @model_validator(mode="after")
    def _aliases_known(self) -> UnitsFile:
        for alias, target in self.aliases.items():
            if not target:
                raise ValueError(f"alias {alias!r} maps to nothing")
        return self


class Analyte(Strict):
    display: str
    canonical_unit: str
    mass_units: bool = False
    units: dict[str, float] = Field(default_factory=dict)
    name_match: tuple[str, ...] = ()
    name_exclude: tuple[str, ...] = ()


class AnalytesFile(Strict):
    meta: Meta
    analytes: dict[str, Analyte]


# --- linezolid.toml ---------------------------------------------------------------------------


class Regimen(Strict):
    dose_mg: float = Field(gt=0)
    interval_h: float = Field(gt=0)
    source: str = ""

    @property
    def daily_mg(self) -> float:
        return self.dose_mg * 24.0 / self.interval_h

    def label(self) -> str:
        return f"{self.dose_mg:g} mg every {self.interval_h:g} h"


class Trough(Strict):
    hours_after_dose: float
    tolerance_min: float
    steady_state_h: float
    source: str


class Assay(Strict):
    loq_mg_per_l: float
    linearity_upper_mg_per_l: float
    imprecision: float = Field(ge=0, lt=1)
    source: str


class DoseSuggestion(Strict):
    target_mg_per_l: float = Field(gt=0)
    source: str
    regimens: tuple[Regimen, ...] = Field(min_length=1)


class Table2Row(Strict):
    factor: str
    group: str
    above: float
    within: float
    below: float
    p: float | None = None

    @model_validator(mode="after")
    def _sums(self) -> Table2Row:
        total = self.above + self.within + self.below
        if abs(total - 1.0) > 0.0051:  # the paper's rounding: rows sum to 99.9-100.1 %
            raise ValueError(f"{self.factor} {self.group}: shares sum to {total:.3f}, not 1")
        return self


class Cohort(Strict):
    n: int
    below: float
    within: float
    above: float
    name: str
    source: str
    table2: tuple[Table2Row, ...]


class Factor(Strict):
    factor: str
    group: str
    reference: str
    effect: Literal["underexposure", "none"]
    risk: Risk | None = None
    probability: float | None = Field(default=None, ge=0.0, le=1.0)
    odds_ratio: float
    ci95: tuple[float, float]
    p: float
    use_adjusted: bool = False  # quote the age-adjusted OR as the factor's relative risk
    odds_ratio_adjusted: float | None = None
    ci95_adjusted: tuple[float, float] | None = None
    p_adjusted: float | None = None
    note: str = ""
    source: str

    @model_validator(mode="after")
    def _risk_for_effect(self) -> Factor:
        if self.effect == "underexposure" and (self.risk is None or self.probability is None):
            raise ValueError(f"factor {self.factor} {self.group}: an underexposure factor needs risk and probability")
        lo, hi = self.ci95
        if not lo <= self.odds_ratio <= hi:
            raise ValueError(f"factor {self.factor} {self.group}: odds ratio {self.odds_ratio} outside its CI {self.ci95}")
        if self.use_adjusted and self.odds_ratio_adjusted is None:
            raise ValueError(f"factor {self.factor} {self.group}: use_adjusted needs odds_ratio_adjusted")
        return self

    @property
    def quoted_odds_ratio(self) -> float:
        return self.odds_ratio_adjusted if self.use_adjusted and self.odds_ratio_adjusted is not None else self.odds_ratio


class Underexposure(Strict):
    requires_factor: str
    baseline_risk: Risk
    baseline_probability: float = Field(ge=0.0, le=1.0)
    baseline_basis: str
    source: str


class Rifampicin(Strict):
    atc_prefixes: tuple[str, ...]
    minimum_risk: Risk
    text: str
    source: str


class Overexposure(Strict):
    age_source: str
    renal_egfr_below: float
    renal_risk: Risk
    renal_text: str
    renal_source: str
    age_bands: tuple[Band, ...]

    @model_validator(mode="after")
    def _bands(self) -> Overexposure:
        check_contiguous(self.age_bands, "overexposure.age_bands")
        for b in self.age_bands:
            if b.risk is None or b.probability is None:
                raise ValueError(f"overexposure.age_bands {b.name!r}: needs risk and probability")
        return self


class LinezolidFile(Strict):
    meta: Meta
    regimen: dict[Literal["standard"], Regimen]
    trough: Trough
    assay: Assay
    bands: tuple[Band, ...]
    dose_suggestion: DoseSuggestion
    cohort: Cohort
    factors: tuple[Factor, ...]
    underexposure: Underexposure
    rifampicin: Rifampicin
    overexposure: Overexposure

    @model_validator(mode="after")
    def _check(self) -> LinezolidFile:
        check_contiguous(self.bands, "bands")
        names = {b.name for b in self.bands}
        missing = {"not_quantifiable", "below", "within", "above", "above_linearity"} - names
        if missing:
            raise ValueError(f"bands: missing {sorted(missing)}")
        by_name = {b.name: b for b in self.bands}
        if by_name["not_quantifiable"].upper != self.assay.loq_mg_per_l:
            raise ValueError("bands: not_quantifiable must end at assay.loq_mg_per_l")
        if by_name["above_linearity"].lower != self.assay.linearity_upper_mg_per_l:
            raise ValueError("bands: above_linearity must start at assay.linearity_upper_mg_per_l")
        return self

    @property
    def standard_regimen(self) -> Regimen:
        return self.regimen["standard"]

    def band(self, name: str) -> Band:
        return next(b for b in self.bands if b.name == name)


# --- pgx/*.toml -------------------------------------------------------------------------------


class Gene(Strict):
    symbol: str
    hgnc: str = Field(pattern=r"^HGNC:\d+$")


class Variant(Strict):
    rsid: str = Field(pattern=r"^rs\d+$")
    label: str
    hgvs_c: str = ""
    reference: str = Field(pattern=r"^[ACGT]$")
    alternates: tuple[str, ...] = Field(min_length=1)
    star_reference: str = ""
    star_alternate: str = ""
    genomic_reference: str = ""
    genomic_alternates: tuple[str, ...] = ()

    @property
    def bases(self) -> frozenset[str]:
        return frozenset((self.reference, *self.alternates))


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


# --- renal.toml -------------------------------------------------------------------------------


class RenalSettings(Strict):
    default_equation: Literal["ckd_epi_2021", "mdrd_idms"]
    minimum_age_years: int
    cockcroft_gault_weight: Literal["actual"]


class CkdEpi2021(Strict):
    loinc: str
    display: str
    constant: float
    kappa_female: float
    kappa_male: float
    alpha_female: float
    alpha_male: float
    exponent_above: float
    age_base: float
    female_factor: float


class MdrdIdms(Strict):
    loinc: str
    display: str
    method_snomed: str
    method_display: str
    constant: float
    creatinine_exponent: float
    age_exponent: float
    female_factor: float


class CockcroftGault(Strict):
    loinc: str
    display: str
    age_offset: float
    divisor: float
    female_factor: float


class RenalFile(Strict):
    meta: Meta
    settings: RenalSettings
    ckd_epi_2021: CkdEpi2021
    mdrd_idms: MdrdIdms
    cockcroft_gault: CockcroftGault
    stages: tuple[Band, ...]

    @model_validator(mode="after")
    def _check(self) -> RenalFile:
        check_contiguous(self.stages, "stages")
        return self


# --- magnesium.toml ---------------------------------------------------------------------------


class MgGuidance(Strict):
    unstable: str
    symptomatic_severe: str
    non_emergent: str
    oral_outpatient: str
    children: str
    recheck: str
    source: str


class MgRenal(Strict):
    threshold: float
    dose_reduction: float = Field(gt=0, lt=1)
    text: str
    source: str


class MgElectrolytes(Strict):
    hypocalcemia_text: str
    hypokalemia_text: str
    check_potassium_text: str
    check_calcium_text: str
    source: str


class Femg(Strict):
    factor: float
    renal_wasting_above_percent: float
    normal_renal_egfr_min: float
    text: str
    source: str


class Arrhythmia(Strict):
    severe_risk: Risk
    mild_risk: Risk
    mild_with_aggravating_risk: Risk
    text: str
    source: str


class Digoxin(Strict):
    atc_prefixes: tuple[str, ...]
    text: str
    source: str


class MagnesiumFile(Strict):
    meta: Meta
    bands: tuple[Band, ...]
    guidance: MgGuidance
    renal: MgRenal
    electrolytes: MgElectrolytes
    femg: Femg
    arrhythmia: Arrhythmia
    digoxin: Digoxin

    @model_validator(mode="after")
    def _check(self) -> MagnesiumFile:
        check_contiguous(self.bands, "bands")
        names = {b.name for b in self.bands}
        if not {"severe_hypomagnesemia", "hypomagnesemia", "normal", "hypermagnesemia"} <= names:
            raise ValueError("bands: need severe_hypomagnesemia, hypomagnesemia, normal, hypermagnesemia")
        return self


# --- genomics.toml, output.toml ---------------------------------------------------------------


class GenomicsFile(Strict):
    meta: Meta
    codes: dict[str, str]
    answers: dict[str, str]
    profiles: dict[str, str]

    @model_validator(mode="after")
    def _needed(self) -> GenomicsFile:
        need = {"genotype", "variant", "gene_studied", "variation_code", "allelic_state", "ref_allele", "alt_allele", "hgvs_c"}
        if missing := need - set(self.codes):
            raise ValueError(f"codes: missing {sorted(missing)}")
        if missing := {"present", "heterozygous", "homozygous"} - set(self.answers):
            raise ValueError(f"answers: missing {sorted(missing)}")
        return self


class ReportKind(Strict):
    loinc: str
    loinc_display: str
    category: str
    category_display: str
    title: str


class Outcomes(Strict):
    underexposure_text: str
    overexposure_text: str
    arrhythmia_text: str


class ProvenanceCodes(Strict):
    activity: str
    activity_display: str
    entity_role: Literal["derivation", "revision", "quotation", "source", "removal"]
    agent_type: str
    agent_type_display: str
    reason: str
    reason_display: str


class OutputFile(Strict):
    meta: Meta
    systems: dict[str, str]
    interpretations: dict[str, str]
    reports: dict[str, ReportKind]
    outcomes: Outcomes
    risk_probability: dict[str, str]
    provenance: ProvenanceCodes

    @model_validator(mode="after")
    def _check(self) -> OutputFile:
        need = {
            "loinc",
            "snomed",
            "ucum",
            "hgnc",
            "interpretation",
            "observation_category",
            "diagnostic_service",
            "risk_probability",
            "content_identifier",
            "series_identifier",
            "device_identifier",
        }
        if missing := need - set(self.systems):
            raise ValueError(f"systems: missing {sorted(missing)}")
        if missing := {"linezolid", "magnesium", "renal", "genotype"} - set(self.reports):
            raise ValueError(f"reports: missing {sorted(missing)}")
        if unknown := set(self.risk_probability) - set(RISK_ORDER):
            raise ValueError(f"risk_probability: unknown codes {sorted(unknown)}")
        return self


# --- CSV rows ---------------------------------------------------------------------------------


class AnalyteCode(Strict):
    analyte: str
    system: str = Field(min_length=1)
    code: str = Field(min_length=1)
    display: str = ""
    status: str = ""
    source: str = Field(min_length=1)


class Drug(Strict):
    drug: str
    display: str
    atc: tuple[str, ...]
    rxnorm: tuple[str, ...]
    names: tuple[str, ...]
    source: str


class MgCause(Strict):
    cls: str
    display: str
    atc_prefix: tuple[str, ...]
    names: tuple[str, ...]
    source: str


class GenotypeCode(Strict):
    gene: str
    rsid: str = ""
    system: str = Field(min_length=1)
    code: str = Field(min_length=1)
    display: str = ""
    status: str = ""
    source: str = Field(min_length=1)


# --- cohort.toml ------------------------------------------------------------------------------


class Population(Strict):
    n: int = Field(gt=0)
    excluded_below_loq: int = Field(ge=0)
    sample_year: int
    trough_min: float = Field(gt=0)
    trough_max: float = Field(gt=0)
    age_trough_correlation: float = Field(ge=-1, le=1)
    age_quantiles: tuple[tuple[float, float], ...] = Field(min_length=2)
    creatinine_quantiles: tuple[tuple[float, float], ...] = Field(min_length=2)
    female_share: float = Field(ge=0, le=1)
    egfr_equation: Literal["ckd_epi_2021", "mdrd_idms"]
    egfr_exclude_below: float

    @model_validator(mode="after")
    def _quantiles(self) -> Population:
        for name in ("age_quantiles", "creatinine_quantiles"):
            q = getattr(self, name)
            if q[0][0] != 0.0 or q[-1][0] != 1.0 or any(a[0] >= b[0] or a[1] > b[1] for a, b in itertools.pairwise(q)):
                raise ValueError(f"{name}: shares must run 0..1 upward with values not decreasing")
        return self


class GenotypeFrequencies(Strict):
    gene: str
    frequencies: dict[str, float]

    @model_validator(mode="after")
    def _sum(self) -> GenotypeFrequencies:
        if abs(sum(self.frequencies.values()) - 1.0) > 0.0051:
            raise ValueError(f"{self.gene}: frequencies sum to {sum(self.frequencies.values()):.3f}")
        return self


class CohortFile(Strict):
    meta: Meta
    population: Population
    genotypes: dict[str, GenotypeFrequencies]
    abcb1_haplotypes: dict[str, float]

    @model_validator(mode="after")
    def _haplotypes(self) -> CohortFile:
        if abs(sum(self.abcb1_haplotypes.values()) - 1.0) > 0.0051:
            raise ValueError("abcb1_haplotypes: frequencies must sum to 1")
        if any(len(h) != 3 for h in self.abcb1_haplotypes):
            raise ValueError("abcb1_haplotypes: each haplotype names the c.1236, c.2677 and c.3435 bases")
        return self
