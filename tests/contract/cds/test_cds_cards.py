"""CDS Hooks calls: each hook with its prefetch complete; what the prefetch lacks fetched from an allowed FHIR server
with the call's access token (and a server not on the allow-list never contacted: 412); cards from the same pipeline
as the reports (the TDM advice is the DiagnosticReport's suggestion, word for word); the linezolid exposure risk and
first trough before the first dose; magnesium-lowering orders with low magnesium; malformed requests 400, never 500."""

from __future__ import annotations

import copy
import json
import logging
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import requests
import responses

from labinterp.errors import InputError
from labinterp.fhir.client import FhirClient
from labinterp.knowledge import Knowledge
from labinterp.pipeline import interpret_bundle
from labinterp.server.app import create_app
from labinterp.server.cds.cards import plain
from tests.builders import SCR, P
from tests.data.cds.cdskit import (
    FHIR,
    FUROSEMIDE,
    LINEZOLID,
    NOW,
    OMEPRAZOLE,
    PARACETAMOL,
    Signer,
    config,
    draft_orders,
    hook_body,
    matches,
    medication_request,
    patient_bundle,
    patient_resources,
    prefetch_for,
    searchset,
    url,
)

PATIENT_VIEW = "labinterp-patient-view"
LZ_SELECT, LZ_SIGN = "labinterp-linezolid-order-select", "labinterp-linezolid-order-sign"
MG_SELECT, MG_SIGN = "labinterp-magnesium-order-select", "labinterp-magnesium-order-sign"
ACCESS_TOKEN = "cds-access-token-4c1f9e"
SAME_COURSE = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)  # the morning of p01/p04/p18/p19's trough: their course runs
OTHER_EHR = "https://other-ehr.example.org/fhir"


def templates(app: Any, service: str) -> dict[str, str]:
    return dict(app.extensions["labinterp.cds"].catalog[service].prefetch)


def post(client: Any, signer: Signer, service: str, body: Any) -> Any:
    path = f"/cds-services/{service}"
    return client.post(path, json=body, headers={"Authorization": f"Bearer {signer.token(url(path))}"})


def cards_of(client: Any, signer: Signer, service: str, body: Any) -> list[dict[str, Any]]:
    resp = post(client, signer, service, body)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    cards = resp.get_json()["cards"]
    for card in cards:
        check_card(card)
    return cards


def check_card(card: dict[str, Any]) -> None:
    uuid.UUID(card["uuid"])
    assert isinstance(card["summary"], str) and 0 < len(card["summary"]) < 140
    assert card["indicator"] in ("info", "warning", "critical")
    assert card["source"]["label"] and card["source"]["url"].startswith("http")
    assert isinstance(card.get("detail", ""), str)
    for link in card.get("links", []):
        assert link["type"] == "absolute" and link["url"].startswith(f"{FHIR}/") and link["label"]
    if "suggestions" in card:
        assert card["selectionBehavior"] == "at-most-one"
        for s in card["suggestions"]:
            uuid.UUID(s["uuid"])
            assert s["label"] and s["actions"]
    for reason in card.get("overrideReasons", []):
        assert reason["system"] == "urn:labinterp:cds-override-reason" and reason["code"] and reason["display"]
    for value in card.values():
        assert value not in ("", [], {}, None)


def kinds(cards: list[dict[str, Any]]) -> list[str]:
    return [c["summary"].split(":")[0] for c in cards]


# --- patient-view ------------------------------------------------------------------------------


@pytest.mark.parametrize("pid", [f"p{n:02d}" for n in range(1, 20)])
def test_patient_view_every_example_patient(app: Any, client: Any, signer: Signer, pid: str) -> None:
    body = hook_body("patient-view", pid, prefetch_for(pid, templates(app, PATIENT_VIEW)))
    cards_of(client, signer, PATIENT_VIEW, body)


def test_patient_view_latest_interpretations(app: Any, client: Any, signer: Signer) -> None:
    cards = cards_of(
        client, signer, PATIENT_VIEW, hook_body("patient-view", "p01", prefetch_for("p01", templates(app, PATIENT_VIEW)))
    )
    lz = next(c for c in cards if c["summary"].startswith("Linezolid trough"))
    assert lz["summary"].startswith("Linezolid trough 1.5 mg/L: below the therapeutic range")
    assert lz["indicator"] == "warning" and lz["source"]["topic"]["code"] == "11502-2"
    assert "DiagnosticReport?identifier=urn%3Alabinterp%3Aseries" in lz["links"][0]["url"]
    genotype = next(c for c in cards if "CYP3A5" in c["summary"])
    assert genotype["summary"].startswith("Linezolid underexposure risk high") and genotype["indicator"] == "warning"
    assert "CYP3A5 \\*1/\\*3" in genotype["detail"]  # markdown-escaped, shown as written
    assert genotype["source"]["topic"]["code"] == "51969-4"
    assert next(c for c in cards if c["summary"].startswith("eGFR"))["indicator"] == "info"
    mg = cards_of(
        client, signer, PATIENT_VIEW, hook_body("patient-view", "p08", prefetch_for("p08", templates(app, PATIENT_VIEW)))
    )
    severe = next(c for c in mg if c["summary"].startswith("Serum magnesium"))
    assert severe["indicator"] == "critical" and "overrideReasons" in severe


