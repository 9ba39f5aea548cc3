"""Typed facts extracted from FHIR JSON: what the rules work on."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime


@dataclass(frozen=True)
class SourceRef:
    """A resource the facts came from: its reference and the version used (versionId, or a content hash)."""

    resource_type: str
    id: str
    version: str
    reference: str  # what a written resource points at: "Observation/abc" or the input's fullUrl

    @property
    def versioned(self) -> str:
        if self.reference.startswith(("urn:", "http://", "https://")):
            return self.reference
        return (
            f"{self.reference}/_history/{self.version}" if self.version.isalnum() and len(self.version) < 40 else self.reference
        )


@dataclass(frozen=True)
class FhirTime:
    """A FHIR date or dateTime: the instant it starts at (UTC) and how precise it was."""

    start: datetime
    precision: str  # "year" | "month" | "day" | "time"
    text: str

    @property
    def has_time(self) -> bool:
        return self.precision == "time"


@dataclass(frozen=True)
class PatientFacts:
    source: SourceRef
    birth_date: date | None
    birth_precision: str  # "day" | "month" | "year" | "" when absent
    sex: str  # "female" | "male" | "other" | "unknown"
    name: str = ""  # for the rendered report only: never logged
    identifier: str = ""  # the first Patient.identifier, "system|value" shown as value; never logged

    def age_at(self, when: date) -> int | None:
        """Completed years at `when`; None without a birth date."""
        if self.birth_date is None:
            return None
        b = self.birth_date
        return when.year - b.year - ((when.month, when.day) < (b.month, b.day))


@dataclass(frozen=True)
class Measurement:
    analyte: str
    value: float | None  # in the analyte's canonical unit
    comparator: str  # "", "<", "<=", ">", ">="
    unit: str  # canonical unit
    original: str  # what the laboratory sent, e.g. "12.4 ug/mL"
    time: FhirTime | None
    status: str
    source: SourceRef
    matched_by: str = "code"  # "code" | "name"
    specimen: str | None = None
    lab_flags: frozenset[str] = frozenset()  # the laboratory's own interpretation codes
    ref_low: float | None = None  # the laboratory's reference range, canonical unit
    ref_high: float | None = None
    code_key: str = ""  # "system|code" that was matched, when matched by code
    performer: str = ""  # the performing laboratory or practitioner's display, when given

    @property
    def preliminary(self) -> bool:
        return self.status == "preliminary"

    def lab_says_low(self) -> bool | None:
        """The laboratory's own verdict: True low, False not low, None not stated."""
        if self.lab_flags & {"L", "LL", "LU", "<"}:
            return True
        if self.ref_low is not None and self.value is not None and not self.comparator:
            return self.value < self.ref_low
        if self.lab_flags:
            return False
        return None


@dataclass(frozen=True)
class GenotypeCall:
    """One gene's genotype as reported: star alleles, or bases (gene orientation) at one SNP."""

    gene: str
    source: SourceRef
    shape: str  # "ig-genotype" | "ig-variant" | "plain"
    raw: str  # the value as sent
    status: str
    stars: tuple[str, str] | None = None
    rsid: str | None = None
    bases: tuple[str, str] | None = None  # gene (c.) orientation
    time: FhirTime | None = None
    assembly: str | None = None  # reference assembly of genomic (+ strand) alleles: "GRCh37" | "GRCh38"

    @property
    def preliminary(self) -> bool:
        return self.status == "preliminary"

    def label(self) -> str:
        if self.stars:
            return f"{self.gene} {self.stars[0]}/{self.stars[1]}"
        return f"{self.gene} {self.rsid} {self.bases[0]}/{self.bases[1]}" if self.bases else f"{self.gene} {self.raw}"


@dataclass(frozen=True)
class MedicationExposure:
    drugs: frozenset[str]  # keys of drugs.csv that matched
    atc: frozenset[str]
    name: str
    kind: str  # "MedicationRequest" | "MedicationStatement" | "MedicationAdministration"
    status: str
    source: SourceRef
    administered: FhirTime | None = None  # MedicationAdministration: when
    start: FhirTime | None = None  # therapy start, when the resource says
    dose_mg: float | None = None
    interval_h: float | None = None
    end: FhirTime | None = None  # when the therapy ended or will end (period end, bounds end), when the resource says


@dataclass(frozen=True)
class Ignored:
    source: SourceRef
    why: str


@dataclass(frozen=True)
class Problem:
    """Broken input found for one resource: an error in strict mode, a reported exclusion (and a warning)
    otherwise. `where` names the resource and element, `what` what was expected and found; neither ever
    carries a patient's name, identifier or birth date (resource references are fine)."""

    where: str
    what: str
    # what the resource was recognised as: an analyte of analytes.toml ("linezolid", "magnesium", ...),
    # "genotype", "patient" (its gender or birth date), or "" (a resource whose subject or id is unusable)
    about: str = ""
    source: SourceRef | None = None  # the resource left out, when it can be referenced (a report can then name it)

    @property
    def line(self) -> str:
        """One line, as a warning prints it."""
        return " ".join(f"{self.where}: {self.what}".split())


@dataclass
class PatientRecord:
    patient: PatientFacts
    measurements: list[Measurement] = field(default_factory=list)
    genotypes: list[GenotypeCall] = field(default_factory=list)
    medications: list[MedicationExposure] = field(default_factory=list)
    ignored: list[Ignored] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def of(self, analyte: str) -> list[Measurement]:
        """Measurements of one analyte, oldest first (undated ones first)."""
        found = [m for m in self.measurements if m.analyte == analyte]
        return sorted(found, key=lambda m: (m.time is not None, m.time.start if m.time else None))
