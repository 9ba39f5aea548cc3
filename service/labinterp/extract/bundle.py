"""Splits an input Bundle into one group of resources per patient, resolving references.

Accepts Bundle.type collection, searchset, transaction and batch. Input that is not FHIR at all (not a
Bundle, an entry without a resource, a Bundle none of whose entries is a FHIR resource) raises a BundleError
naming the entry. A problem of one resource (no id, no resourceType beside other resources, a subject that
cannot be resolved, two different resources under one id) is a Problem: on the patient's input when its
subject says whose it is, otherwise on the Bundle's; the caller decides (strict mode fails). Identical
copies of one resource are read once."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from labinterp.errors import BundleError, ResourceError
from labinterp.extract.facts import Problem, SourceRef, shown

ACCEPTED_TYPES = ("collection", "searchset", "transaction", "batch")
PATIENT_DATA = ("Observation", "MedicationRequest", "MedicationStatement", "MedicationAdministration")


def content_version(resource: dict[str, Any]) -> str:
    """meta.versionId when present, otherwise a hash of the resource's content (so changed content changes it)."""
    meta = resource.get("meta")
    vid = meta.get("versionId") if isinstance(meta, dict) else None
    if isinstance(vid, str) and vid:
        return vid
    body = {k: v for k, v in resource.items() if k != "meta"}
    return "sha256-" + hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def source_ref(resource: dict[str, Any], full_url: str | None) -> SourceRef:
    rtype = resource["resourceType"]
    rid = resource.get("id")
    if rid.__class__ is str and rid:  # the common case first: a plain str id, its meta.versionId
        meta = resource.get("meta")
        vid = meta.get("versionId") if meta.__class__ is dict else None
        if vid.__class__ is str and vid:
            return SourceRef(rtype, rid, vid, f"{rtype}/{rid}")
    if isinstance(rid, str) and rid:
        reference = f"{rtype}/{rid}"
    elif full_url:
        reference = full_url
        rid = full_url
    else:
        raise ResourceError(f"{rtype} (no id)", "a resource needs an id or a fullUrl to be referenced")
    return SourceRef(rtype, rid, content_version(resource), reference)


@dataclass
class PatientInput:
    patient: dict[str, Any]
    patient_ref: SourceRef
    resources: list[tuple[dict[str, Any], SourceRef]] = field(default_factory=list)
    # this patient's resources with neither id nor fullUrl, with where they are: nothing written could point at
    # them; extraction lists those it recognises (a Problem), and skips the rest like any resource it does not read
    unreferenceable: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)  # found while splitting: e.g. two different copies of one id


@dataclass
class InputBundle:
    patients: list[PatientInput]
    medications: dict[str, dict[str, Any]]  # Medication resources by every key they can be referenced as
    problems: list[Problem] = field(default_factory=list)  # resources that belong to no patient of this Bundle


def _keys(resource: dict[str, Any], full_url: str | None) -> list[str]:
    keys = []
    if full_url:
        keys.append(full_url)
    rid = resource.get("id")
    if isinstance(rid, str) and rid:
        keys.append(f"{resource['resourceType']}/{rid}")
    return keys


def normalize_reference(ref: str) -> str:
    """Absolute server URLs reduce to Type/id; _history suffixes are dropped."""
    if ref.startswith(("http://", "https://")):
        parts = ref.rstrip("/").split("/")
        if "_history" in parts:
            parts = parts[: parts.index("_history")]
        if len(parts) >= 2:
            return f"{parts[-2]}/{parts[-1]}"
    if "/_history/" in ref:
        return ref.split("/_history/")[0]
    return ref


Entry = tuple[dict[str, Any], SourceRef | None, str]  # a resource, its reference (None: it has no id), where it is


def split_bundle(bundle: Any) -> InputBundle:
    """The Bundle's resources grouped by patient: read the entries, read each resource once, index what can be
    referenced, then attribute each result and medication to its Patient."""
    btype, entries = _checked_bundle(bundle)
    problems: list[Problem] = []
    ordered, full_urls = _entries(btype, entries, problems)
    ordered, conflicts = _deduplicated(ordered, problems)
    index, medications = _index(ordered, full_urls)
    patients = _patients(ordered, problems)
    _attribute(ordered, index, patients, problems)
    for resource, _ref, problem in conflicts:  # on the patient's input when its subject says whose it is
        if resource.get("subject") is None and is_batch_data(resource, index):
            continue  # a formulation batch's: labinterp.extract.batch names it on its batch
        try:
            whose = _subject(resource, problem.where, index).reference
        except ResourceError:
            whose = ""
        (patients[whose].problems if whose in patients else problems).append(problem)
    return InputBundle(list(patients.values()), medications, problems)