def test_results_recognized_by_name_come_with_the_laboratory_key(app: Any, client: Any, signer: Signer) -> None:
    """p02's linezolid level has no code at all ("Linezolid trough level"): only the `laboratory` template selects it."""
    prefetch = prefetch_for("p02", templates(app, PATIENT_VIEW))
    assert "Linezolid trough level" not in str(prefetch["labs"])
    assert "Linezolid trough level" in str(prefetch["laboratory"])
    cards = cards_of(client, signer, PATIENT_VIEW, hook_body("patient-view", "p02", prefetch))
    lz = next(c for c in cards if c["summary"].startswith("Linezolid"))
    assert "recognized by its name" in lz["detail"] and lz["indicator"] == "warning"


# --- linezolid orders ----------------------------------------------------------------------------


def test_linezolid_order_with_genotype_exposure_risk_and_first_trough(app: Any, client: Any, signer: Signer) -> None:
    """p14: CYP3A5 *1/*1 (expresser), 73 years, no trough yet; the order starts 2026-01-21 08:00 (+01:00)."""
    lz_order = draft_orders("p14")[0]
    body = hook_body("order-select", "p14", prefetch_for("p14", templates(app, LZ_SELECT)), [lz_order])
    cards = cards_of(client, signer, LZ_SELECT, body)
    risk, timing = cards
    assert risk["summary"].startswith("Linezolid order: linezolid underexposure risk high")
    assert "CYP3A5 expresser" in risk["summary"] and risk["indicator"] == "warning"
    assert "25.9%" in risk["detail"] and "age 73 years" in risk["detail"]
    [suggestion] = risk["suggestions"]
    [action] = suggestion["actions"]
    request = action["resource"]
    assert action["type"] == "create" and request["resourceType"] == "ServiceRequest"
    assert request["status"] == "draft" and request["intent"] == "order"
    assert request["subject"] == {"reference": "Patient/p14"}
    assert request["basedOn"] == [{"reference": "MedicationRequest/draft-linezolid"}]
    assert request["code"]["coding"][0]["code"] == "LZD-P"  # the site's own linezolid code
    # 72 h of therapy at steady state: just before dose 7 of 600 mg every 12 h (seed 000 section 2.1)
    assert request["occurrenceDateTime"] == "2026-01-24T07:00:00Z"
    assert timing["indicator"] == "info" and "suggestions" not in timing  # the suggestion is on the risk card
    assert "2026-01-24 08:00 (UTC+01:00)" in timing["summary"] and "dose 7" in timing["summary"]
    # the same through order-sign
    sign = cards_of(
        client, signer, LZ_SIGN, hook_body("order-sign", "p14", prefetch_for("p14", templates(app, LZ_SIGN)), [lz_order])
    )
    assert [c["summary"] for c in sign] == [c["summary"] for c in cards]


def test_first_trough_on_the_ordered_interval(app: Any, client: Any, signer: Signer) -> None:
    """No genotype, 36 years, normal renal function: no high risk, so the trough suggestion is on the timing card."""
    p = P("c1", "female", "1990-05-01", "young, no genotype")
    p.lab(SCR, 0.8, "mg/dL", "2026-01-19T08:00:00Z")
    order = medication_request("lz8", "c1", LINEZOLID, 600, 8, start="2026-01-20T14:00:00Z")
    resources = p.resources
    prefetch = {
        key: (resources[0] if "?" not in t else searchset([r for r in resources if matches(r, t)]))
        for key, t in templates(app, LZ_SIGN).items()
    }
    cards = cards_of(client, signer, LZ_SIGN, hook_body("order-sign", "c1", prefetch, [order]))
    timing = next(c for c in cards if "first trough" in c["summary"])
    assert "dose 10" in timing["summary"]  # every 8 h: 72 h after the first dose, before the 10th
    request = timing["suggestions"][0]["actions"][0]["resource"]
    assert request["occurrenceDateTime"] == "2026-01-23T14:00:00Z"
    risk = next(c for c in cards if "risk" in c["summary"])
    assert "suggestions" not in risk and risk["indicator"] == "info"


