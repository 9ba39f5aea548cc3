"""Typed, frozen models of qc.toml (microsphere formulation QC: measures, codes, units, components),
qc_limits.toml (the laboratory's acceptance limits per product) and qc_models.toml (release-model reference
data). Unknown keys are rejected; checks that need two files (a limit's measure and unit) are the loader's."""

from __future__ import annotations

import math
import re
from typing import Literal

from pydantic import Field, model_validator

from labinterp.knowledge.model.base import Meta, Strict

# The components labinterp reads into a field of its own (extract/batch_facts.QcValue), with the unit that
# field is in: their keys are fixed, their codes and accepted units are qc.toml's.
CONDITION_UNITS: dict[str, str] = {
    "elapsed_time": "h",
    "storage_time": "d",
    "medium": "",
    "storage_condition": "",
    "temperature": "Cel",
    "dry_weight": "mg",
}
_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _check_factors(units: dict[str, float], what: str) -> None:
    for unit, factor in units.items():
        if not math.isfinite(factor) or factor <= 0:
            raise ValueError(f"{what}.{unit}: factor must be a positive number")


class QcSystem(Strict):
    url: str = Field(min_length=1)
    version: str = Field(min_length=1)


class QcRange(Strict):
    low_um: float = Field(gt=0)
    high_um: float = Field(gt=0)
    source: str = Field(min_length=1)

    @model_validator(mode="after")
    def _ordered(self) -> QcRange:
        if self.low_um >= self.high_um:
            raise ValueError(f"high_um: {self.high_um} is not above low_um {self.low_um}")
        return self


class QcReport(Strict):
    """A code labinterp writes: the report's, or a conclusion's."""

    code: str = Field(pattern=_CODE.pattern)
    display: str = Field(min_length=1)


CONCLUSIONS = ("released", "not_released", "incomplete")  # rules/qc.py's conclusions, spaces as underscores


class QcMeasure(Strict):
    """A measure: read from an Observation (quantity, particle count) or computed by labinterp (derived)."""

    code: str = Field(pattern=_CODE.pattern)
    display: str = Field(min_length=1)
    kind: Literal["quantity", "particle_count", "derived"] = "quantity"
    unit: str = Field(min_length=1)  # UCUM: the unit values are converted to
    units: dict[str, float] = Field(default_factory=dict)  # other accepted units: value_in_unit = value x factor
    alt_unit: str = ""  # a second family of units, kept apart (mg vs % w/w): converted to alt_unit, never mixed
    alt_units: dict[str, float] = Field(default_factory=dict)
    component: str = ""  # particle_count: the component carrying each particle's diameter
    signed: bool = False  # a negative value is a value (zeta potential), not an error
    conditions: tuple[str, ...] = ()  # components the value may carry (keys of CONDITION_UNITS)
    required: tuple[str, ...] = ()  # those it must carry
    source: str = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> QcMeasure:
        _check_factors(self.units, "units")
        _check_factors(self.alt_units, "alt_units")
        if self.alt_units and not self.alt_unit:
            raise ValueError("alt_units: needs alt_unit")
        if self.alt_unit and (self.alt_unit == self.unit or self.alt_unit in self.units):
            raise ValueError(f"alt_unit: {self.alt_unit!r} is already in the first family of units")
        if overlap := (set(self.units) | {self.unit}) & set(self.alt_units):
            raise ValueError(f"alt_units: {sorted(overlap)} also in units: a unit belongs to one family")
        if unknown := [c for c in self.conditions if c not in CONDITION_UNITS]:
            raise ValueError(f"conditions: unknown {unknown} (known: {sorted(CONDITION_UNITS)})")
        if extra := [c for c in self.required if c not in self.conditions]:
            raise ValueError(f"required: {extra} are not in conditions")
        if (self.kind == "particle_count") != bool(self.component):
            raise ValueError("component: a particle_count measure names its component, no other measure does")
        if self.kind == "derived" and (self.units or self.alt_unit or self.required):
            raise ValueError("kind: a derived measure is computed in its unit: no units, alt_unit or required")
        return self

    def factor(self, unit: str) -> tuple[str, float] | None:
        """(the unit a value in `unit` is converted to, the factor), or None when the unit is not accepted."""
        if unit == self.unit:
            return self.unit, 1.0
        if unit in self.units:
            return self.unit, self.units[unit]
        if self.alt_unit and unit == self.alt_unit:
            return self.alt_unit, 1.0
        if unit in self.alt_units:
            return self.alt_unit, self.alt_units[unit]
        return None

    @property
    def accepted(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([self.unit, *self.units, *([self.alt_unit] if self.alt_unit else []), *self.alt_units]))