def _checked_bundle(bundle: Any) -> tuple[str, list[Any]]:
    """Bundle.type and Bundle.entry, or a BundleError when the input is not a Bundle labinterp reads."""
    if not isinstance(bundle, dict):
        raise BundleError("input", f"expected a FHIR Bundle (a JSON object), found {type(bundle).__name__}")
    rtype = bundle.get("resourceType")
    if rtype != "Bundle":
        raise BundleError("input", f"expected resourceType 'Bundle', found {shown(rtype)}")
    btype = bundle.get("type")
    if btype not in ACCEPTED_TYPES:
        raise BundleError("Bundle.type", f"{shown(btype)} is not one of {', '.join(ACCEPTED_TYPES)}")
    entries = bundle.get("entry")
    if entries is None:
        return btype, []
    if not isinstance(entries, list):
        raise BundleError("Bundle.entry", "must be a list")
    return btype, entries


def _entries(btype: str, entries: list[Any], problems: list[Problem]) -> tuple[list[Entry], dict[str, str | None]]:
    """Each entry's resource with its reference and place; the fullUrl of each place. A DELETE of a transaction
    carries no resource and is skipped; an entry that is not a FHIR resource, beside others that are, is left
    out with a Problem (a Bundle of none is not FHIR: BundleError)."""
    ordered: list[Entry] = []
    untyped: list[BundleError] = []
    full_urls: dict[str, str | None] = {}
    for i, entry in enumerate(entries):
        where = f"Bundle.entry[{i}]"
        if not isinstance(entry, dict):
            raise BundleError(where, "an entry must be a JSON object")
        resource = entry.get("resource")
        if resource is None:
            request = entry.get("request")
            if btype in ("transaction", "batch") and isinstance(request, dict) and request.get("method") == "DELETE":
                continue
        if not isinstance(resource, dict):
            raise BundleError(where, "entry has no resource")
        res_type = resource.get("resourceType")
        if not isinstance(res_type, str) or not res_type:
            untyped.append(BundleError(f"{where}.resource", "has no resourceType: not a FHIR resource"))
            continue
        full_url = entry.get("fullUrl")
        if full_url is not None and not isinstance(full_url, str):
            full_url = None
        try:
            ref: SourceRef | None = source_ref(resource, full_url)
        except ResourceError:
            ref = None  # cannot be referenced: a Problem later, for the resources labinterp reads
        full_urls[where] = full_url
        ordered.append((resource, ref, where))
    if untyped and not ordered:
        raise untyped[0]
    problems += [Problem(e.where, e.what) for e in untyped]
    return ordered, full_urls


def _index(
    ordered: list[Entry], full_urls: dict[str, str | None]
) -> tuple[dict[str, tuple[dict[str, Any], SourceRef]], dict[str, dict[str, Any]]]:
    """Every resource by every key it can be referenced as (fullUrl, Type/id); the Medications among them."""
    index: dict[str, tuple[dict[str, Any], SourceRef]] = {}
    medications: dict[str, dict[str, Any]] = {}
    for resource, ref, where in ordered:
        if ref is None:
            continue
        hit = (resource, ref)
        full_url = full_urls[where]
        if full_url:  # the keys of _keys, in its order, without a list for each resource
            index[full_url] = hit
        rid = resource.get("id")
        key = f"{resource['resourceType']}/{rid}" if isinstance(rid, str) and rid else None
        if key is not None:
            index[key] = hit
        if resource["resourceType"] == "Medication":
            for k in _keys(resource, full_url):
                medications[k] = resource
    return index, medications


def _patients(ordered: list[Entry], problems: list[Problem]) -> dict[str, PatientInput]:
    patients: dict[str, PatientInput] = {}
    for resource, ref, where in ordered:
        if resource["resourceType"] != "Patient":
            continue
        if ref is None:
            problems.append(Problem(f"Patient ({where})", f"{NO_ID}: its results cannot be attributed to it"))
        else:
            patients.setdefault(ref.reference, PatientInput(resource, ref))
    return patients


def _attribute(
    ordered: list[Entry],
    index: dict[str, tuple[dict[str, Any], SourceRef]],
    patients: dict[str, PatientInput],
    problems: list[Problem],
) -> None:
    """Each result and medication onto its Patient's input; one whose Patient cannot be told is a Problem."""
    for resource, ref, where in ordered:
        if resource["resourceType"] not in PATIENT_DATA:
            continue
        if resource.get("subject") is None and is_batch_data(resource, index):
            continue  # a formulation batch's result: read by labinterp.extract.batch, not a patient's
        label = f"{ref.reference} ({where})" if ref else f"{resource['resourceType']} ({where})"
        try:
            patient_ref = _subject(resource, label, index)
        except ResourceError as exc:
            problems.append(Problem(exc.where, exc.what))
            continue
        if ref is None:
            patients[patient_ref.reference].unreferenceable.append((resource, label))
        else:
            patients[patient_ref.reference].resources.append((resource, ref))


