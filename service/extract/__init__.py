"""Pure: FHIR JSON → PatientRecord (Measurement, GenotypeCall, MedicationExposure, PatientFacts)."""

from __future__ import annotations

from typing import Any

from service.errors import ResourceError
from service.extract.bundle import InputBundle, PatientInput, split_bundle
from service.extract.facts import Ignored, PatientFacts, PatientRecord, Problem
from service.extract.fhirtime import parse_birth_date
from service.extract.genotypes import extract_genotype, is_genotype
from service.extract.medications import IGNORED as IGNORED_MED_STATUSES
from service.extract.medications import extract_medication
from service.extract.observations import IGNORED_STATUSES, USABLE_STATUSES, extract_measurement, recognize_analyte
from service.knowledge import Knowledge

__all__ = ["InputBundle", "PatientInput", "extract_patient", "split_bundle"]

SEXES = {"female", "male", "other", "unknown"}


def patient_facts(pinput: PatientInput) -> PatientFacts:
    res, ref = pinput.patient, pinput.patient_ref
    birth, precision = None, ""
    if res.get("birthDate") is not None:
        birth, precision = parse_birth_date(res["birthDate"], f"{ref.reference} birthDate")
    gender = res.get("gender", "unknown")
    if gender not in SEXES:
        raise ResourceError(f"{ref.reference} gender", f"{gender!r} is not one of {', '.join(sorted(SEXES))}")
    return PatientFacts(
        source=ref, birth_date=birth, birth_precision=precision, sex=gender, name=_name(res), identifier=_identifier(res)
    )


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
    if written_by_labinterp(obs, k):  # a derived eGFR of an earlier run is never an input: no feedback loop
        record.ignored.append(Ignored(ref, "written by labinterp"))
        return
    status = obs.get("status")
    if status in IGNORED_STATUSES:
        record.ignored.append(Ignored(ref, f"status {status}: {IGNORED_STATUSES[status]}"))
        return
    if status not in USABLE_STATUSES:
        raise ResourceError(f"{ref.reference} status", f"{status!r} is not an Observation status labinterp can use")
    if is_genotype(obs, k):
        record.genotypes.append(extract_genotype(obs, ref, k))
        return
    found = recognize_analyte(obs, k)
    if found is None:
        return
    analyte, matched_by, code_key = found
    m = extract_measurement(obs, ref, analyte, matched_by, code_key, k)
    if m is None:
        record.ignored.append(Ignored(ref, "no value (dataAbsentReason)"))
    else:
        record.measurements.append(m)


def extract_patient(pinput: PatientInput, medications: dict[str, dict[str, Any]], k: Knowledge) -> PatientRecord:
    """Everything labinterp reads about one patient. Broken resources become Problems (the caller decides
    whether they are fatal); resources labinterp does not interpret are skipped."""
    record = PatientRecord(patient_facts(pinput))
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
        except ResourceError as exc:
            record.problems.append(Problem(exc.where, exc.what))
    return record
