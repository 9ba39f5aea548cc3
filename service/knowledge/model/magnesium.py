"""Typed, frozen models of magnesium.toml. Unknown keys are rejected."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from service.knowledge.model.base import RISK_ORDER, Band, Meta, Risk, Strict, check_contiguous  # noqa: F401

# --- magnesium.toml ---------------------------------------------------------------------------


class MgGuidance(Strict):
    unstable: str
    symptomatic_severe: str
    non_emergent: str
    oral_outpatient: str
    children: str
    recheck: str
    source: str


class MgUnitEdges(Strict):
    """The band edges in another unit the source writes (UCUM code), compared in that unit."""

    unit: str
    edges: tuple[float, ...]
    derivation: str
    source: str

    @model_validator(mode="after")
    def _increasing(self) -> MgUnitEdges:
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError(f"unit_edges {self.unit!r}: edges must increase")
        return self


class MgPediatric(Strict):
    below_age_years: int = Field(gt=0)
    mg_per_kg_low: float = Field(gt=0)
    mg_per_kg_high: float = Field(gt=0)
    max_mg: float = Field(gt=0)
    not_adult: str
    weight_needed: str
    age_unknown: str
    source: str

    @model_validator(mode="after")
    def _ordered(self) -> MgPediatric:
        if self.mg_per_kg_low > self.mg_per_kg_high:
            raise ValueError("pediatric: mg_per_kg_low is above mg_per_kg_high")
        return self


class MgHyper(Strict):
    not_graded: str
    lab_critical: str
    no_repletion: str
    renal: str
    renal_unknown: str
    therapy_found: str
    therapy_none: str
    drug_keys: tuple[str, ...]
    names: tuple[str, ...]
    critical_flags: tuple[str, ...]
    source: str


class MgRenal(Strict):
    threshold: float
    dose_reduction: float = Field(gt=0, lt=1)
    text: str
    unknown_text: str
    source: str


class ElectrolyteDefault(Strict):
    """A default reference limit, in the analyte's canonical unit, used when the Observation gives none."""

    low: float | None = None
    high: float | None = None
    unit: str
    source: str = Field(min_length=1)


class MgElectrolytes(Strict):
    hypocalcemia_text: str
    hypokalemia_text: str
    check_potassium_text: str
    check_calcium_text: str
    hyperkalemia_text: str
    hypercalcemia_text: str
    source: str
    defaults: dict[Literal["potassium", "calcium_total", "calcium_ionized"], ElectrolyteDefault] = Field(default_factory=dict)


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
    aggravating: tuple[Literal["digoxin", "hypokalemia", "hypocalcemia"], ...] = ("digoxin", "hypokalemia")
    text: str
    source: str


class Digoxin(Strict):
    atc_prefixes: tuple[str, ...]
    text: str
    source: str


class MagnesiumFile(Strict):
    meta: Meta
    bands: tuple[Band, ...]
    unit_edges: tuple[MgUnitEdges, ...] = ()
    guidance: MgGuidance
    pediatric: MgPediatric
    hypermagnesemia: MgHyper
    renal: MgRenal
    electrolytes: MgElectrolytes
    femg: Femg
    arrhythmia: Arrhythmia
    digoxin: Digoxin

    @model_validator(mode="after")
    def _check(self) -> MagnesiumFile:
        check_contiguous(self.bands, "bands", ("severe_hypomagnesemia", "hypomagnesemia", "normal", "hypermagnesemia"))
        for u in self.unit_edges:
            if len(u.edges) != len(self.bands) - 1:
                raise ValueError(f"unit_edges {u.unit!r}: {len(u.edges)} edges for {len(self.bands)} bands")
        return self
