"""Pure: a Bundle's formulation batches (microsphere QC, SPEC section 5) -> BatchRecord.

The FHIR model (docs/formulation-qc.md): the batch is a `Substance`; its samples are `Specimen`s whose `subject`
is the Substance; each measurement is an `Observation` with `focus` -> the Substance (and `specimen` -> a
Specimen), without a `subject` (R4's Observation.subject cannot reference a Substance). An Observation belongs to
a batch through its focus, or through its specimen's subject.

`split_batches` groups a Bundle's batch resources; `is_batch_resource` tells `split_bundle` which resources are
a batch's (not a patient's); `extract_batch` reads one batch: every value converted to labinterp's unit for its
measure (mappings/qc.toml). A resource that cannot be used (unknown code or unit, no value, a required component
missing, a value that is not a finite number) is left out with a Problem naming it and why, never quoting free
text, and never keeping the batch's other measures from being read."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from labinterp.errors import ResourceError
from labinterp.extract.batch_facts import BatchRecord, ParticleCount, QcValue, QualitativeFinding
from labinterp.extract.bundle import _checked_bundle, _deduplicated, _entries, _index, normalize_reference
from labinterp.extract.facts import FhirTime, Problem, SourceRef, kind_of, shown, shown_unit
from labinterp.extract.observations import (
    COMPARATORS,
    IGNORED_STATUSES,
    UCUM,
    USABLE_STATUSES,
    codings,
    concept_text,
    data_absent,
    effective_time,
)
from labinterp.knowledge import Knowledge
from labinterp.knowledge.model import QcComponent, QcMeasure

Index = Mapping[str, tuple[dict[str, Any], SourceRef]]
# documents an Observation's derivedFrom may point at (an image or a file of a qualitative method)
DOCUMENT_TYPES = ("DocumentReference", "Media", "Binary")


@dataclass
class BatchInput:
    """One batch: its Substance, and the Specimens and Observations that belong to it, as (resource, SourceRef),
    in Bundle order; where each is in the Bundle; documents its Observations' derivedFrom point at."""

    substance: dict[str, Any]
    substance_ref: SourceRef
    specimens: list[tuple[dict[str, Any], SourceRef]] = field(default_factory=list)
    observations: list[tuple[dict[str, Any], SourceRef]] = field(default_factory=list)
    places: dict[str, str] = field(default_factory=dict)  # reference -> "Bundle.entry[3]"
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)  # every key a document can be referenced as
    problems: list[Problem] = field(default_factory=list)  # found while splitting (e.g. a result without an id)

    def sample_keys(self) -> set[str]:
        """Every key this batch's samples can be referenced as."""
        keys = set()
        for res, ref in self.specimens:
            keys |= {ref.reference, normalize_reference(ref.reference)}
            if isinstance(res.get("id"), str):
                keys.add(f"Specimen/{res['id']}")
        return keys

    def label(self, ref: SourceRef) -> str:
        """ "Observation/abc (Bundle.entry[3])": where a Problem says the resource is."""
        place = self.places.get(ref.reference)
        return f"{ref.reference} ({place})" if place else ref.reference


# --- which resources are a batch's -----------------------------------------------------------------------


def _target(reference: Any) -> str | None:
    if isinstance(reference, dict) and isinstance(reference.get("reference"), str) and reference["reference"]:
        return normalize_reference(reference["reference"])
    return None


def _of_type(target: str | None, index: Index, rtype: str) -> bool:
    return target is not None and target in index and index[target][0].get("resourceType") == rtype


def _substance_of_specimen(specimen_target: str | None, index: Index) -> str | None:
    """The Substance (its index key) a referenced Specimen is a sample of, when both are in the Bundle."""
    if not _of_type(specimen_target, index, "Specimen"):
        return None
    assert specimen_target is not None
    subject = _target(index[specimen_target][0].get("subject"))
    return subject if _of_type(subject, index, "Substance") else None


def _focus_targets(resource: dict[str, Any]) -> list[str]:
    focus = resource.get("focus")
    items = focus if isinstance(focus, list) else [focus] if isinstance(focus, dict) else []
    return [t for t in (_target(f) for f in items) if t is not None]


