"""Pure: FHIR JSON → PatientRecord (Measurement, GenotypeCall, MedicationExposure, PatientFacts)."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime
from typing import Any

from labinterp.errors import ResourceError
from labinterp.extract.bundle import NO_ID, InputBundle, PatientInput, split_bundle
from labinterp.extract.facts import Ignored, PatientFacts, PatientRecord, Problem, SourceRef, kind_of, shown
from labinterp.extract.fhirtime import parse_birth_date
from labinterp.extract.genotypes import extract_genotype, is_genotype
from labinterp.extract.medications import IGNORED as IGNORED_MED_STATUSES
from labinterp.extract.medications import extract_medication
from labinterp.extract.observations import (
    IGNORED_STATUSES,
    USABLE_STATUSES,
    concept_text,
    data_absent,
    extract_measurement,
    recognize_analyte,
    words,
)
from labinterp.knowledge import Knowledge

__all__ = ["InputBundle", "PatientInput", "extract_patient", "split_bundle"]

SEXES = {"female", "male", "other", "unknown"}


def patient_facts(pinput: PatientInput) -> tuple[PatientFacts, list[Problem]]:
    """The patient's facts. An unreadable birthDate or gender makes that fact unknown and is a Problem (a
    birth date identifies: the message does not repeat it)."""
    res, ref = pinput.patient, pinput.patient_ref
    problems: list[Problem] = []
    birth, precision = None, ""
    if res.get("birthDate") is not None:
        try:
            birth, precision = parse_birth_date(res["birthDate"], f"{ref.reference} birthDate")
        except ResourceError:
            problems.append(
                Problem(
                    f"{ref.reference} birthDate", "not a valid FHIR date (YYYY, YYYY-MM or YYYY-MM-DD): age unknown", "patient"
                )
            )
    gender = res.get("gender") if res.get("gender") is not None else "unknown"
    if not isinstance(gender, str) or gender not in SEXES:  # the value is not repeated: it may be anything, a name too
        problems.append(Problem(f"{ref.reference} gender", f"is not one of {'/'.join(sorted(SEXES))}: sex unknown", "patient"))
        gender = "unknown"
    for element in ("name", "identifier"):  # shown on the report only; an odd shape there costs nothing else
        if res.get(element) is not None and not _list_of_objects(res[element]):
            problems.append(
                Problem(
                    f"{ref.reference} {element}",
                    f"expected a list of objects, found {kind_of(res[element])}: not shown on the report",
                    "patient",
                )
            )
    facts = PatientFacts(
        source=ref, birth_date=birth, birth_precision=precision, sex=gender, name=_name(res), identifier=_identifier(res)
    )
    return facts, problems


def _list_of_objects(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, dict) for v in value)


def _list(value: Any) -> list[Any]:
    """A FHIR repeating element as a list: [] when absent or of another shape (a number, a string, an object)."""
    return value if isinstance(value, list) else []


def _name(res: dict[str, Any]) -> str:
    """The patient's name as a report prints it ("Family, Given"); "" when absent or unreadable."""
    names = [n for n in _list(res.get("name")) if isinstance(n, dict)]
    official = next((n for n in names if n.get("use") == "official"), names[0] if names else None)
    if official is None:
        return ""
    if isinstance(official.get("text"), str) and official["text"].strip():
        return str(official["text"]).strip()
    family = official.get("family") if isinstance(official.get("family"), str) else ""
    given = " ".join(g for g in _list(official.get("given")) if isinstance(g, str))
    return ", ".join(p for p in (family, given) if p)


def _identifier(res: dict[str, Any]) -> str:
    """The first identifier with a value (a medical record number, usually); "" when none."""
    for ident in _list(res.get("identifier")):
        if isinstance(ident, dict) and isinstance(ident.get("value"), str) and ident["value"].strip():
            return str(ident["value"]).strip()
    return ""


def written_by_labinterp(resource: dict[str, Any], k: Knowledge) -> bool:
    series = k.output.systems["series_identifier"]
    return any(isinstance(i, dict) and i.get("system") == series for i in _list(resource.get("identifier")))


def _observation(record: PatientRecord, obs: dict[str, Any], ref: Any, k: Knowledge) -> None:
    """Recognise first, then judge: an Observation labinterp does not read is skipped whatever its status; one
    it recognises is used, or listed with its reason (Ignored on purpose, or a Problem, tagged with what it
    was recognised as, when broken)."""
    if written_by_labinterp(obs, k):  # a derived eGFR of an earlier run is never an input: no feedback loop
        record.ignored.append(Ignored(ref, "written by labinterp"))
        return
    genotype = is_genotype(obs, k)
    found = None if genotype else recognize_analyte(obs, k)
    if not genotype and found is None:
        gene = _valueless_genotype(obs, k)
        if gene is not None:  # is_genotype needs a value to tell a genotype by name: say why there is none
            absent = data_absent(obs)
            if absent is not None:
                record.ignored.append(Ignored(ref, f"no value (dataAbsentReason: {absent})"))
            else:
                record.problems.append(
                    Problem(
                        f"{ref.reference} value[x]", f"names {gene} but has no value and no dataAbsentReason", "genotype", ref
                    )
                )
        return
    try:
        _recognised(record, obs, ref, k, found)
    except ResourceError as exc:
        record.problems.append(Problem(exc.where, exc.what, found[0] if found else "genotype", ref))