def _deduplicated(
    ordered: list[Entry], problems: list[Problem]
) -> tuple[list[Entry], list[tuple[dict[str, Any], SourceRef, Problem]]]:
    """One copy of each resource. Identical copies are read once. A second Patient with the same id and other
    content: the first is used, with a Problem. Two different resources of another type under one id: which is
    right cannot be told, so both are left out, each with a Problem (returned with the resource, to be put on
    its patient's input)."""
    first: dict[str, int] = {}  # each reference's first place
    copies: dict[str, list[int]] = {}  # the places of references that occur more than once (rare)
    for n, (_resource, ref, _where) in enumerate(ordered):
        if ref is not None:
            seen = first.setdefault(ref.reference, n)
            if seen != n:
                copies.setdefault(ref.reference, [seen]).append(n)
    keep = [True] * len(ordered)
    conflicts: list[tuple[dict[str, Any], SourceRef, Problem]] = []
    if not copies:
        return ordered, conflicts
    for reference in sorted(copies, key=first.__getitem__):  # in the order of their first places
        ns = copies[reference]
        original, _ref, first_where = ordered[first[reference]]
        differing = [n for n in ns[1:] if ordered[n][0] != original]
        for n in ns[1:]:
            if ordered[n][0] == original:
                keep[n] = False  # an identical copy: read once
        if not differing:
            continue
        if original["resourceType"] == "Patient":
            for n in differing:
                keep[n] = False
                problems.append(
                    Problem(
                        f"{reference} ({ordered[n][2]})",
                        f"a second {original['resourceType']} with this id and other content: the first ({first_where}) is used",
                        "patient",
                    )
                )
            continue
        wheres = ", ".join(ordered[n][2] for n in ns if keep[n])
        for n in ns:
            if keep[n]:
                keep[n] = False
                resource, ref, where = ordered[n]
                assert ref is not None
                conflicts.append(
                    (
                        resource,
                        ref,
                        Problem(
                            f"{reference} ({where})",
                            f"different resources share this id ({wheres}): which is right cannot be told, all are left out",
                            "",
                            ref,
                        ),
                    )
                )
    return [o for o, k in zip(ordered, keep, strict=True) if k], conflicts


NO_ID = "has neither an id nor a fullUrl"


def _target(value: Any, index: dict[str, tuple[dict[str, Any], SourceRef]]) -> dict[str, Any] | None:
    """The resource of this Bundle a Reference points at, or None."""
    if isinstance(value, dict) and isinstance(value.get("reference"), str):
        hit = index.get(normalize_reference(value["reference"]))
        return hit[0] if hit else None
    return None


def is_batch_data(resource: dict[str, Any], index: dict[str, tuple[dict[str, Any], SourceRef]]) -> bool:
    """An Observation about a formulation batch (SPEC section 5): its `focus` is a Substance of this Bundle, or its
    `specimen` a Specimen whose subject is one. Such results have no Patient subject (R4's Observation.subject cannot
    point at a Substance)."""
    if resource.get("resourceType") != "Observation":
        return False
    focus = resource.get("focus")
    for f in focus if isinstance(focus, list) else []:
        target = _target(f, index)
        if target is not None and target.get("resourceType") == "Substance":
            return True
        ref = f.get("reference") if isinstance(f, dict) else None
        if isinstance(ref, str) and normalize_reference(ref).startswith("Substance/"):
            return True  # a batch whose Substance is missing or unusable: labinterp.extract.batch names it
    specimen = _target(resource.get("specimen"), index)
    if specimen is not None and specimen.get("resourceType") == "Specimen":
        subject = _target(specimen.get("subject"), index)
        return subject is not None and subject.get("resourceType") == "Substance"
    return False


def _subject(resource: dict[str, Any], label: str, index: dict[str, tuple[dict[str, Any], SourceRef]]) -> SourceRef:
    """The Patient a resource is about; ResourceError when that cannot be told from this Bundle."""
    subject = resource.get("subject")
    if subject is None and resource["resourceType"] == "MedicationStatement":
        subject = resource.get("patient")
    if not isinstance(subject, dict) or not isinstance(subject.get("reference"), str):
        raise ResourceError(label, "subject.reference is missing: cannot tell whose result this is")
    target = normalize_reference(subject["reference"])
    if target not in index:  # the reference is not repeated: a conditional or logical one can carry an identifier
        raise ResourceError(
            f"{label} subject.reference",
            "is not a resource in this bundle (a Patient not included, or a conditional or logical reference): "
            "cannot tell whose result this is",
        )
    patient_res, patient_ref = index[target]
    if patient_res["resourceType"] != "Patient":
        raise ResourceError(
            f"{label} subject.reference", f"points at {patient_ref.reference}, a {patient_res['resourceType']}, not a Patient"
        )
    return patient_ref
