"""Typed facts of a formulation batch (microsphere QC, SPEC section 5): what the QC rules work on.

The FHIR model they are read from (docs/formulation-qc.md): the batch is a `Substance` (its product in `code`, its
lot in `instance[0].identifier`), samples are `Specimen`s whose `subject` is that Substance, and each measurement
is an `Observation` with `focus` -> the Substance and `specimen` -> the Specimen (R4's Observation.subject cannot
point at a Substance). Every value here is already in labinterp's unit for its measure (micrometres, %, mg, mV,
hours, days); what the laboratory sent is kept in `original` for the report."""

from __future__ import annotations

from dataclasses import dataclass, field

from labinterp.extract.facts import FhirTime, Problem, SourceRef


@dataclass(frozen=True)
class QcValue:
    """One measured value of a batch, in labinterp's unit for its measure."""

    measure: str  # key of mappings/qc.toml [measures.*], e.g. "volume_mean_diameter"
    value: float
    unit: str  # UCUM, labinterp's unit for the measure
    original: str  # as the laboratory sent it, e.g. "0.152 mm"
    source: SourceRef
    time: FhirTime | None = None
    status: str = "final"
    # the conditions the value was measured under, when the measure has them
    elapsed_h: float | None = None  # time since the start of the test (release, swelling), hours
    elapsed_d: float | None = None  # storage time (stability), days
    medium: str = ""  # swelling / release medium, as the laboratory names it ("pH 7.4 phosphate buffer")
    condition: str = ""  # stability storage condition, as the laboratory records it ("40 ± 2 °C / 75 % RH")
    temperature_c: float | None = None  # of the medium or the storage condition, when recorded
    dry_weight_mg: float | None = None  # swelling: the dry weight the gain is relative to


@dataclass(frozen=True)
class ParticleCount:
    """A microscopy count of individual particles (e.g. 100 particles at 450x): each diameter in micrometres."""

    diameters_um: tuple[float, ...]
    original_unit: str
    source: SourceRef
    time: FhirTime | None = None
    status: str = "final"


@dataclass(frozen=True)
class QualitativeFinding:
    """A qualitative method's finding (SEM, XRD, DSC/TGA, FTIR): attached to the report, never graded."""

    method: str  # key of mappings/qc.toml [qualitative.*]
    text: str
    source: SourceRef
    attachment_title: str = ""  # when the Observation carries or points at an image or file


@dataclass
class BatchRecord:
    """Everything labinterp reads about one batch."""

    batch: SourceRef  # the Substance
    product_code: str  # Substance.code's first coding code (matched against the site's limits); "" when absent
    product_system: str
    product_name: str  # Substance.code.text or the coding's display
    lot: str  # Substance.instance[0].identifier.value; "" when absent
    product_codings: tuple[tuple[str, str], ...] = ()  # every (system, code) of Substance.code: the site's product may be any
    specimens: list[SourceRef] = field(default_factory=list)
    values: list[QcValue] = field(default_factory=list)
    counts: list[ParticleCount] = field(default_factory=list)
    qualitative: list[QualitativeFinding] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def of(self, measure: str) -> list[QcValue]:
        return [v for v in self.values if v.measure == measure]
