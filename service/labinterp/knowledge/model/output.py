"""Typed, frozen models of genomics.toml, output.toml and the CSV code lists. Unknown keys are rejected."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from labinterp.knowledge.model.base import RISK_ORDER, Meta, Strict

# --- genomics.toml, output.toml ---------------------------------------------------------------


class GenomicsFile(Strict):
    meta: Meta
    codes: dict[str, str]
    answers: dict[str, str]
    profiles: dict[str, str]

    @model_validator(mode="after")
    def _needed(self) -> GenomicsFile:
        need = {"genotype", "variant", "gene_studied", "variation_code", "allelic_state", "ref_allele", "alt_allele", "hgvs_c"}
        if missing := need - set(self.codes):
            raise ValueError(f"codes: missing {sorted(missing)}")
        if missing := {"present", "heterozygous", "homozygous"} - set(self.answers):
            raise ValueError(f"answers: missing {sorted(missing)}")
        return self


class ReportKind(Strict):
    loinc: str
    loinc_display: str
    category: str
    category_display: str
    title: str


class Outcomes(Strict):
    underexposure_text: str
    overexposure_text: str
    arrhythmia_text: str


class ProvenanceCodes(Strict):
    activity: str
    activity_display: str
    entity_role: Literal["derivation", "revision", "quotation", "source", "removal"]
    agent_type: str
    agent_type_display: str
    reason: str
    reason_display: str


class OutputFile(Strict):
    meta: Meta
    systems: dict[str, str]
    interpretations: dict[str, str]
    reports: dict[str, ReportKind]
    outcomes: Outcomes
    risk_probability: dict[str, str]
    provenance: ProvenanceCodes

    @model_validator(mode="after")
    def _check(self) -> OutputFile:
        need = {
            "loinc",
            "snomed",
            "ucum",
            "hgnc",
            "interpretation",
            "observation_category",
            "diagnostic_service",
            "risk_probability",
            "content_identifier",
            "series_identifier",
            "device_identifier",
        }
        if missing := need - set(self.systems):
            raise ValueError(f"systems: missing {sorted(missing)}")
        if missing := {"linezolid", "magnesium", "renal", "genotype"} - set(self.reports):
            raise ValueError(f"reports: missing {sorted(missing)}")
        if unknown := set(self.risk_probability) - set(RISK_ORDER):
            raise ValueError(f"risk_probability: unknown codes {sorted(unknown)}")
        return self


# --- CSV rows ---------------------------------------------------------------------------------


class AnalyteCode(Strict):
    analyte: str
    system: str = Field(min_length=1)
    code: str = Field(min_length=1)
    display: str = ""
    status: str = ""
    source: str = Field(min_length=1)


class Drug(Strict):
    drug: str
    display: str
    atc: tuple[str, ...]
    rxnorm: tuple[str, ...]
    names: tuple[str, ...]
    source: str


class MgCause(Strict):
    cls: str
    display: str
    atc_prefix: tuple[str, ...]
    names: tuple[str, ...]
    source: str


class GenotypeCode(Strict):
    gene: str
    rsid: str = ""
    system: str = Field(min_length=1)
    code: str = Field(min_length=1)
    display: str = ""
    status: str = ""
    source: str = Field(min_length=1)
