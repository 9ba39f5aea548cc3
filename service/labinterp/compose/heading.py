"""The heading block of a laboratory report (the patient: name, identifier, birth date, sex and age; the specimen
and its collection time; the performer where given; the issue time and status), the patient line the PDF repeats
on every page, and the footer. The patient's name and identifier go into the report's view only, never a log."""

from __future__ import annotations

from collections.abc import Sequence

from labinterp import __version__
from labinterp.compose.view import NOT_RECORDED, status_shown, when
from labinterp.extract.facts import Measurement
from labinterp.knowledge import Knowledge
from labinterp.rules import Findings


def birth(f: Findings) -> str:
    """The birth date to the precision it was recorded with ("1950", "1950-04", "1950-04-02")."""
    p = f.record.patient
    text = p.birth_date.isoformat() if p.birth_date else ""
    if text and p.birth_precision in ("year", "month"):
        text = text[: 4 if p.birth_precision == "year" else 7]
    return text or NOT_RECORDED


def heading(
    f: Findings, status: str, issued: str, about: Measurement | None, measured: Sequence[Measurement], collected: str
) -> list[tuple[str, str]]:
    """(label, value) pairs: `about` is the measurement the report is about (its specimen and time), `measured`
    the report's measurements (their performers), `collected` the collection time when `about` has none."""
    p = f.record.patient
    age = f", {f.age} years" if f.age is not None else ", age unknown"
    specimen = about.specimen if about is not None and about.specimen else NOT_RECORDED
    if about is not None and about.time is not None:
        collected = about.time.text
    header = [
        ("Patient", p.name or NOT_RECORDED),
        ("Identifier", p.identifier or NOT_RECORDED),
        ("Birth date", birth(f)),
        ("Sex, age", f"{p.sex}{age}"),
        ("Specimen", specimen),
        ("Collected", when(collected) or NOT_RECORDED),
    ]
    performers = dict.fromkeys(m.performer for m in ([about] if about else []) + list(measured) if m.performer)
    if performers:
        header.append(("Performer", ", ".join(performers)))
    header += [
        ("Issued", when(issued) or NOT_RECORDED),
        ("Status", status_shown(status)),
        ("Patient record", p.source.reference),
    ]
    return header


def patient_line(f: Findings) -> str:
    p = f.record.patient
    return " · ".join((p.name or "name not recorded", p.identifier or p.source.reference, f"born {birth(f)}"))


def footer(k: Knowledge, issued: str) -> str:
    return (
        f"labinterp {__version__}, rule set {k.ruleset_version}; issued {when(issued) or '-'}. Decision support for "
        "clinicians and pharmacists: every suggestion states its basis."
    )
