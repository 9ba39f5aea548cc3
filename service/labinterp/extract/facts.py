"""Typed facts extracted from FHIR JSON: what the rules work on."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

# What a warning may quote of a value it found: only short code-like tokens ("mg/furlong", "bogus", "*1/*3",
# "0,4 mg/L"), never free text, which can carry a name or an identifier. Runs of four or more digits (an
# identifier's, a phone number's) are never quoted, except in an rs-number or a date-shaped value.
_TOKEN = re.compile(r"[A-Za-z0-9/.,%{}\[\]*^_:<>=+|~-]{1,20}")
_UNIT = re.compile(r"[A-Za-z0-9/.%{}\[\]*^_-]{1,20}")
_DATEISH = re.compile(r"\d{4}(-\d{1,2}(-\d{1,2}(T[\d:.]{1,18}(Z|[+-]\d{2}:\d{2})?)?)?)?")
_RS = re.compile(r"(?i)\brs\d+")
_DIGITS = re.compile(r"\d{4,}")
_QUOTED = re.compile(r"(?<![A-Za-z0-9])(?:'([^'\n]{0,80})'|\"([^\"\n]{0,80})\")(?![A-Za-z0-9])")


def _safe_text(text: str) -> bool:
    if _DATEISH.fullmatch(text):
        return False  # a mistyped date may be a birth date: not quoted
    words = text.split()
    if not words or len(words) > 3 or len(text) > 40:
        return False
    for w in words:
        if not _TOKEN.fullmatch(w) or _DIGITS.search(_RS.sub("", w)):
            return False
    # several words: each must look like a value or a unit ("0,4 mg/L", "CYP3A5 *1/*3"), not like a name
    return len(words) == 1 or all(any(ch.isdigit() or ch in "*/<>=%[{" for ch in w) for w in words)


def shown(value: Any) -> str:
    """A found value as a warning may show it: short code-like text quoted, anything else described by its
    kind ("a text", "a list", "an object"), so a misplaced name or identifier is never repeated."""
    if isinstance(value, str):
        return repr(value) if _safe_text(value) else "a text (not shown)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if abs(value) < 10**5 else "a large number"
    if isinstance(value, float):
        return repr(value) if not math.isfinite(value) or abs(value) < 1e5 else "a large number"
    if value is None:
        return "null"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def kind_of(value: Any) -> str:
    """What kind of JSON value was found, never the value itself: "a text", "a number", "a list"..."""
    if isinstance(value, str):
        return "a text"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    return "null" if value is None else "a list" if isinstance(value, list) else "an object"


def shown_unit(unit: Any) -> str:
    """A unit as a warning may show it: a UCUM-like token quoted, otherwise "an unreadable unit"."""
    if isinstance(unit, str) and _UNIT.fullmatch(unit) and not re.search(r"\d{5,}", unit):
        return repr(unit)
    return "an unreadable unit"


def sanitized(text: str) -> str:
    """Every quoted value in a message that `shown` would not quote replaced by "(a value not shown)"."""

    def one(m: re.Match[str]) -> str:
        inner = m.group(1) if m.group(1) is not None else m.group(2)
        return m.group(0) if _safe_text(inner) or not inner else "(a value not shown)"

    return _QUOTED.sub(one, text)


_ABSOLUTE = ("urn:", "http://", "https://")
_set = object.__setattr__  # what a frozen dataclass's __init__ sets its fields with


@dataclass(frozen=True)
class SourceRef:
    """A resource the facts came from: its reference and the version used (versionId, or a content hash)."""

    resource_type: str
    id: str
    version: str
    reference: str  # what a written resource points at: "Observation/abc" or the input's fullUrl
    # computed once (a frozen dataclass: it cannot go stale); every written resource reads its inputs' many times
    versioned: str = field(init=False, repr=False, compare=False)

    def __init__(self, resource_type: str, id: str, version: str, reference: str) -> None:
        # the dataclass's own __init__ with `versioned` set once, and object.__setattr__ looked up once (frozen):
        # one is made for every resource read and written
        if reference.startswith(_ABSOLUTE):
            versioned = reference
        elif version.isalnum() and len(version) < 40:
            versioned = f"{reference}/_history/{version}"
        else:
            versioned = reference
        _set(self, "resource_type", resource_type)
        _set(self, "id", id)
        _set(self, "version", version)
        _set(self, "reference", reference)
        _set(self, "versioned", versioned)

    def __hash__(self) -> int:
        # equal SourceRefs have equal references and versions, so equal `versioned` texts (whose hash a str caches):
        # hashed for every dict.fromkeys of a written resource's inputs
        return hash(self.versioned)


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
        if self.birth_date is None or self.birth_date > when:
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
    reported: tuple[float, str] | None = None  # the value and unit as the laboratory sent them (before conversion)

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
    about: str = ""  # what the resource was recognised as (an analyte of analytes.toml, "genotype"), when known


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

    def __post_init__(self) -> None:  # defence in depth: a value quoted by any reader is shown only if code-like
        object.__setattr__(self, "what", sanitized(self.what))

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
        if len(found) < 2:  # most analytes of a patient: one result, or none
            return found
        return sorted(found, key=lambda m: (m.time is not None, m.time.start if m.time else None))
