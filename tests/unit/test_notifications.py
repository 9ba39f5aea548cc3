"""Rest-hook notifications read without I/O (issue 8 point 6: the service does not parse them itself)."""

from __future__ import annotations

from typing import Any

import pytest

from labinterp.errors import BundleError
from labinterp.fhir.notifications import carried_resource, check_path, patient_of

OBS = {"resourceType": "Observation", "id": "o1", "subject": {"reference": "Patient/p1/_history/3"}}


@pytest.mark.parametrize(
    ("body", "patient"),
    [
        (OBS, "p1"),
        ({"resourceType": "Patient", "id": "p2"}, "p2"),
        ({"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "SubscriptionStatus"}}, {"resource": OBS}]}, "p1"),
        ({"resourceType": "Bundle", "entry": []}, None),
        ({"resourceType": "Observation", "subject": {"reference": "Group/g1"}}, None),
        ({"resourceType": "Observation"}, None),
    ],
)
def test_the_patient_a_notification_is_about(body: dict[str, Any], patient: str | None) -> None:
    resource = carried_resource(body)
    assert (patient_of(resource) if resource else None) == patient


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"resourceType": "Bundle", "entry": {"a": 1}}, "Bundle.entry"),
        ({"resourceType": "Bundle", "entry": [1]}, "Bundle.entry[0]"),
        ({"resourceType": "Observation", "subject": "Patient/x"}, "Observation.subject"),
        ({"resourceType": "Observation", "subject": {"reference": 5}}, "Observation.subject.reference"),
        ({"resourceType": "Observation", "subject": {"reference": "Patient/../../metadata"}}, "Observation.subject.reference"),
    ],
)
def test_wrong_shapes_name_the_element(body: dict[str, Any], where: str) -> None:
    with pytest.raises(BundleError) as caught:
        resource = carried_resource(body)
        if resource is not None:
            patient_of(resource)
    assert caught.value.where == where


@pytest.mark.parametrize(("rtype", "rid"), [("Observation", "../x"), ("Obs/ervation", "o1"), ("Observation", "a" * 65)])
def test_hook_paths_are_checked_before_any_read(rtype: str, rid: str) -> None:
    with pytest.raises(BundleError):
        check_path(rtype, rid)
