"""Typed, frozen models of magnesium.toml. Unknown keys are rejected."""

from __future__ import annotations

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
        check_contiguous(self.bands, "bands", ("severe_hypomagnesemia", "hypomagnesemia", "normal", "hypermagnesemia"))
        return self
