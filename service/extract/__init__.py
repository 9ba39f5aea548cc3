"""Pure: FHIR JSON → PatientRecord (Measurement, GenotypeCall, MedicationExposure, PatientFacts)."""

from __future__ import annotations

from typing import Any

from service.errors import ResourceError
from service.extract.bundle import NO_ID, InputBundle, PatientInput, split_bundle
from service.extract.facts import Ignored, PatientFacts, PatientRecord, Problem, SourceRef
from service.extract.fhirtime import parse_birth_date
from service.extract.genotypes import extract_genotype, is_genotype
from service.extract.medications import IGNORED as IGNORED_MED_STATUSES
from service.extract.medications import extract_medication
from service.extract.observations import (
    IGNORED_STATUSES,
    USABLE_STATUSES,
    concept_text,
    data_absent,
    extract_measurement,
    recognize_analyte,
    words,
)
from service.knowledge import Knowledge

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
    if not isinstance(gender, str) or gender not in SEXES:
        problems.append(
            Problem(f"{ref.reference} gender", f"{gender!r} is not one of {', '.join(sorted(SEXES))}: sex unknown", "patient")
        )
        gender = "unknown"
    facts = PatientFacts(
        source=ref, birth_date=birth, birth_precision=precision, sex=gender, name=_name(res), identifier=_identifier(res)
    )
    return facts, problems


def _name(res: dict[str, Any]) -> str:
    """The patient's name as a report prints it ("Family, Given"); "" when absent or unreadable."""
    names = [n for n in res.get("name", []) or [] if isinstance(n, dict)]
    official = next((n for n in names if n.get("use") == "official"), names[0] if names else None)
    if official is None:
        return ""
    if isinstance(official.get("text"), str) and official["text"].strip():
        return official["text"].strip()
    family = official.get("family") if isinstance(official.get("family"), str) else ""
    given = " ".join(g for g in official.get("given", []) or [] if isinstance(g, str))
    return ", ".join(p for p in (family, given) if p)


def _identifier(res: dict[str, Any]) -> str:
    """The first identifier with a value (a medical record number, usually); "" when none."""
    for ident in res.get("identifier", []) or []:
        if isinstance(ident, dict) and isinstance(ident.get("value"), str) and ident["value"].strip():
            return ident["value"].strip()
    return ""


def written_by_labinterp(resource: dict[str, Any], k: Knowledge) -> bool:
    series = k.output.systems["series_identifier"]
    return any(isinstance(i, dict) and i.get("system") == series for i in resource.get("identifier", []) or [])


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
        found_status = "no status" if status is None else repr(status)
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
        record.ignored.append(Ignored(ref, f"no value (dataAbsentReason: {data_absent(obs)})"))
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
    except (TypeError, ValueError, KeyError, AttributeError, IndexError):
        return None


def extract_patient(pinput: PatientInput, medications: dict[str, dict[str, Any]], k: Knowledge) -> PatientRecord:
    """Everything labinterp reads about one patient. Broken resources become Problems, each naming the
    resource and element (the caller decides whether they are fatal: strict mode); resources labinterp does
    not interpret are skipped. Problems found while splitting the Bundle for this patient come first."""
    facts, problems = patient_facts(pinput)
    record = PatientRecord(facts, problems=problems)
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
                if status in IGNORED_MED_STATUSES:
                    record.ignored.append(Ignored(ref, f"status {status}: {IGNORED_MED_STATUSES[status]}"))
                    continue
                med = extract_medication(resource, ref, medications, k)
                if med is not None:
                    record.medications.append(med)
        except ResourceError as exc:  # an Observation's are caught, and tagged, in _observation
            record.problems.append(Problem(exc.where, exc.what, "medication"))
        except (TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
            # a shape no reader expected: this resource is unusable, the patient's other results are not
            about = "" if resource.get("resourceType") == "Observation" else "medication"
            record.problems.append(Problem(ref.reference, f"could not be read: {type(exc).__name__}: {exc}", about))
    return record