@pytest.mark.parametrize("pid", ["p01", "p19", "p04"])
def test_existing_trough_gives_the_reports_tdm_advice(app: Any, client: Any, signer: Signer, site_k: Knowledge, pid: str) -> None:
    """One pipeline: the card's advice is the suggestion in the DiagnosticReport the pipeline writes for the same data.
    The order comes the morning of the trough, within the course (the last dose the evening before)."""
    app.extensions["labinterp.cds"].clock = lambda: SAME_COURSE
    run = interpret_bundle(patient_bundle(pid), site_k, SAME_COURSE, validate=False, with_provenance=False, render=False)
    [patient] = run.patients
    assert patient.findings.linezolid is not None
    advice = patient.findings.linezolid.suggestion.text
    report = next(w.resource for w in patient.written if w.kind == "linezolid")
    assert advice in report["conclusion"]
    order = medication_request("lz", pid, LINEZOLID, 600, 12)
    [card] = cards_of(client, signer, LZ_SIGN, hook_body("order-sign", pid, prefetch_for(pid, templates(app, LZ_SIGN)), [order]))
    assert card["summary"].startswith("Linezolid order: latest")
    assert f"TDM advice:** {advice}" in plain(card["detail"])
    band = patient.findings.linezolid.band
    assert band is not None
    assert (
        card["indicator"] == {"N": "info", "L": "warning", "H": "warning", "<": "warning", ">": "critical"}[band.interpretation]
    )


def test_no_linezolid_order_no_linezolid_card(app: Any, client: Any, signer: Signer) -> None:
    body = hook_body("order-sign", "p14", prefetch_for("p14", templates(app, LZ_SIGN)), [draft_orders("p14")[1]])
    assert cards_of(client, signer, LZ_SIGN, body) == []


# --- magnesium-lowering orders -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pid", "drug", "indicator", "named"),
    [
        ("p09", FUROSEMIDE, "warning", "Furosemide 40 mg tablet"),  # 0.55 mmol/L: hypomagnesemia
        ("p08", FUROSEMIDE, "critical", "Furosemide 40 mg tablet"),  # 1.0 mg/dL: severe
        ("p11", OMEPRAZOLE, "warning", "Omeprazole 20 mg capsule"),  # a proton pump inhibitor, by name
    ],
)
def test_low_magnesium_and_a_magnesium_lowering_order_warns(
    app: Any, client: Any, signer: Signer, pid: str, drug: dict[str, Any], indicator: str, named: str
) -> None:
    order = medication_request("mg-drug", pid, drug, 40, 24)
    for service, hook in ((MG_SELECT, "order-select"), (MG_SIGN, "order-sign")):
        [card] = cards_of(client, signer, service, hook_body(hook, pid, prefetch_for(pid, templates(app, service)), [order]))
        assert card["indicator"] == indicator
        assert card["summary"].startswith("Serum magnesium ") and "review the " in card["summary"]
        assert named.split()[0].lower() in card["summary"] and named not in card["summary"]  # the short name only
        assert "can lower serum magnesium further" in card["detail"]
        assert "**Ordered:** " in card["detail"] and named in card["detail"]
        assert "labinterp-cds-draft" not in card["detail"]
        assert card["overrideReasons"]


@pytest.mark.parametrize(("pid", "drug"), [("p14", FUROSEMIDE), ("p09", PARACETAMOL), ("p02", FUROSEMIDE)])
def test_no_magnesium_card_unless_low_and_lowering(app: Any, client: Any, signer: Signer, pid: str, drug: dict[str, Any]) -> None:
    """Normal magnesium (p14), a drug that does not lower it (p09), no magnesium at all (p02): no card."""
    order = medication_request("mg-drug", pid, drug, 40, 24)
    assert (
        cards_of(client, signer, MG_SIGN, hook_body("order-sign", pid, prefetch_for(pid, templates(app, MG_SIGN)), [order])) == []
    )


def test_order_select_reads_the_selected_orders(app: Any, client: Any, signer: Signer) -> None:
    drafts = [medication_request("para", "p09", PARACETAMOL, 1000, 8), medication_request("furo", "p09", FUROSEMIDE, 40, 24)]
    body = hook_body("order-select", "p09", prefetch_for("p09", templates(app, MG_SELECT)), drafts)
    body["context"]["selections"] = ["MedicationRequest/para"]
    assert cards_of(client, signer, MG_SELECT, body) == []
    body["context"]["selections"] = ["MedicationRequest/furo"]
    assert len(cards_of(client, signer, MG_SELECT, body)) == 1


# --- prefetch and fetching ----------------------------------------------------------------------


