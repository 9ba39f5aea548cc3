"""Pure clinical logic, one module per domain. `interpret` joins them for one patient."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from labinterp.extract.facts import PatientRecord
from labinterp.knowledge import Knowledge
from labinterp.rules.exposure import ExposureRisk, assess_exposure
from labinterp.rules.linezolid import LinezolidFinding, interpret_linezolid, linezolid_exposures
from labinterp.rules.magnesium import MagnesiumFinding, interpret_magnesium
from labinterp.rules.pgx import PgxFinding, interpret_pgx
from labinterp.rules.renal import RenalFinding, assess_renal


@dataclass
class Findings:
    record: PatientRecord
    now: datetime
    age: int | None
    linezolid: LinezolidFinding | None
    pgx: PgxFinding | None
    renal: RenalFinding | None
    exposure: ExposureRisk | None
    magnesium: MagnesiumFinding | None


def _reference_time(record: PatientRecord, now: datetime) -> datetime:
    """The time age is taken at: the latest trough, else the latest magnesium or creatinine, else now."""
    for analyte in ("linezolid", "magnesium", "creatinine"):
        dated = [m for m in record.of(analyte) if m.time]
        if dated:
            return dated[-1].time.start  # type: ignore[union-attr]
    return now


def interpret(record: PatientRecord, k: Knowledge, now: datetime, equation: str | None = None) -> Findings:
    age = record.patient.age_at(_reference_time(record, now).date())
    renal = assess_renal(record, k, equation)
    lz = interpret_linezolid(record, k, age)
    pgx = interpret_pgx(record, k)
    exposure = None
    if lz is not None or pgx is not None or linezolid_exposures(record):
        exposure = assess_exposure(record, lz, pgx, renal, age, k)
    mg = interpret_magnesium(record, renal, age, k)
    return Findings(record, now, age, lz, pgx, renal, exposure, mg)