class QcComponent(Strict):
    code: str = Field(pattern=_CODE.pattern)
    display: str = Field(min_length=1)
    kind: Literal["quantity", "text"]
    unit: str = ""
    units: dict[str, float] = Field(default_factory=dict)
    source: str = ""

    @model_validator(mode="after")
    def _check(self) -> QcComponent:
        _check_factors(self.units, "units")
        if self.kind == "quantity" and not self.unit:
            raise ValueError("unit: a quantity component needs a unit")
        if self.kind == "text" and (self.unit or self.units):
            raise ValueError("unit: a text component has no unit")
        return self

    def factor(self, unit: str) -> float | None:
        if unit == self.unit:
            return 1.0
        return self.units.get(unit)

    @property
    def accepted(self) -> tuple[str, ...]:
        return (self.unit, *self.units)


class QcQualitative(Strict):
    code: str = Field(pattern=_CODE.pattern)
    display: str = Field(min_length=1)
    source: str = Field(min_length=1)


class QcSiteCode(Strict):
    """A laboratory's own code for a measure, component or qualitative method (a site's overlay)."""

    system: str = Field(min_length=1)
    code: str = Field(min_length=1)
    key: str = Field(min_length=1)  # a key of [measures.*] (not derived), [components.*] or [qualitative.*]
    display: str = ""
    source: str = Field(min_length=1)


class QcFile(Strict):
    meta: Meta
    system: QcSystem
    microsphere_range: QcRange
    report: QcReport
    conclusions: dict[str, QcReport]  # the batch's conclusion, coded (DiagnosticReport.conclusionCode)
    aliases: dict[str, str] = Field(default_factory=dict)
    measures: dict[str, QcMeasure]
    components: dict[str, QcComponent]
    qualitative: dict[str, QcQualitative]
    site_codes: tuple[QcSiteCode, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> QcFile:
        for key, want in CONDITION_UNITS.items():
            comp = self.components.get(key)
            if comp is None:
                raise ValueError(f"components: missing {key!r}")
            if comp.unit != want:
                raise ValueError(f"components.{key}.unit: must be {want or 'absent (a text component)'!r}, found {comp.unit!r}")
        if sorted(self.conclusions) != sorted(CONCLUSIONS):
            raise ValueError(f"conclusions: must be exactly {list(CONCLUSIONS)}, found {sorted(self.conclusions)}")
        seen: dict[str, str] = {self.report.code: "report"}
        for key, c in self.conclusions.items():
            if c.code in seen:
                raise ValueError(f"conclusions.{key}.code: {c.code!r} is already the code of {seen[c.code]}")
            seen[c.code] = f"conclusions.{key}"
        for table, entries in (("measures", self.measures), ("components", self.components), ("qualitative", self.qualitative)):
            for key, entry in entries.items():
                if entry.code in seen:
                    raise ValueError(f"{table}.{key}.code: {entry.code!r} is already the code of {seen[entry.code]}")
                seen[entry.code] = f"{table}.{key}"
        keys = set(self.measures) | set(self.components) | set(self.qualitative)
        if len(keys) != len(self.measures) + len(self.components) + len(self.qualitative):
            raise ValueError("measures: a key is used twice across measures, components and qualitative")
        for key, measure in self.measures.items():
            if measure.kind == "particle_count":
                comp = self.components.get(measure.component)
                if comp is None or comp.kind != "quantity":
                    raise ValueError(f"measures.{key}.component: {measure.component!r} is not a quantity component")
        for alias, target in self.aliases.items():
            if not target or alias == target:
                raise ValueError(f"aliases.{alias}: must map to another unit")
        pairs: dict[tuple[str, str], str] = {}
        for i, sc in enumerate(self.site_codes):
            if sc.key not in keys:
                raise ValueError(f"site_codes[{i}].key: unknown key {sc.key!r} (a measure, component or qualitative method)")
            if sc.key in self.measures and self.measures[sc.key].kind == "derived":
                raise ValueError(f"site_codes[{i}].key: {sc.key!r} is computed by labinterp, never read")
            if sc.system == self.system.url:
                raise ValueError(f"site_codes[{i}].system: {sc.system!r} is labinterp's own system")
            if pairs.get((sc.system, sc.code), sc.key) != sc.key:
                raise ValueError(f"site_codes[{i}].code: {sc.system}|{sc.code} already maps to {pairs[(sc.system, sc.code)]!r}")
            pairs[(sc.system, sc.code)] = sc.key
        return self

    def ucum(self, unit: str) -> str:
        """The UCUM code a unit spelling means (itself when it is not a known alias)."""
        return self.aliases.get(unit, unit)


# --- qc_limits.toml ------------------------------------------------------------------------------


class QcLimit(Strict):
    """One acceptance limit of a product's specification; which measure, unit and conditions it may name is
    checked against qc.toml by the loader."""

    measure: str = Field(min_length=1)
    min: float | None = None
    max: float | None = None
    unit: str = Field(min_length=1)
    medium: str = ""  # swelling / release: the medium it applies to ("" = any)
    condition: str = ""  # stability: the storage condition ("" = every condition)
    at_h: float | None = Field(default=None, ge=0)  # release / swelling: the time point, hours
    at_d: float | None = Field(default=None, ge=0)  # stability: the storage time, days

    @model_validator(mode="after")
    def _check(self) -> QcLimit:
        if self.min is None and self.max is None:
            raise ValueError("min: a limit needs min, max or both")
        for name, value in (("min", self.min), ("max", self.max), ("at_h", self.at_h), ("at_d", self.at_d)):
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name}: must be a finite number")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min: {self.min} is above max {self.max}")
        return self


