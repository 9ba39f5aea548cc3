"""Typed, frozen models of linezolid.toml. Unknown keys are rejected."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from labinterp.knowledge.model.base import Band, Meta, Risk, Strict, check_contiguous

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
    course_gap_h: float = Field(gt=0)
    course_gap_source: str
    regimen_gap_tolerance_h: float = Field(gt=0)
    missed_dose_factor: float = Field(gt=1)


class Comparators(Strict):
    low_side: tuple[str, ...]
    high_side: tuple[str, ...]
    may_be_risk: Risk
    source: str


class Measured(Strict):
    band: str
    underexposure: Risk
    overexposure: Risk


class Trend(Strict):
    rcv_factor: float = Field(gt=0)
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
    same_interval_only: bool
    far_below_mg_per_l: float = Field(gt=0)
    far_below_source: str
    check_first_text: str
    hold_text: str
    hold_linearity_text: str
    platelet_text: str
    safety_source: str
    interval_text: str
    mic_text: str
    mic_source: str
    child_text: str


class Counts(Strict):
    n: int = Field(gt=0)
    above: int = Field(ge=0)
    within: int = Field(ge=0)
    below: int = Field(ge=0)


class Table2Row(Strict):
    factor: str
    group: str
    above: float
    within: float
    below: float
    p: float | None = None
    counts: Counts

    @model_validator(mode="after")
    def _sums(self) -> Table2Row:
        total = self.above + self.within + self.below
        if abs(total - 1.0) > 0.0051:  # the paper's rounding: rows sum to 99.9-100.1 %
            raise ValueError(f"{self.factor} {self.group}: shares sum to {total:.3f}, not 1")
        c = self.counts
        if c.above + c.within + c.below != c.n:
            raise ValueError(f"{self.factor} {self.group}: counts do not add up to n = {c.n}")
        for side in ("above", "within", "below"):
            share = getattr(c, side) / c.n
            if abs(share - getattr(self, side)) > 0.0011:  # printed to 0.1 %, rows rounded to add up to 100 %
                raise ValueError(
                    f"{self.factor} {self.group}: {side} {getattr(c, side)}/{c.n} does not give {getattr(self, side)}"
                )
        return self


class Cohort(Strict):
    n: int
    age_min: int
    age_max: int
    below: float
    within: float
    above: float
    name: str
    source: str
    table2: tuple[Table2Row, ...]

    @model_validator(mode="after")
    def _counts(self) -> Cohort:
        by_factor: dict[str, list[Table2Row]] = {}
        for row in self.table2:
            by_factor.setdefault(row.factor, []).append(row)
        for factor, rows in by_factor.items():
            if sum(r.counts.n for r in rows) == self.n:  # a factor classifying every patient adds up to the cohort
                for side in ("above", "within", "below"):
                    total = sum(getattr(r.counts, side) for r in rows)
                    expected = round(getattr(self, side) * self.n)
                    if abs(total - expected) > 1:
                        raise ValueError(f"table2 {factor}: {side} counts add up to {total}, the cohort has {expected}")
        return self

    def row(self, factor: str, group: str) -> Table2Row | None:
        return next((r for r in self.table2 if r.factor == factor and r.group == group), None)


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
    comparators: Comparators
    measured: tuple[Measured, ...]
    trend: Trend
    dose_suggestion: DoseSuggestion
    cohort: Cohort
    factors: tuple[Factor, ...]
    underexposure: Underexposure
    rifampicin: Rifampicin
    overexposure: Overexposure

    @model_validator(mode="after")
    def _check(self) -> LinezolidFile:
        check_contiguous(self.bands, "bands", ("not_quantifiable", "below", "within", "above", "above_linearity"))
        by_name = {b.name: b for b in self.bands}
        if by_name["not_quantifiable"].upper != self.assay.loq_mg_per_l:
            raise ValueError("bands: not_quantifiable must end at assay.loq_mg_per_l")
        if by_name["above_linearity"].lower != self.assay.linearity_upper_mg_per_l:
            raise ValueError("bands: above_linearity must start at assay.linearity_upper_mg_per_l")
        sides = [*self.comparators.low_side, *self.comparators.high_side]
        if unknown := [b for b in [*sides, *(m.band for m in self.measured)] if b not in by_name]:
            raise ValueError(f"comparators / measured name unknown bands: {unknown}")
        if sorted(m.band for m in self.measured) != sorted(by_name):
            raise ValueError("measured: needs exactly one entry per band")
        return self

    def measured_risk(self, band: str) -> Measured:
        return next(m for m in self.measured if m.band == band)

    @property
    def standard_regimen(self) -> Regimen:
        return self.regimen["standard"]

    def band(self, name: str) -> Band:
        return next(b for b in self.bands if b.name == name)
