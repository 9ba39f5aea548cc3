"""Typed, frozen models of renal.toml. Unknown keys are rejected."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from labinterp.knowledge.model.base import Band, Meta, Strict, check_contiguous

# --- renal.toml -------------------------------------------------------------------------------


class RenalSettings(Strict):
    default_equation: Literal["ckd_epi_2021", "mdrd_idms"]
    minimum_age_years: int
    below_minimum_age: str = Field(min_length=1)  # why no estimate is given below minimum_age_years
    cockcroft_gault_weight: Literal["actual"]
    creatinine_max_age_days: float = Field(gt=0)
    creatinine_max_age_source: str = Field(min_length=1)


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