def _valueless_genotype(obs: dict[str, Any], k: Knowledge) -> str | None:
    """The gene (or rsID) a valueless Observation's code names as a whole word, e.g. a pending "CYP3A5 genotype"."""
    if any(key.startswith("value") for key in obs):
        return None
    tokens = set(words(concept_text(obs.get("code"))))
    genes = [g for g in k.genes if g.lower() in tokens]
    rsids = [t for t in tokens if t.startswith("rs") and t[2:].isdigit() and k.variant(t) is not None]
    named = genes + rsids
    return named[0] if len(named) >= 1 and ("genotype" in tokens or rsids or "genotyping" in tokens) else None


def _recognised(record: PatientRecord, obs: dict[str, Any], ref: Any, k: Knowledge, found: tuple[str, str, str] | None) -> None:
    status = obs.get("status")
    if status is not None and not isinstance(status, str):
        raise ResourceError(f"{ref.reference} status", f"expected a status code, found {type(status).__name__}")
    if status in IGNORED_STATUSES:
        record.ignored.append(Ignored(ref, f"status {status}: {IGNORED_STATUSES[status]}"))
        return
    if status not in USABLE_STATUSES:
        found_status = "no status" if status is None else shown(status)
        raise ResourceError(
            f"{ref.reference} status",
            f"{found_status} is not an Observation status labinterp can use ({', '.join(sorted(USABLE_STATUSES))})",
        )
    if found is None:
        record.genotypes.append(extract_genotype(obs, ref, k))
        return
    analyte, matched_by, code_key = found
    m = extract_measurement(obs, ref, analyte, matched_by, code_key, k)
    if m is None:
        record.ignored.append(Ignored(ref, f"no value (dataAbsentReason: {data_absent(obs)})", analyte))
    else:
        record.measurements.append(m)


def _recognised_as(resource: dict[str, Any], medications: dict[str, dict[str, Any]], k: Knowledge) -> str | None:
    """What labinterp would read a resource as ("linezolid", "genotype", "medication"), or None."""
    ref = SourceRef(resource["resourceType"], "", "", resource["resourceType"])
    try:
        if resource["resourceType"] == "Observation":
            if is_genotype(resource, k):
                return "genotype"
            found = recognize_analyte(resource, k)
            return found[0] if found else None
        return "medication" if extract_medication(resource, ref, medications, k) is not None else None
    except ResourceError:  # it was being read, so it is one labinterp reads
        return "medication"
    except Exception:  # an odd shape: not one labinterp can tell
        return None


# what each element labinterp reads is, in FHIR JSON: an unexpected shape is named by `unreadable`
_LISTS = (
    "identifier",
    "name",
    "given",
    "coding",
    "interpretation",
    "referenceRange",
    "performer",
    "component",
    "category",
    "dosageInstruction",
    "contained",
    "note",
    "reasonCode",
    "basedOn",
    "partOf",
    "doseAndRate",
    "telecom",
    "address",
)
_OBJECTS = (
    "meta",
    "code",
    "subject",
    "patient",
    "valueQuantity",
    "valueCodeableConcept",
    "effectivePeriod",
    "specimen",
    "medicationCodeableConcept",
    "medicationReference",
    "dataAbsentReason",
    "timing",
    "repeat",
    "dose",
    "doseQuantity",
    "boundsPeriod",
    "boundsDuration",
    "low",
    "high",
    "dispenseRequest",
)
_TOP_LEVEL_ONLY = ("code", "identifier", "status")
_STRINGS = ("status", "id", "effectiveDateTime", "effectiveInstant", "authoredOn", "birthDate", "gender", "unit", "system")


def _odd_element(value: Any, path: str, depth: int = 0) -> str | None:
    """The first element (a path such as "meta" or "dosage.dose.value") whose JSON shape is not what FHIR says,
    or holds a number no float can hold; None when none is found."""
    if depth > 6:
        return None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        name = key if isinstance(key, str) else ""
        here = (f"{path}.{name}" if path else name) if name else f"{path}[{key}]"
        if depth > 0 and name in _TOP_LEVEL_ONLY:  # e.g. a Coding's code is a text, a Reference's identifier an object
            name = ""
        if name in _LISTS and not isinstance(item, list):
            return f"{here}: expected a list, found {kind_of(item)}"
        if name in _OBJECTS and not isinstance(item, dict):
            return f"{here}: expected an object, found {kind_of(item)}"
        if name in _STRINGS and not isinstance(item, str):
            return f"{here}: expected a text, found {kind_of(item)}"
        if isinstance(item, int) and not isinstance(item, bool) and abs(item) > 10**300:
            return f"{here}: a number out of range"
        if isinstance(item, dict | list) and (found := _odd_element(item, here, depth + 1)):
            return found
    return None


