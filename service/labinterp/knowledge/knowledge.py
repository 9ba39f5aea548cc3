"""`Knowledge`: every mappings file, validated and indexed, passed to the rules as an argument."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from labinterp.knowledge import model as m

MEMO_LIMIT = 100_000


@dataclass(frozen=True)
class Knowledge:
    ruleset_version: str
    units: m.UnitsFile
    analytes: dict[str, m.Analyte]
    linezolid: m.LinezolidFile
    genes: dict[str, m.GeneFile]
    renal: m.RenalFile
    magnesium: m.MagnesiumFile
    genomics: m.GenomicsFile
    output: m.OutputFile
    cohort: m.CohortFile
    medications: m.MedicationsFile
    analyte_codes: tuple[m.AnalyteCode, ...]
    drugs: tuple[m.Drug, ...]
    mg_causes: tuple[m.MgCause, ...]
    genotype_codes: tuple[m.GenotypeCode, ...]
    file_versions: dict[str, str]
    # microsphere formulation QC (SPEC section 5): qc.toml, the laboratory's limits (qc_limits.toml), and the
    # release-model reference data (qc_models.toml)
    qc: m.QcFile
    qc_limits: m.QcLimitsFile
    qc_models: m.QcModelsFile
    _code_index: dict[tuple[str, str], str] = field(init=False, repr=False, compare=False)
    _rsid_index: dict[str, tuple[str, m.Variant]] = field(init=False, repr=False, compare=False)
    _qc_index: dict[tuple[str, str], tuple[str, str]] = field(init=False, repr=False, compare=False)
    # answers that depend on the knowledge only (and a few words of input), computed once per knowledge, not per patient
    _memo: dict[Any, Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_code_index", {(c.system, c.code): c.analyte for c in self.analyte_codes})
        object.__setattr__(self, "_rsid_index", {v.rsid: (g.gene.symbol, v) for g in self.genes.values() for v in g.variants})
        object.__setattr__(self, "_qc_index", _qc_index(self.qc))
        object.__setattr__(self, "_memo", {})

    def memo(self, key: Any) -> Any:
        """A cached answer (None when not cached yet); see `remember`."""
        return self._memo.get(key)

    def remember(self, key: Any, value: Any) -> Any:
        """Caches `value` under `key` (bounded: a flood of distinct keys empties the cache, never grows it without end)."""
        if len(self._memo) >= MEMO_LIMIT:
            self._memo.clear()
        self._memo[key] = value
        return value

    def mg_causes_of(self, atc: frozenset[str], name: str) -> tuple[m.MgCause, ...]:
        """The magnesium-cause classes (magnesium_causes.csv) a medication matches, by ATC prefix or by a name in
        its name, in the file's order."""
        key = ("mg_causes", atc, name)
        hit = self._memo.get(key)
        if hit is None:
            words = name.lower()
            hit = self.remember(
                key,
                tuple(
                    c
                    for c in self.mg_causes
                    if any(a.startswith(p) for a in atc for p in c.atc_prefix) or any(n in words for n in c.names)
                ),
            )
        return hit

    def analyte_for(self, system: str | None, code: str | None) -> str | None:
        if not system or not code:
            return None
        return self._code_index.get((system, code))

    def qc_key_for(self, system: str | None, code: str | None) -> tuple[str, str] | None:
        """What a QC coding means: ("measure" | "component" | "qualitative" | "report", key), by labinterp's own
        code system (qc.toml) or a site's own code ([[site_codes]]); None when it is neither."""
        if not system or not code:
            return None
        return self._qc_index.get((system, code))

    def qc_product(self, system: str, code: str) -> m.QcProduct | None:
        """The laboratory's product (with its acceptance limits) a batch's Substance.code names, if configured."""
        return self.qc_limits.product(system, code)

    def variant(self, rsid: str) -> tuple[str, m.Variant] | None:
        return self._rsid_index.get(rsid.lower())

    def genotype_code(self, system: str | None, code: str | None) -> m.GenotypeCode | None:
        return next((g for g in self.genotype_codes if g.system == system and g.code == code), None)

    def ucum(self, unit: str) -> str:
        """The UCUM code a unit spelling means (itself when it is not a known alias)."""
        return self.units.aliases.get(unit, unit)

    def unit_factor(self, analyte: str, unit: str) -> float | None:
        """Factor from `unit` to the analyte's canonical unit, or None when the unit is not accepted."""
        a = self.analytes[analyte]
        code = self.ucum(unit)
        if code == a.canonical_unit:
            return 1.0
        if code in a.units:
            return a.units[code]
        mass = self.units.mass_concentration_to_mg_per_l
        if a.mass_units and code in mass:
            return mass[code] / mass[a.canonical_unit]
        molar = self.units.molar_concentration_to_mmol_per_l
        if a.molar_mass_g_per_mol is not None and code in molar:
            # mmol/L x g/mol = mg/L, then to the canonical mass unit
            return molar[code] * a.molar_mass_g_per_mol / mass[a.canonical_unit]
        return None

    def is_mass_concentration(self, unit: str) -> bool:
        return self.ucum(unit) in self.units.mass_concentration_to_mg_per_l


def _qc_index(qc: m.QcFile) -> dict[tuple[str, str], tuple[str, str]]:
    """(system, code) -> (what, key) for labinterp's own QC codes and a site's own codes."""
    index: dict[tuple[str, str], tuple[str, str]] = {(qc.system.url, qc.report.code): ("report", "report")}
    index |= {(qc.system.url, c.code): ("conclusion", key) for key, c in qc.conclusions.items()}
    for what, table in (("measure", qc.measures), ("component", qc.components), ("qualitative", qc.qualitative)):
        for key, entry in table.items():
            index[(qc.system.url, entry.code)] = (what, key)
    for sc in qc.site_codes:
        what = "measure" if sc.key in qc.measures else "component" if sc.key in qc.components else "qualitative"
        index[(sc.system, sc.code)] = (what, sc.key)
    return index
