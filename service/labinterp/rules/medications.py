"""Which medications are current at a sample: by status, by date and a wash-out window (mappings/medications.toml).

Statements and orders (MedicationStatement, MedicationRequest):
- a status in `statuses.never` (cancelled, entered-in-error, draft, not-taken) is never current;
- a status in `statuses.ended` (completed, stopped) is not current unless its recorded end, plus the drug's
  wash-out window, reaches the sample (the status tells how things stand now; the end date, when given,
  tells whether the drug was still taken at the sample); without an end date it is not current;
- otherwise (active, on-hold, intended, unknown, or a status not listed) it is current unless it starts
  after the sample, or its recorded end lies more than the wash-out window before the sample.
Administrations (MedicationAdministration) are doses given at their time ("completed" is their normal
status): one counts when it was given (or its infusion ended) within the wash-out window before the sample,
and not when given after it. An administration without a time counts (it cannot be placed before the sample).

A date's end is the end of what it says: "2026-01-10" ends at the end of that day (UTC), "2026-01" at the end
of the month. With no sample time (`at` None) the statuses decide alone.

Nothing here drops a medication from PatientRecord.medications: the linezolid timing needs every
administration whatever this module says.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from labinterp.extract.facts import FhirTime, MedicationExposure, PatientRecord
from labinterp.knowledge import Knowledge
from labinterp.knowledge.model.medications import MedicationsFile

ADMINISTRATION = "MedicationAdministration"


def medication_policy(k: Knowledge) -> MedicationsFile:
    """mappings/medications.toml as loaded into the knowledge."""
    return k.medications


def end_of(t: FhirTime) -> datetime:
    """The instant a FHIR date or dateTime is over: a dateTime itself, a date at the end of its day, month or year."""
    s = t.start
    if t.precision == "day":
        return s + timedelta(days=1)
    if t.precision == "month":
        return s.replace(year=s.year + (s.month == 12), month=s.month % 12 + 1)
    if t.precision == "year":
        return s.replace(year=s.year + 1)
    return s


def washout_keys(m: MedicationExposure, k: Knowledge) -> set[str]:
    """The drugs.csv keys and magnesium_causes.csv classes a medication matches: they choose its wash-out window."""
    return set(m.drugs) | {cause.cls for cause in k.mg_causes_of(m.atc, m.name)}


def washout_days(m: MedicationExposure, k: Knowledge) -> float:
    """The medication's wash-out window in days (the longest among its keys; mappings/medications.toml)."""
    key = ("washout_days", m.drugs, m.atc, m.name)
    days = k.memo(key)
    if days is None:
        days = k.remember(key, medication_policy(k).washout_days(washout_keys(m, k)))
    return float(days)


def _why_not_current(m: MedicationExposure, at: datetime | None, days: float, policy: MedicationsFile) -> str | None:
    """Why `m` is not current at `at` (the reader-facing reason), None when it is. The words are made only when
    there is a reason: most medications on record are current."""
    if m.kind == ADMINISTRATION:
        if m.status not in policy.administrations.given:
            return f"{_label(m)}: no dose given, not current"
        if at is None or m.administered is None:
            return None
        if m.administered.start > at:
            return f"{_label(m)}, given {m.administered.text}, after the sample: not current"
        last = m.end or m.administered
        if end_of(last) + timedelta(days=days) < at:
            return f"{_label(m)}, given {last.text}, {_beyond(days)}: not current"
        return None
    statuses = policy.statuses
    if m.status in statuses.never:
        return f"{_label(m)}: not taken, not current"
    if m.status in statuses.ended:
        if m.end is None:
            return f"{_label(m)}, end date not given: not current"
        if at is None:
            return f"{_label(m)}, ended {m.end.text}: not current"
    if at is None:
        return None
    if m.start is not None and m.start.start > at:
        return f"{_label(m)}, starts {m.start.text}, after the sample: not current"
    if m.end is not None and end_of(m.end) + timedelta(days=days) < at:
        return f"{_label(m)}, ended {m.end.text}, {_beyond(days)}: not current"
    return None


def _label(m: MedicationExposure) -> str:
    return f"{m.name}: {m.kind} status {m.status}"


def _beyond(days: float) -> str:
    return f"more than the {days:g}-day wash-out window before the sample"


def current_medications(
    record: PatientRecord, at: datetime | None, k: Knowledge
) -> tuple[list[MedicationExposure], list[tuple[MedicationExposure, str]]]:
    """(the medications current at `at`, the others each with a reader-facing reason). `at` is the interpreted
    sample's time; None: no date is compared and the statuses decide alone."""
    policy = medication_policy(k)
    current: list[MedicationExposure] = []
    not_current: list[tuple[MedicationExposure, str]] = []
    for m in record.medications:
        why = _why_not_current(m, at, washout_days(m, k), policy)
        if why is None:
            current.append(m)
        else:
            not_current.append((m, why))
    return current, not_current


def current_note(m: MedicationExposure, at: datetime | None, k: Knowledge) -> str:
    """For a current medication that has stopped before the sample: "ended 2026-01-10, within the 14-day
    wash-out window before the sample" (to say beside an interaction); "" otherwise."""
    if at is None:
        return ""
    days = washout_days(m, k)
    last = m.end or (m.administered if m.kind == ADMINISTRATION else None)
    if last is None or end_of(last) >= at:
        return ""
    verb = "given" if m.kind == ADMINISTRATION and m.end is None else "ended"
    return f"{verb} {last.text}, within the {days:g}-day wash-out window before the sample"


def is_rifampicin(m: MedicationExposure, k: Knowledge) -> bool:
    if "rifampicin" in m.drugs:
        return True
    prefixes = tuple(k.linezolid.rifampicin.atc_prefixes)
    return bool(prefixes) and any(a.startswith(prefixes) for a in m.atc)


def rifampicin_exposures(
    record: PatientRecord, k: Knowledge, at: datetime | None = None
) -> tuple[list[MedicationExposure], list[str]]:
    """Rifampicin current at `at` (the trough's time), and why any other rifampicin on record is not current
    (only the rifampicin on record is judged: the same answer as judging all and keeping the rifampicin)."""
    policy = medication_policy(k)
    current: list[MedicationExposure] = []
    not_current: list[str] = []
    for m in record.medications:
        if not is_rifampicin(m, k):
            continue
        why = _why_not_current(m, at, washout_days(m, k), policy)
        if why is None:
            current.append(m)
        else:
            not_current.append(why)
    return current, not_current