def unreadable(resource: dict[str, Any], ref: str, about: str, source: SourceRef | None = None) -> Problem:
    """A resource whose reading failed on a shape no reader expected: a Problem naming it and, where it can be
    found, the element (never the exception's text: it can quote any value)."""
    odd = _odd_element(resource, "")
    if odd is not None:
        element, _, what = odd.partition(": ")
        return Problem(f"{ref} {element}", f"{what}: the resource could not be read", about, source)
    return Problem(ref, "an element has an unexpected shape: the resource could not be read", about, source)


def extract_patient(
    pinput: PatientInput, medications: dict[str, dict[str, Any]], k: Knowledge, now: datetime | None = None
) -> PatientRecord:
    """Everything labinterp reads about one patient. Broken resources become Problems, each naming the
    resource and element (the caller decides whether they are fatal: strict mode); resources labinterp does
    not interpret are skipped. Problems found while splitting the Bundle for this patient come first."""
    try:
        facts, problems = patient_facts(pinput)
    except Exception:  # an odd shape no reader expected: the patient's facts are unknown, not its results
        facts = PatientFacts(source=pinput.patient_ref, birth_date=None, birth_precision="", sex="unknown")
        problems = [unreadable(pinput.patient, pinput.patient_ref.reference, "patient")]
    record = PatientRecord(facts, problems=list(pinput.problems) + problems)
    for resource, label in pinput.unreferenceable:
        about = _recognised_as(resource, medications, k)
        if about is not None:
            record.problems.append(Problem(label, f"{NO_ID}: nothing written could point at it", about))
    for resource, ref in pinput.resources:
        try:
            if resource["resourceType"] == "Observation":
                _observation(record, resource, ref, k)
            else:
                status = resource.get("status")
                if status in _never(
                    k
                ):  # the one list: mappings/medications.toml (a list status: TypeError, named as a shape problem)
                    record.ignored.append(Ignored(ref, f"status {status}: {IGNORED_MED_STATUSES.get(status, 'never given')}"))
                    continue
                med = extract_medication(resource, ref, medications, k)
                if med is not None:
                    record.medications.append(med)
        except ResourceError as exc:  # an Observation's are caught, and tagged, in _observation
            record.problems.append(Problem(exc.where, exc.what, "medication"))
        except Exception:  # the one place: a shape no reader expected makes this resource unusable,
            # never the patient's other results (nor a 500, nor a retried job)
            about = _recognised_as(resource, medications, k) or ""
            record.problems.append(unreadable(resource, ref.reference, about, ref))
    _check_birth_date(record, now)
    return _without_identity(record, pinput.patient)


def _never(k: Knowledge) -> frozenset[str]:
    """The medication statuses mappings/medications.toml says were never given, as a set (made once per Knowledge)."""
    hit: frozenset[str] | None = k.memo("never_statuses")
    if hit is None:
        hit = k.remember("never_statuses", frozenset(k.medications.statuses.never))
    return hit


def _check_birth_date(record: PatientRecord, now: datetime | None) -> None:
    """A birth date after the sample (or after now) is a Problem, and the age is unknown."""
    birth = record.patient.birth_date
    if birth is None:
        return
    times = [m.time.start.date() for m in record.measurements if m.time] + [
        g.time.start.date() for g in record.genotypes if g.time
    ]
    if now is not None:
        times.append(now.date())
    if times and birth > min(times):
        record.patient = replace(record.patient, birth_date=None, birth_precision="")
        record.problems.append(
            Problem(f"{record.patient.source.reference} birthDate", "is after the sample: age unknown", "patient")
        )


def _identity_words(patient: dict[str, Any]) -> list[str]:
    """The words of the patient's name, identifiers, birth date, telecom and address, to keep out of warnings."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            found.append(value)
            found.extend(w for w in re.split(r"[\s,;|/]+", value) if len(w) >= 3)
        elif isinstance(value, dict):
            for key, item in value.items():
                if key not in ("system", "use", "type", "period", "extension"):
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for element in ("name", "identifier", "birthDate", "telecom", "address", "contact"):
        walk(patient.get(element))
    return sorted({w.strip() for w in found if len(w.strip()) >= 3}, key=len, reverse=True)


def _without_identity(record: PatientRecord, patient: dict[str, Any]) -> PatientRecord:
    """Defence in depth: no warning repeats the patient's name, identifier or birth date, whatever element the
    sender put them in (the readers quote only code-like values; a one-word name can look like one)."""
    words = _identity_words(patient)
    if not words or not record.problems:
        return record
    pattern = re.compile("|".join(rf"(?<![A-Za-z0-9]){re.escape(w)}(?![A-Za-z0-9])" for w in words), re.IGNORECASE)
    source = record.patient.source.reference

    def clean(text: str) -> str:
        kept = text.replace(source, "\0")  # the patient's own reference stays: references are fine
        return pattern.sub("(withheld)", kept).replace("\0", source)

    record.problems = [replace(p, where=clean(p.where), what=clean(p.what)) for p in record.problems]
    return record
