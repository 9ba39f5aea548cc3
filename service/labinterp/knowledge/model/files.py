"""Typed, frozen models of ruleset.toml, units.toml and analytes.toml. Unknown keys are rejected."""

from __future__ import annotations

from pydantic import Field, model_validator

from labinterp.knowledge.model.base import Meta, Strict

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
    molar_concentration_to_mmol_per_l: dict[str, float] = Field(default_factory=dict)
    aliases: dict[str, str]

    @model_validator(mode="after")
    def _aliases_known(self) -> UnitsFile:
        for alias, target in self.aliases.items():
            if not target:
                raise ValueError(f"alias {alias!r} maps to nothing")
        for unit, factor in self.molar_concentration_to_mmol_per_l.items():
            if factor <= 0:
                raise ValueError(f"molar_concentration_to_mmol_per_l.{unit}: factor must be positive")
        return self


class Analyte(Strict):
    display: str
    canonical_unit: str
    mass_units: bool = False
    units: dict[str, float] = Field(default_factory=dict)
    # molar units convert through the molar mass (mmol/L x g/mol = mg/L); its source is required
    molar_mass_g_per_mol: float | None = Field(default=None, gt=0)
    molar_mass_source: str | None = None
    # recognition by name, on whole words ("word*" = words beginning with it); see analytes.toml
    name_match: tuple[str, ...] = ()
    name_require: tuple[str, ...] = ()  # with name_match: at least one of these words must also appear
    name_exclude: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _molar_mass_sourced(self) -> Analyte:
        if self.molar_mass_g_per_mol is not None:
            if not self.molar_mass_source:
                raise ValueError("molar_mass_g_per_mol needs molar_mass_source")
            if not self.mass_units:
                raise ValueError("molar_mass_g_per_mol needs mass_units = true (a mass-concentration canonical unit)")
        if self.name_require and not self.name_match:
            raise ValueError("name_require needs name_match")
        return self


class AnalytesFile(Strict):
    meta: Meta
    analytes: dict[str, Analyte]