def _batch_of(resource: dict[str, Any], index: Index) -> str | None:
    """The index key of the Substance an Observation or Specimen is about; "" when it names a Substance that is
    not in the Bundle; None when it is not a batch's resource.

    An Observation with a `subject` is about that subject (a patient's result), unless the subject is itself a
    Substance (not valid R4, but then plainly about the batch)."""
    rtype = resource.get("resourceType")
    if rtype == "Specimen":
        subject = _target(resource.get("subject"))
        if _of_type(subject, index, "Substance"):
            return subject
        return "" if subject is not None and subject.startswith("Substance/") and subject not in index else None
    if rtype != "Observation":
        return None
    subject = _target(resource.get("subject"))
    if subject is not None:
        return subject if _of_type(subject, index, "Substance") else None
    for focus in _focus_targets(resource):
        if _of_type(focus, index, "Substance"):
            return focus
    via_specimen = _substance_of_specimen(_target(resource.get("specimen")), index)
    if via_specimen is not None:
        return via_specimen
    if any(f.startswith("Substance/") and f not in index for f in _focus_targets(resource)):
        return ""
    return None


def is_batch_resource(resource: dict[str, Any], index: Index) -> bool:
    """True for a resource that belongs to a formulation batch, not to a patient: a Substance, a Specimen of a
    Substance, an Observation whose focus (or specimen's subject) is a Substance (also one not in the Bundle:
    split_batches reports it). `index` is every resource of the Bundle by every key it can be referenced as
    (bundle._index); an Observation with a Patient subject is never a batch's."""
    if resource.get("resourceType") == "Substance":
        return True
    return _batch_of(resource, index) is not None


def split_batches(bundle: Any) -> tuple[list[BatchInput], list[Problem]]:
    """The Bundle's batches (Substances that a Specimen or an Observation points at), each with its Specimens and
    Observations, and Problems of batch resources that belong to no batch of the Bundle. A Bundle that is not a
    Bundle raises BundleError, as split_bundle does; problems of the Bundle as a whole (an entry that is not a
    resource, a duplicate Patient) are split_bundle's to report, not repeated here."""
    btype, entries = _checked_bundle(bundle)
    ordered, full_urls = _entries(btype, entries, [])
    ordered, conflicts = _deduplicated(ordered, [])
    index, _medications = _index(ordered, full_urls)

    batches: dict[str, BatchInput] = {}
    problems: list[Problem] = []
    members: list[tuple[dict[str, Any], SourceRef | None, str, str]] = []  # resource, ref, where, its Substance
    for resource, ref, where in ordered:
        key = _batch_of(resource, index)
        if key is not None:
            members.append((resource, ref, where, key))
    for key in dict.fromkeys(k for _r, _ref, _w, k in members if k):
        substance, sref = index[key]
        binput = batches.setdefault(sref.reference, BatchInput(substance, sref))
        for place_key in (sref.reference, key):
            binput.places.setdefault(place_key, _place_of(substance, ordered))
    documents = {k: res for k, (res, _ref) in index.items() if res.get("resourceType") in DOCUMENT_TYPES}
    for resource, ref, where, key in members:
        label = f"{ref.reference} ({where})" if ref else f"{resource['resourceType']} ({where})"
        if not key:
            problems.append(
                Problem(
                    label,
                    "names a Substance that is not in this bundle (focus or subject): cannot tell which batch it is of",
                    "batch",
                    ref,
                )
            )
            continue
        binput = batches[index[key][1].reference]
        if ref is None:
            binput.problems.append(Problem(label, "has neither an id nor a fullUrl: a report could not point at it", "batch"))
            continue
        binput.places[ref.reference] = where
        (binput.specimens if resource["resourceType"] == "Specimen" else binput.observations).append((resource, ref))
    for binput in batches.values():
        binput.documents = documents
    # two different resources under one id (left out by _deduplicated): a batch's Observation or Specimen on its
    # batch; split_bundle reports the others (a Substance among them) on the Bundle
    for resource, _ref, problem in conflicts:
        key = _batch_of(resource, index)
        if key:
            substance, sref = index[key]
            batches.setdefault(sref.reference, BatchInput(substance, sref, documents=documents)).problems.append(problem)
    return list(batches.values()), problems


