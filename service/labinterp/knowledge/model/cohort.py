"""Typed, frozen models of cohort.toml. Unknown keys are rejected."""

from __future__ import annotations

import itertools
from typing import Literal

from pydantic import Field, model_validator

from labinterp.knowledge.model.base import Meta, Strict

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