def serve(pid: str, base: str = FHIR) -> None:
    """A FHIR server holding the patient's resources, answering the templates' searches and the Patient read."""
    resources = patient_resources(pid)

    def search(request: Any) -> tuple[int, dict[str, str], str]:
        parts = urlsplit(request.url)
        template = parts.path.rsplit("/", 1)[-1] + "?" + unquote(parts.query)
        return (
            200,
            {"Content-Type": "application/fhir+json"},
            json.dumps(searchset([r for r in resources if matches(r, template)])),
        )

    patient = next(r for r in resources if r["resourceType"] == "Patient")
    responses.add(responses.GET, f"{base}/Patient/{pid}", json=patient)
    responses.add_callback(responses.GET, re.compile(re.escape(base) + r"/[A-Za-z]+\?.*"), callback=search)


@responses.activate
def test_missing_prefetch_fetched_from_an_allowed_server(
    app: Any, client: Any, signer: Signer, caplog: pytest.LogCaptureFixture
) -> None:
    serve("p09")
    order = medication_request("furo", "p09", FUROSEMIDE, 40, 24)
    full = cards_of(
        client, signer, MG_SIGN, hook_body("order-sign", "p09", prefetch_for("p09", templates(app, MG_SIGN)), [order])
    )
    assert len(responses.calls) == 0
    auth = {
        "access_token": ACCESS_TOKEN,
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/*.read",
        "subject": "labinterp",
    }
    partial = prefetch_for("p09", templates(app, MG_SIGN), leave_out=("labs", "medicationRequests"))
    with caplog.at_level(logging.DEBUG):
        cards = cards_of(
            client, signer, MG_SIGN, hook_body("order-sign", "p09", partial, [order], fhirServer=FHIR, fhirAuthorization=auth)
        )
        none = cards_of(
            client, signer, MG_SIGN, hook_body("order-sign", "p09", None, [order], fhirServer=FHIR, fhirAuthorization=auth)
        )
    assert [c["summary"] for c in cards] == [c["summary"] for c in full] == [c["summary"] for c in none]
    assert len(responses.calls) == 2 + len(templates(app, MG_SIGN))
    assert all(c.request.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}" for c in responses.calls)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert ACCESS_TOKEN not in logged and "p09" not in logged


@responses.activate
def test_a_server_not_on_the_allow_list_is_never_contacted(app: Any, client: Any, signer: Signer) -> None:
    serve("p09", OTHER_EHR)
    auth = {"access_token": ACCESS_TOKEN, "token_type": "Bearer"}
    body = hook_body("order-sign", "p09", None, [], fhirServer=OTHER_EHR, fhirAuthorization=auth)
    resp = post(client, signer, MG_SIGN, body)
    assert resp.status_code == 412 and resp.get_json()["resourceType"] == "OperationOutcome"
    assert "not contacted" in resp.get_json()["issue"][0]["diagnostics"]
    assert len(responses.calls) == 0
    assert ACCESS_TOKEN not in resp.get_data(as_text=True)


@responses.activate
def test_the_allow_list_setting(tmp_path: Path, signer: Signer) -> None:
    serve("p09", OTHER_EHR)
    app = create_app(config(tmp_path, signer, CDS_FHIR_SERVERS=f'["{OTHER_EHR}/", "https://third.example.org/fhir"]'))
    client = app.test_client()
    auth = {"access_token": ACCESS_TOKEN, "token_type": "Bearer"}
    ok = post(
        client,
        signer,
        MG_SIGN,
        hook_body("order-sign", "p09", None, [], fhirServer=OTHER_EHR.replace("other-ehr", "OTHER-EHR"), fhirAuthorization=auth),
    )
    assert ok.status_code == 200
    refused = post(client, signer, MG_SIGN, hook_body("order-sign", "p09", None, [], fhirServer=FHIR, fhirAuthorization=auth))
    assert refused.status_code == 412  # the configured FHIR base is not on an explicit list


@responses.activate
def test_an_allowed_server_that_refuses_is_412(app: Any, client: Any, signer: Signer) -> None:
    responses.add(responses.GET, re.compile(re.escape(FHIR) + r"/.*"), status=401, json={"resourceType": "OperationOutcome"})
    auth = {"access_token": ACCESS_TOKEN, "token_type": "Bearer"}
    resp = post(client, signer, MG_SIGN, hook_body("order-sign", "p09", None, [], fhirServer=FHIR, fhirAuthorization=auth))
    assert resp.status_code == 412 and "HTTP 401" in resp.get_json()["issue"][0]["diagnostics"]


def test_prefetch_incomplete_and_nowhere_to_fetch_is_412(app: Any, client: Any, signer: Signer) -> None:
    full = prefetch_for("p09", templates(app, MG_SIGN))
    missing = {k: v for k, v in full.items() if k != "labs"}
    assert post(client, signer, MG_SIGN, hook_body("order-sign", "p09", missing, [])).status_code == 412
    paged = copy.deepcopy(full)
    paged["labs"]["link"] = [{"relation": "next", "url": f"{FHIR}/Observation?page=2"}]
    assert post(client, signer, MG_SIGN, hook_body("order-sign", "p09", paged, [])).status_code == 412
    nobody = dict(full, patient=None)
    assert post(client, signer, MG_SIGN, hook_body("order-sign", "p09", nobody, [])).status_code == 412
    empty = {k: (v if k == "patient" else None) for k, v in full.items()}  # null: nothing found, not missing
    assert post(client, signer, MG_SIGN, hook_body("order-sign", "p09", empty, [])).status_code == 200


# --- malformed requests -------------------------------------------------------------------------


def _mutations() -> dict[str, Any]:
    def set_(path: str, value: Any) -> Any:
        def apply(body: dict[str, Any]) -> None:
            *head, last = path.split(".")
            target = body
            for key in head:
                target = target[key]
            if value is KeyError:
                del target[last]
            else:
                target[last] = value

        return apply

    return {
        "hook of another service": set_("hook", "patient-view"),
        "no hook": set_("hook", KeyError),
        "hookInstance not a UUID": set_("hookInstance", "1234"),
        "no hookInstance": set_("hookInstance", KeyError),
        "context not an object": set_("context", "p09"),
        "patientId not a FHIR id": set_("context.patientId", "p09/../../Patient"),
        "patientId a number": set_("context.patientId", 9),
        "no draftOrders": set_("context.draftOrders", KeyError),
        "draftOrders not a Bundle": set_("context.draftOrders", {"resourceType": "Parameters"}),
        "draftOrders entry without a resource": set_("context.draftOrders.entry", [{"fullUrl": "x"}]),
        "selections naming no draft": set_("context.selections", ["MedicationRequest/nope"]),
        "no selections": set_("context.selections", KeyError),
        "fhirAuthorization without fhirServer": set_("fhirAuthorization", {"access_token": "t", "token_type": "Bearer"}),
        "fhirServer not a URL": set_("fhirServer", "ftp://x"),
        "fhirServer with a query": set_("fhirServer", f"{FHIR}?_format=json"),
        "fhirServer unparsable": set_("fhirServer", "http://[::1/fhir"),
        "fhirServer port not a number": set_("fhirServer", "http://fhir.test:http/fhir"),
        "fhirAuthorization without a token": lambda b: b.update(fhirServer=FHIR, fhirAuthorization={"token_type": "Bearer"}),
        "fhirAuthorization not Bearer": lambda b: b.update(
            fhirServer=FHIR, fhirAuthorization={"access_token": "t", "token_type": "MAC"}
        ),
        "prefetch not an object": set_("prefetch", []),
        "prefetch value not a resource": set_("prefetch.labs", "Observation?patient=p09"),
        "prefetch Patient of another id": set_("prefetch.patient", {"resourceType": "Patient", "id": "p01"}),
        "prefetch of the wrong type": set_("prefetch.labs", searchset([{"resourceType": "Condition", "id": "c"}])),
        "prefetch about another patient": set_(
            "prefetch.labs", searchset([{"resourceType": "Observation", "id": "o", "subject": {"reference": "Patient/p01"}}])
        ),
        "draft order of another patient": set_(
            "context.draftOrders.entry", [{"resource": medication_request("furo", "p01", FUROSEMIDE, 40, 24)}]
        ),
    }


@pytest.mark.parametrize("case", list(_mutations()))
def test_malformed_requests_are_400(app: Any, client: Any, signer: Signer, case: str) -> None:
    drafts = [medication_request("furo", "p09", FUROSEMIDE, 40, 24)]
    body = hook_body("order-select", "p09", prefetch_for("p09", templates(app, MG_SELECT)), drafts)
    _mutations()[case](body)
    resp = post(client, signer, MG_SELECT, body)
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert resp.get_json()["resourceType"] == "OperationOutcome" and resp.get_json()["issue"][0]["code"] == "invalid"


@pytest.mark.parametrize("raw", [b"", b"not json", b"[1, 2]", b"{" * 100000, b"\xff\xfe"])
def test_unreadable_bodies_are_400(client: Any, signer: Signer, raw: bytes) -> None:
    path = f"/cds-services/{PATIENT_VIEW}"
    resp = client.post(
        path, data=raw, content_type="application/json", headers={"Authorization": f"Bearer {signer.token(url(path))}"}
    )
    assert resp.status_code == 400 and resp.get_json()["resourceType"] == "OperationOutcome"


# --- fhirServer and fhirAuthorization as sent ------------------------------------------------------------


@pytest.mark.parametrize(
    "server",
    [
        f"{FHIR}\t",  # urlsplit drops the tab: the allow-list matched, the request went to /fhir%09
        f" {FHIR}",
        f"{FHIR}?",  # an empty query: GET /fhir?/Patient/...
        f"{FHIR}#",  # an empty fragment: GET /fhir
        "http://fhir.test\n/fhir",  # urlsplit drops the newline; the HTTP library refused it (500)
        "http://fhir.test/fh\rir",
        "http://fhir.test/fhir\x00",
        "http://@fhir.test/fhir",  # empty userinfo
        "http://user@fhir.test/fhir",
        "http://evil.example.org\\@fhir.test/fhir",
        "http://fhir.test/fhïr",
        "http://fhir.test:99999/fhir",
    ],
)
@responses.activate
def test_a_fhir_server_of_another_shape_is_400_and_never_contacted(app: Any, client: Any, signer: Signer, server: str) -> None:
    responses.add_callback(responses.GET, re.compile(r".*"), callback=lambda r: (200, {}, "{}"))
    auth = {"access_token": ACCESS_TOKEN, "token_type": "Bearer"}
    resp = post(client, signer, MG_SIGN, hook_body("order-sign", "p09", None, [], fhirServer=server, fhirAuthorization=auth))
    assert resp.status_code == 400, resp.get_data(as_text=True)
    issue = resp.get_json()["issue"][0]
    assert issue["code"] == "invalid" and issue["diagnostics"].startswith("fhirServer")
    assert len(responses.calls) == 0


@responses.activate
def test_the_url_requested_is_the_url_compared(tmp_path: Path, signer: Signer) -> None:
    """Scheme, host and trailing slash as the allow-list compares them; an IPv6 host keeps its brackets."""
    base = "http://[::1]:8394/fhir"
    serve("p09", base)
    app = create_app(config(tmp_path, signer, CDS_FHIR_SERVERS=json.dumps([base])))
    app.extensions["labinterp.cds"].clock = lambda: NOW
    auth = {"access_token": ACCESS_TOKEN, "token_type": "Bearer"}
    body = hook_body("order-sign", "p09", None, [], fhirServer="HTTP://[::1]:8394/fhir/", fhirAuthorization=auth)
    assert post(app.test_client(), signer, MG_SIGN, body).status_code == 200
    assert responses.calls and all(c.request.url.startswith(f"{base}/") for c in responses.calls)


@pytest.mark.parametrize(
    ("token", "kind"),
    [
        ("abc\r\nX-Evil: 1", "Bearer"),  # was a 500 (the HTTP library refused the header)
        ("abc def", "Bearer"),
        ("tökén", "Bearer"),
        (" abc", "Bearer"),
        ("=abc", "Bearer"),
        ("x" * 20000, "Bearer"),
        ("abc", "bearer token"),
        ("abc", None),
    ],
)
@responses.activate
def test_an_access_token_that_is_no_bearer_token_is_400(
    app: Any, client: Any, signer: Signer, token: str, kind: str | None
) -> None:
    serve("p09")
    auth: dict[str, Any] = {"access_token": token}
    if kind is not None:
        auth["token_type"] = kind
    resp = post(client, signer, MG_SIGN, hook_body("order-sign", "p09", None, [], fhirServer=FHIR, fhirAuthorization=auth))
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert resp.get_json()["issue"][0]["diagnostics"].startswith("fhirAuthorization.")
    assert token not in resp.get_data(as_text=True) and len(responses.calls) == 0


@pytest.mark.parametrize(
    "failure",
    [
        requests.exceptions.InvalidHeader("Invalid leading whitespace, reserved character(s), or return character(s)"),
        requests.exceptions.InvalidURL("Failed to parse"),
        requests.exceptions.TooManyRedirects("loop"),
        ValueError("Invalid header value"),
    ],
)
def test_a_request_the_http_library_refuses_is_412_not_500(app: Any, client: Any, signer: Signer, failure: Exception) -> None:
    class Refusing(requests.Session):
        def request(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            raise failure

    app.extensions["labinterp.cds"].client_factory = lambda base, token: FhirClient(base, token=token, session=Refusing())
    auth = {"access_token": ACCESS_TOKEN, "token_type": "Bearer"}
    resp = post(client, signer, MG_SIGN, hook_body("order-sign", "p09", None, [], fhirServer=FHIR, fhirAuthorization=auth))
    assert resp.status_code == 412, resp.get_data(as_text=True)
    assert resp.get_json()["resourceType"] == "OperationOutcome" and ACCESS_TOKEN not in resp.get_data(as_text=True)


# --- what a clinical pharmacologist reads -----------------------------------------------------------------


def report_headline(site_k: Knowledge, pid: str, kind: str, now: datetime = NOW) -> str:
    run = interpret_bundle(patient_bundle(pid), site_k, now, validate=False, with_provenance=False, render=False)
    view = next(w.view for p in run.patients for w in p.written if w.kind == kind)
    assert view is not None
    return view.headline


@pytest.mark.parametrize(
    ("pid", "kind", "shown"),
    [
        ("p18", "linezolid", "35 umol/L (11.81 mg/L)"),
        ("p09", "magnesium", "0.55 mmol/L (1.337 mg/dL)"),
        ("p02", "linezolid", "12.4 ug/mL (12.40 mg/L)"),
    ],
)
def test_the_value_in_the_ranges_unit_is_shown_as_the_report_shows_it(
    app: Any, client: Any, signer: Signer, site_k: Knowledge, pid: str, kind: str, shown: str
) -> None:
    assert shown in report_headline(site_k, pid, kind)
    cards = cards_of(
        client, signer, PATIENT_VIEW, hook_body("patient-view", pid, prefetch_for(pid, templates(app, PATIENT_VIEW)))
    )
    [card] = [c for c in cards if c["source"].get("topic", {}).get("code") == "11502-2" and shown.split()[0] in c["summary"]]
    assert shown in card["summary"] and shown in plain(card["detail"])


def test_the_magnesium_order_card_shows_the_converted_value(app: Any, client: Any, signer: Signer) -> None:
    order = medication_request("furo", "p09", FUROSEMIDE, 40, 24)
    [card] = cards_of(
        client, signer, MG_SIGN, hook_body("order-sign", "p09", prefetch_for("p09", templates(app, MG_SIGN)), [order])
    )
    assert "0.55 mmol/L (1.337 mg/dL)" in card["summary"] and "0.55 mmol/L (1.337 mg/dL)" in plain(card["detail"])


def test_the_order_tdm_card_shows_the_converted_value(app: Any, client: Any, signer: Signer) -> None:
    app.extensions["labinterp.cds"].clock = lambda: SAME_COURSE
    order = medication_request("lz", "p18", LINEZOLID, 600, 12)
    [card] = cards_of(
        client, signer, LZ_SIGN, hook_body("order-sign", "p18", prefetch_for("p18", templates(app, LZ_SIGN)), [order])
    )
    assert card["summary"].startswith("Linezolid order: latest trough 35 umol/L (11.81 mg/L), above the therapeutic range")


LONG_OMEPRAZOLE = {
    "text": "Omeprazole 40 mg delayed-release oral capsule, take 1 capsule by mouth once daily 30 minutes before breakfast "
    "with a full glass of water, do not crush or chew, for 8 weeks, then reassess the need for acid suppression"
}


@pytest.mark.parametrize(("pid", "level"), [("p09", "0.55 mmol/L (1.337 mg/dL)"), ("p08", "1 mg/dL")])
def test_a_long_prescription_text_never_pushes_the_level_or_the_action_out(
    app: Any, client: Any, signer: Signer, pid: str, level: str
) -> None:
    order = medication_request("ppi", pid, LONG_OMEPRAZOLE, 40, 24)
    [card] = cards_of(client, signer, MG_SIGN, hook_body("order-sign", pid, prefetch_for(pid, templates(app, MG_SIGN)), [order]))
    summary = card["summary"]
    assert summary.startswith(f"Serum magnesium {level}") and "hypomagnesemia" in summary
    assert "review the omeprazole order" in summary and "…" not in summary
    assert LONG_OMEPRAZOLE["text"] in plain(card["detail"])  # the full text is in the detail


@pytest.mark.parametrize(("pid", "level"), [("p12", "overexposure risk not assessable"), ("p14", "overexposure risk moderate")])
def test_genotype_summaries_lead_with_the_risk_level(app: Any, client: Any, signer: Signer, pid: str, level: str) -> None:
    cards = cards_of(
        client, signer, PATIENT_VIEW, hook_body("patient-view", pid, prefetch_for(pid, templates(app, PATIENT_VIEW)))
    )
    [genotype] = [c for c in cards if c["source"].get("topic", {}).get("code") == "51969-4"]
    assert genotype["summary"].startswith("Linezolid underexposure risk ") and level in genotype["summary"]


def administration(pid: str, n: int, at: str) -> dict[str, Any]:
    return {
        "resourceType": "MedicationAdministration",
        "id": f"{pid}-new{n}",
        "status": "completed",
        "subject": {"reference": f"Patient/{pid}"},
        "medicationCodeableConcept": LINEZOLID,
        "effectiveDateTime": at,
        "dosage": {"dose": {"value": 600, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}},
    }


def _earlier_course(cards: list[dict[str, Any]]) -> dict[str, Any]:
    text = json.dumps(cards)
    assert "consider withholding" not in text and "TDM advice:" not in text  # the old trough's advice is nowhere
    [history] = [c for c in cards if "earlier course" in c["summary"]]
    assert "2026-01-15" in history["summary"] and "draw a new trough at steady state" in history["summary"]
    assert "A trough of an earlier course, 2026-01-15 08:00 (UTC+01:00): 12 mg/L, above the therapeutic range" in plain(
        history["detail"]
    )
    assert "it does not apply to the new order: draw a new trough at steady state" in plain(history["detail"])
    assert history["indicator"] == "info"
    assert any(c["summary"].startswith("Linezolid order: draw the first trough at") for c in cards)  # kept
    return history


def test_a_trough_of_a_course_that_ended_months_ago_is_history(app: Any, client: Any, signer: Signer) -> None:
    """p19's trough of 12 mg/L (2026-01-15; last dose the evening before): a new order in May starts a new course."""
    app.extensions["labinterp.cds"].clock = lambda: datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
    order = medication_request("lz", "p19", LINEZOLID, 600, 12)
    cards = cards_of(
        client, signer, LZ_SIGN, hook_body("order-sign", "p19", prefetch_for("p19", templates(app, LZ_SIGN)), [order])
    )
    history = _earlier_course(cards)
    assert "2026-01-14 20:00 (UTC+01:00), more than 48 h before now" in plain(history["detail"])
    risk = next(c for c in cards if "risk" in c["summary"])
    assert "measurement outranks the prior" not in risk["detail"]  # the risk before this course's first dose
    assert "A trough of an earlier course" in plain(risk["detail"])


def test_a_trough_before_the_current_course_began_is_history(app: Any, client: Any, signer: Signer) -> None:
    """A new course already running (doses from 2026-05-01), then a new order: the January trough is not of it."""
    app.extensions["labinterp.cds"].clock = lambda: datetime(2026, 5, 2, 9, 0, tzinfo=UTC)
    prefetch = prefetch_for("p19", templates(app, LZ_SIGN))
    given = [administration("p19", n, at) for n, at in enumerate(["2026-05-01T08:00:00+02:00", "2026-05-01T20:00:00+02:00"])]
    prefetch["medicationAdministrations"]["entry"] += [{"resource": r} for r in given]
    order = medication_request("lz", "p19", LINEZOLID, 600, 12)
    history = _earlier_course(cards_of(client, signer, LZ_SIGN, hook_body("order-sign", "p19", prefetch, [order])))
    assert "the current course began with the dose of 2026-05-01 07:00 (UTC+01:00)" in plain(history["detail"])


def test_a_trough_whose_course_cannot_be_told_keeps_its_advice_with_the_caveat(app: Any, client: Any, signer: Signer) -> None:
    prefetch = prefetch_for("p19", templates(app, LZ_SIGN))
    prefetch["medicationAdministrations"] = None  # no administration recorded
    order = medication_request("lz", "p19", LINEZOLID, 600, 12)
    [card] = cards_of(client, signer, LZ_SIGN, hook_body("order-sign", "p19", prefetch, [order]))
    assert card["summary"].startswith("Linezolid order: latest trough 12 mg/L")
    assert plain(card["detail"]).startswith("**Course:** Sampled 2026-01-15 08:00 (UTC+01:00); no linezolid administration is")


def test_a_draft_starting_at_the_end_of_time_is_200(app: Any, client: Any, signer: Signer) -> None:
    """boundsPeriod.start 9999-12-31T23:00:00+14:00 was an OverflowError (500)."""
    order = medication_request("lz", "p14", LINEZOLID, 600, 12, start="9999-12-31T23:00:00+14:00")
    for service, hook in ((LZ_SIGN, "order-sign"), (LZ_SELECT, "order-select")):
        cards = cards_of(client, signer, service, hook_body(hook, "p14", prefetch_for("p14", templates(app, service)), [order]))
        assert not any(c["summary"].startswith("Linezolid order: draw the first trough at") for c in cards)
        [timing] = [c for c in cards if "first trough" in c["summary"]]
        assert "cannot be computed" in timing["summary"] and "suggestions" not in timing


@pytest.mark.parametrize("failure", [OverflowError("date value out of range"), InputError("x", "cannot be planned")])
def test_a_first_trough_that_fails_is_a_card_saying_so(
    app: Any, client: Any, signer: Signer, monkeypatch: pytest.MonkeyPatch, failure: Exception
) -> None:
    def fails(*args: Any) -> None:
        raise failure

    monkeypatch.setattr("labinterp.server.cds.order_cards.first_trough", fails)
    order = medication_request("lz", "p14", LINEZOLID, 600, 12, start="2026-01-21T08:00:00+01:00")
    cards = cards_of(
        client, signer, LZ_SIGN, hook_body("order-sign", "p14", prefetch_for("p14", templates(app, LZ_SIGN)), [order])
    )
    risk, timing = cards
    assert "suggestions" not in risk and "suggestions" not in timing
    assert "cannot be computed" in timing["summary"] and "72 h of therapy" in timing["detail"]
