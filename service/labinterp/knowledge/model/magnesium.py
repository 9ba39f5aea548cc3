"""Typed, frozen models of magnesium.toml. Unknown keys are rejected."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from labinterp.knowledge.model.base import Band, Meta, Risk, Strict, check_contiguous

# --- magnesium.toml ---------------------------------------------------------------------------


DoseKey = Literal["unstable", "symptomatic_severe", "non_emergent"]


def _needs(name: str, text: str, *keys: str) -> None:
    """A text must contain these placeholders (words the code places inside the sentence, not after it)."""
    for key in keys:
        if f"{{{key}}}" not in text:
            raise ValueError(f"{name}: needs the placeholder {{{key}}}")


def _check_template(name: str, text: str, **fields: object) -> None:
    """A text with {placeholders} must format with exactly the fields the code gives it."""
    try:
        text.format(**fields)
    except (KeyError, IndexError, ValueError) as e:
        raise ValueError(f"{name}: placeholders must be among {sorted(fields)} ({e})") from e


class MgGuidance(Strict):
    unstable: str
    symptomatic_severe: str
    non_emergent: str
    oral_outpatient: str
    children: str
    recheck: str
    source: str
    # grams of magnesium sulfate (low, high) written where the text says {dose}
    doses_g: dict[DoseKey, tuple[float, float]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _doses(self) -> MgGuidance:
        for key in ("unstable", "symptomatic_severe", "non_emergent", "oral_outpatient", "recheck"):
            text = getattr(self, key)
            if ("{dose}" in text) != (key in self.doses_g):
                raise ValueError(f"guidance.{key}: a text with {{dose}} needs doses_g.{key}, and doses_g.{key} needs {{dose}}")
            _check_template(f"guidance.{key}", text, dose="1-2 g")
        for key, (low, high) in self.doses_g.items():
            if not 0 < low <= high:
                raise ValueError(f"guidance.doses_g.{key}: needs 0 < low <= high")
        return self

    def text(self, key: str, dose: str = "") -> str:
        return str(getattr(self, key)).format(dose=dose)


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
    renal_unknown_on_record: str
    therapy_found: str
    therapy_none: str
    drug_keys: tuple[str, ...]
    names: tuple[str, ...]
    critical_flags: tuple[str, ...]
    source: str

    @model_validator(mode="after")
    def _templates(self) -> MgHyper:
        for name in ("renal_unknown", "renal_unknown_on_record"):
            _needs(f"hypermagnesemia.{name}", getattr(self, name), "why")
            _check_template(f"hypermagnesemia.{name}", getattr(self, name), why="x")
        return self


class MgRenal(Strict):
    threshold: float
    dose_reduction: float = Field(gt=0, lt=1)
    text: str
    unknown_text: str
    applied_text: str
    oral_reduced_text: str
    no_estimate_text: str
    child_text: str
    bound_text: str
    source: str

    @model_validator(mode="after")
    def _templates(self) -> MgRenal:
        numbers = {"threshold": 30.0, "percent": 50.0}
        _needs("renal.unknown_text", self.unknown_text, "why")
        _check_template("renal.unknown_text", self.unknown_text, why="x", **numbers)
        _check_template("renal.applied_text", self.applied_text, **numbers)
        _check_template("renal.oral_reduced_text", self.oral_reduced_text, **numbers)
        _check_template("renal.no_estimate_text", self.no_estimate_text, creatinine="x", why="x", **numbers)
        _check_template("renal.child_text", self.child_text, creatinine="x", why="x", **numbers)
        _check_template("renal.bound_text", self.bound_text, gate="x", **numbers)
        return self

    @property
    def percent(self) -> float:
        """The reduction as a percentage (50 for 0.5)."""
        return round(self.dose_reduction * 100, 6)


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
    max_age_hours: float = Field(gt=0)
    max_age_source: str = Field(min_length=1)
    max_after_hours: float = Field(gt=0)  # results up to this many hours after the sample count too
    max_after_source: str = Field(min_length=1)
    check_potassium_window_text: str
    check_calcium_window_text: str
    source: str
    defaults: dict[Literal["potassium", "calcium_total", "calcium_ionized"], ElectrolyteDefault] = Field(default_factory=dict)


class MgLaboratory(Strict):
    disagrees_text: str
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
    laboratory: MgLaboratory
    femg: Femg
    arrhythmia: Arrhythmia
    digoxin: Digoxin

    @model_validator(mode="after")
    def _check(self) -> MagnesiumFile:
        for name in ("check_potassium_window_text", "check_calcium_window_text"):
            _check_template(f"electrolytes.{name}", getattr(self.electrolytes, name), before=24.0, after=24.0)
        check_contiguous(self.bands, "bands", ("severe_hypomagnesemia", "hypomagnesemia", "normal", "hypermagnesemia"))
        for u in self.unit_edges:
            if len(u.edges) != len(self.bands) - 1:
                raise ValueError(f"unit_edges {u.unit!r}: {len(u.edges)} edges for {len(self.bands)} bands")
        return self