class QcProduct(Strict):
    system: str = Field(min_length=1)
    code: str = Field(min_length=1)
    name: str = Field(min_length=1)
    specification: str = Field(min_length=1)  # the laboratory's specification document
    version: str = Field(min_length=1)  # its version
    limits: tuple[QcLimit, ...] = ()


class QcLimitsFile(Strict):
    meta: Meta
    products: tuple[QcProduct, ...] = ()

    @model_validator(mode="after")
    def _unique(self) -> QcLimitsFile:
        seen: set[tuple[str, str]] = set()
        for i, p in enumerate(self.products):
            if (p.system, p.code) in seen:
                raise ValueError(f"products[{i}].code: {p.system}|{p.code} is listed twice")
            seen.add((p.system, p.code))
        return self

    def product(self, system: str, code: str) -> QcProduct | None:
        return next((p for p in self.products if p.system == system and p.code == code), None)


# --- qc_models.toml ------------------------------------------------------------------------------


class PeppasSettings(Strict):
    max_released_pct: float = Field(gt=0, le=100)  # the Korsmeyer-Peppas fit uses points up to this share released
    source: str = Field(min_length=1)


class PeppasExponent(Strict):
    upto: float | None = None  # the band's inclusive upper end of the release exponent n (absent: no upper end)
    meaning: str = ""  # "" = not interpreted (no verified source for the reading)
    source: str = Field(min_length=1)


class ProfileChecks(Strict):
    """How far a cumulative release profile may fall between two time points, or rise above 100 %, before it is
    treated as a measurement problem (replicate scatter stays within these); labinterp's data-quality choice."""

    fall_tolerance_pct: float = Field(ge=0)
    above_100_tolerance_pct: float = Field(ge=0)
    source: str = Field(min_length=1)


class QcModelsFile(Strict):
    meta: Meta
    peppas: PeppasSettings
    profile_checks: ProfileChecks
    peppas_exponent_spheres: tuple[PeppasExponent, ...]

    @model_validator(mode="after")
    def _ordered(self) -> QcModelsFile:
        bands = self.peppas_exponent_spheres
        if not bands:
            raise ValueError("peppas_exponent_spheres: no bands")
        for i, band in enumerate(bands[:-1]):
            nxt = bands[i + 1].upto
            if band.upto is None:
                raise ValueError(f"peppas_exponent_spheres[{i}].upto: only the last band may have no upper end")
            if nxt is not None and nxt <= band.upto:
                raise ValueError(f"peppas_exponent_spheres[{i + 1}].upto: {nxt} is not above {band.upto}")
        return self