def _place_of(resource: dict[str, Any], ordered: list[tuple[dict[str, Any], SourceRef | None, str]]) -> str:
    return next((where for res, _ref, where in ordered if res is resource), "")


# --- reading one batch -----------------------------------------------------------------------------------


class _Skip(Exception):
    """An Observation left out on purpose, without a Problem (cancelled, entered in error, no value with a reason)."""


def extract_batch(binput: BatchInput, k: Knowledge) -> BatchRecord:
    """Everything labinterp reads about one batch. Pure; never raises for one bad resource (a Problem instead)."""
    sub = binput.substance
    system, code, name = _product(sub)
    record = BatchRecord(
        batch=binput.substance_ref,
        product_code=code,
        product_system=system,
        product_name=name,
        lot=_lot(sub),
        product_codings=_product_codings(sub),
        specimens=[ref for _res, ref in binput.specimens],
        problems=list(binput.problems),
    )
    # the readers below raise ResourceError(about, what): `about` is the measure key (or "batch"), which becomes the
    # Problem's `about`; the Problem's `where` is always the resource and its place in the Bundle
    for obs, ref in binput.observations:
        try:
            _read_observation(obs, ref, binput, k, record)
        except _Skip:
            continue
        except ResourceError as exc:
            record.problems.append(Problem(binput.label(ref), exc.what, exc.where, ref))
    _same_units(record, binput)
    return record


# characters XML 1.0 forbids (C0 controls but tab, LF and CR; U+FFFE/U+FFFF; lone surrogates): a narrative carrying
# one is not well-formed and no FHIR server would store the report
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff\ud800-\udfff]")


def _text(value: Any) -> str:
    """Free text as the report may show it: stripped, without the characters XML cannot carry."""
    return _NOT_XML.sub("", value).strip() if isinstance(value, str) else ""


