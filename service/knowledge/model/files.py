"""Typed, frozen models of ruleset.toml, units.toml and analytes.toml. Unknown keys are rejected."""

from __future__ import annotations

from pydantic import Field, model_validator

from service.knowledge.model.base import RISK_ORDER, Band, Meta, Risk, Strict, check_contiguous  # noqa: F401

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