def _product_codings(sub: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """Every (system, code) the Substance's product is coded with: a site's product may be any of them."""
    return tuple((_text(c.get("system")), _text(c.get("code"))) for c in codings(sub.get("code")) if _text(c.get("code")))


def _product(sub: dict[str, Any]) -> tuple[str, str, str]:
    concept = sub.get("code")
    first = next(iter(codings(concept)), {})
    system, code = _text(first.get("system")), _text(first.get("code"))
    name = _text(concept.get("text")) if isinstance(concept, dict) else ""
    return system, code, name or _text(first.get("display"))


def _lot(sub: dict[str, Any]) -> str:
    instances = sub.get("instance")
    first = instances[0] if isinstance(instances, list) and instances and isinstance(instances[0], dict) else {}
    identifier = first.get("identifier")
    return _text(identifier.get("value")) if isinstance(identifier, dict) else ""


def _recognize(concept: Any, k: Knowledge) -> tuple[str, str] | None:
    for c in codings(concept):
        hit = k.qc_key_for(c.get("system"), c.get("code"))
        if hit is not None:
            return hit
    return None


def _shown_code(concept: Any) -> str:
    """The codings of an unknown code as a warning may show them (code-like tokens only, never the text)."""
    found = [f"{shown(c.get('code'))}" for c in codings(concept)]
    return ", ".join(found[:3]) if found else "no coding"


def _read_observation(obs: dict[str, Any], ref: SourceRef, binput: BatchInput, k: Knowledge, record: BatchRecord) -> None:
    status = obs.get("status")
    if not isinstance(status, str):
        raise ResourceError("batch", f"status: {shown(status)} is not a FHIR Observation status")
    if status in IGNORED_STATUSES:
        raise _Skip
    if status not in USABLE_STATUSES:
        raise ResourceError("batch", f"status: {shown(status)} is not a FHIR Observation status")
    hit = _recognize(obs.get("code"), k)
    if hit is None:
        raise ResourceError(
            "batch",
            f"code: not a formulation QC code labinterp knows ({_shown_code(obs.get('code'))}); "
            "a laboratory's own code must be mapped in the site's QC settings",
        )
    what, key = hit
    sample = _target(obs.get("specimen"))
    if sample is not None and sample not in binput.sample_keys():
        raise ResourceError(
            key if what == "measure" else "batch",
            "specimen: not a sample of this batch (its Specimen's subject is another Substance, or the Specimen is "
            "not among the batch's): the result is left out rather than mixed into this batch's report",
        )
    if what != "measure" and what != "qualitative":
        raise ResourceError("batch", f"code: names a {what} ({key}), not a measurement")
    kind = next((name for name in obs if name.startswith("value")), None)
    if data_absent(obs) is not None and (kind is None or (kind == "valueQuantity" and _no_value(obs[kind]))):
        raise _Skip  # no value, and the laboratory says why: the measure is missing, as it would be without it
    if what == "qualitative":
        record.qualitative.append(_qualitative(obs, ref, key, binput))
        return
    measure = k.qc.measures[key]
    if measure.kind == "derived":
        raise ResourceError(key, f"code: {key} is computed by labinterp from the measurements, never read")
    time = _time(obs)
    if measure.kind == "particle_count":
        record.counts.append(_particle_count(obs, ref, key, measure, k, time, str(status)))
        return
    value, unit, original = _quantity(obs.get("valueQuantity"), kind, "valueQuantity", key, measure, k)
    conditions = _conditions(obs, key, measure, k)
    record.values.append(
        QcValue(
            measure=key,
            value=value,
            unit=unit,
            original=original,
            source=ref,
            time=time,
            status=str(status),
            elapsed_h=_float(conditions.get("elapsed_time")),
            elapsed_d=_float(conditions.get("storage_time")),
            medium=str(conditions.get("medium", "")),
            condition=str(conditions.get("storage_condition", "")),
            temperature_c=_float(conditions.get("temperature")),
            dry_weight_mg=_float(conditions.get("dry_weight")),
        )
    )


def _float(value: float | str | None) -> float | None:
    return value if isinstance(value, float) else None


def _no_value(quantity: Any) -> bool:
    return isinstance(quantity, dict) and quantity.get("value") is None


def _time(obs: dict[str, Any]) -> FhirTime | None:
    try:
        return effective_time(obs, "")
    except ResourceError as exc:
        raise ResourceError("batch", f"effective[x]: {exc.what}") from None


def _unit_of(quantity: dict[str, Any], k: Knowledge) -> str | None:
    code, unit = quantity.get("code"), quantity.get("unit")
    if isinstance(code, str) and code and quantity.get("system") in (UCUM, None):
        return k.qc.ucum(code)
    if isinstance(unit, str) and unit:
        return k.qc.ucum(unit)
    return k.qc.ucum(code) if isinstance(code, str) and code else None


def _number(quantity: Any, element: str, about: str) -> float:
    """A Quantity's value as a finite float; ResourceError when it is not one."""
    if not isinstance(quantity, dict):
        raise ResourceError(about, f"{element}: expected a Quantity, found {kind_of(quantity)}")
    value = quantity.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ResourceError(about, f"{element}.value: expected a number, found {shown(value)}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ResourceError(about, f"{element}.value: {shown(value)} is not a finite number")
    comparator = quantity.get("comparator")
    if comparator not in (None, ""):
        found = shown(comparator) if comparator in COMPARATORS else "a comparator"
        raise ResourceError(about, f"{element}.comparator: {found}: a QC result is graded as an exact value only")
    return number


def _unknown_unit(unit: str | None, accepted: tuple[str, ...], about: str, element: str) -> ResourceError:
    if not unit:
        return ResourceError(about, f"{element}: has no unit (expected {' or '.join(accepted)})")
    quoted = shown_unit(unit)
    said = f"unknown unit {quoted}" if quoted.startswith("'") else "unknown unit (not a unit token: not shown)"
    return ResourceError(about, f"{element}.unit: {said} for {about.replace('_', ' ')} (expected {' or '.join(accepted)})")


def _quantity(
    quantity: Any, kind: str | None, element: str, key: str, measure: QcMeasure, k: Knowledge
) -> tuple[float, str, str]:
    """(value in labinterp's unit, that unit, what the laboratory sent)."""
    if kind is None:
        raise ResourceError(key, "value[x]: no value and no dataAbsentReason")
    if kind != "valueQuantity":
        raise ResourceError(key, f"value[x]: expected valueQuantity, found {kind}")
    number = _number(quantity, element, key)
    unit = _unit_of(quantity, k)
    converted = measure.factor(unit) if unit else None
    if converted is None:
        raise _unknown_unit(unit, measure.accepted, key, element)
    if number < 0 and not measure.signed:
        raise ResourceError(key, f"{element}.value: {shown(number)} is negative: not a {key.replace('_', ' ')}")
    target, factor = converted
    if not math.isfinite(number * factor):
        raise ResourceError(key, f"{element}.value: {shown(number)} {shown_unit(unit)} is out of range once converted")
    return number * factor, target, f"{number:g} {unit}"


def _component_value(comp: dict[str, Any], i: int, ckey: str, spec: QcComponent, k: Knowledge, about: str) -> float | str:
    element = f"component[{i}]"
    if spec.kind == "text":
        if isinstance(comp.get("valueCodeableConcept"), dict):
            concept = comp["valueCodeableConcept"]
            text = _text(concept.get("text")) or next((_text(c.get("display")) for c in codings(concept) if c.get("display")), "")
        else:
            text = _text(comp.get("valueString"))
        if not text:
            raise ResourceError(
                about, f"{element}: the {spec.display.lower()} has no text (valueCodeableConcept.text or valueString)"
            )
        return " ".join(text.split())
    if "valueQuantity" not in comp:
        kind = next((name for name in comp if name.startswith("value")), None)
        raise ResourceError(
            about, f"{element}: expected valueQuantity for the {spec.display.lower()}, found {kind or 'no value'}"
        )
    quantity = comp["valueQuantity"]
    number = _number(quantity, f"{element}.valueQuantity", about)
    unit = _unit_of(quantity, k) if isinstance(quantity, dict) else None
    factor = spec.factor(unit) if unit else None
    if factor is None:
        raise _unknown_unit(unit, spec.accepted, about, f"{element}.valueQuantity")
    if number < 0 and ckey != "temperature":
        raise ResourceError(about, f"{element}.valueQuantity.value: {shown(number)} is negative")
    if not math.isfinite(number * factor):
        raise ResourceError(about, f"{element}.valueQuantity.value: {shown(number)} is out of range once converted")
    return number * factor


def _conditions(obs: dict[str, Any], key: str, measure: QcMeasure, k: Knowledge) -> dict[str, float | str]:
    """The components the measure may carry, read and converted; ResourceError for a required one missing or any
    of them unreadable. Components labinterp does not know are not read."""
    found: dict[str, float | str] = {}
    components = obs.get("component")
    for i, comp in enumerate(components if isinstance(components, list) else []):
        if not isinstance(comp, dict):
            continue
        hit = _recognize(comp.get("code"), k)
        if hit is None or hit[0] != "component" or hit[1] not in measure.conditions:
            continue
        ckey = hit[1]
        if ckey in found:
            raise ResourceError(key, f"component[{i}]: a second {k.qc.components[ckey].display.lower()}")
        found[ckey] = _component_value(comp, i, ckey, k.qc.components[ckey], k, key)
    if missing := [c for c in measure.required if c not in found]:
        names = ", ".join(k.qc.components[c].display.lower() for c in missing)
        raise ResourceError(key, f"component: no {names}, which every {measure.display.lower()} result needs")
    return found


def _particle_count(
    obs: dict[str, Any], ref: SourceRef, key: str, measure: QcMeasure, k: Knowledge, time: FhirTime | None, status: str
) -> ParticleCount:
    """A microscopy count: one diameter per component. One unreadable diameter leaves the whole count out (a count
    with particles dropped would misstate the distribution)."""
    spec = k.qc.components[measure.component]
    diameters: list[float] = []
    units: list[str] = []
    components = obs.get("component")
    for i, comp in enumerate(components if isinstance(components, list) else []):
        if not isinstance(comp, dict) or _recognize(comp.get("code"), k) != ("component", measure.component):
            continue
        value = _component_value(comp, i, measure.component, spec, k, key)
        assert isinstance(value, float)
        if value <= 0:
            raise ResourceError(key, f"component[{i}].valueQuantity.value: a particle diameter must be above 0")
        diameters.append(value)
        quantity = comp["valueQuantity"]
        units.append(_unit_of(quantity, k) or "")
    if not diameters:
        raise ResourceError(key, f"component: no {spec.display.lower()} (one component per counted particle)")
    return ParticleCount(tuple(diameters), ", ".join(dict.fromkeys(units)), ref, time, status)


def _qualitative(obs: dict[str, Any], ref: SourceRef, key: str, binput: BatchInput) -> QualitativeFinding:
    if _text(obs.get("valueString")):
        text = _text(obs["valueString"])
    elif isinstance(obs.get("valueCodeableConcept"), dict) and _text(concept_text(obs["valueCodeableConcept"])):
        text = _text(concept_text(obs["valueCodeableConcept"]))
    else:
        kind = next((name for name in obs if name.startswith("value")), None)
        raise ResourceError(key, f"value[x]: expected valueString (the finding in words), found {kind or 'no value'}")
    return QualitativeFinding(key, text, ref, _attachment_title(obs, binput))


def _attachment_title(obs: dict[str, Any], binput: BatchInput) -> str:
    """The title of the image or file a qualitative finding points at (derivedFrom), when it has one."""
    derived = obs.get("derivedFrom")
    for item in derived if isinstance(derived, list) else []:
        target = _target(item)
        if target is None or (target.split("/")[0] not in DOCUMENT_TYPES and target not in binput.documents):
            continue
        doc = binput.documents.get(target, {})
        content = doc.get("content")
        attachment = (
            content[0].get("attachment") if isinstance(content, list) and content and isinstance(content[0], dict) else content
        )
        for title in (
            _text(item.get("display")) if isinstance(item, dict) else "",
            _text(attachment.get("title")) if isinstance(attachment, dict) else "",
            _text(doc.get("description")),
        ):
            if title:
                return title
        return target
    return ""


def _same_units(record: BatchRecord, binput: BatchInput) -> None:
    """Values that are compared with each other must be in one unit: actual and theoretical drug content (their
    ratio is the entrapment efficiency), and the drug contents of one storage condition (retained % is relative to
    day 0). A value in the other family of units (mg vs % w/w) is left out with a Problem."""
    groups: dict[tuple[str, ...], list[QcValue]] = {}
    for v in record.values:
        if v.measure in ("drug_content_actual", "drug_content_theoretical"):
            groups.setdefault(("drug_content",), []).append(v)
        elif v.measure == "stability_drug_content":
            groups.setdefault(("stability", v.condition), []).append(v)
    dropped: set[int] = set()
    for group, values in groups.items():
        first = (
            next((v for v in values if v.measure == "drug_content_actual"), values[0])
            if group[0] == "drug_content"
            else min(values, key=lambda v: v.elapsed_d if v.elapsed_d is not None else math.inf)
        )
        for v in values:
            if v.unit != first.unit:
                dropped.add(id(v))
                whose = "the actual drug content" if group[0] == "drug_content" else "the first result of its storage condition"
                record.problems.append(
                    Problem(
                        binput.label(v.source),
                        f"{v.measure}: in {shown_unit(v.unit)}, {whose} in {shown_unit(first.unit)}: the two cannot be "
                        "compared (mass vs % w/w), this value is left out",
                        v.measure,
                        v.source,
                    )
                )
    record.values = [v for v in record.values if id(v) not in dropped]
