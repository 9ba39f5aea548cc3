"""CDS Hooks discovery: `GET /cds-services` lists the patient-view service and the linezolid and magnesium order
services, each with hook, id, title, description, usageRequirements and prefetch templates whose codes come from the
loaded knowledge (a site's own linezolid code included) and that keep to CDS Hooks' prefetch query restrictions."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from labinterp.knowledge import load_knowledge
from labinterp.server.app import create_app
from labinterp.server.cds.catalog import catalog
from tests.conftest import SITE
from tests.data.cds.cdskit import NOW, Signer, config, url

SERVICES = {
    "labinterp-patient-view": "patient-view",
    "labinterp-linezolid-order-select": "order-select",
    "labinterp-linezolid-order-sign": "order-sign",
    "labinterp-magnesium-order-select": "order-select",
    "labinterp-magnesium-order-sign": "order-sign",
}
# CDS Hooks 2.0 prefetch query restrictions: a read, or a type search with patient and token equality (no modifiers)
READ = re.compile(r"^Patient/\{\{context\.patientId\}\}$")
SEARCH = re.compile(r"^[A-Z][A-Za-z]+\?patient=\{\{context\.patientId\}\}(&(code|category)=[^&:{}]+(:[^&{}]+)?)*$")


@pytest.fixture
def client(tmp_path: Path, signer: Signer) -> Any:
    app = create_app(config(tmp_path, signer))
    app.extensions["labinterp.cds"].clock = lambda: NOW
    return app.test_client()


def discover(client: Any, signer: Signer) -> dict[str, Any]:
    resp = client.get("/cds-services", headers={"Authorization": f"Bearer {signer.token(url('/cds-services'))}"})
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    return resp.get_json()


def test_discovery_shape(client: Any, signer: Signer) -> None:
    services = {s["id"]: s for s in discover(client, signer)["services"]}
    assert {i: s["hook"] for i, s in services.items()} == SERVICES
    for s in services.values():
        assert set(s) == {"hook", "id", "title", "description", "prefetch", "usageRequirements"}
        assert all(isinstance(s[k], str) and s[k] for k in ("title", "description", "usageRequirements"))
        assert s["prefetch"]["patient"] == "Patient/{{context.patientId}}"
        for key, template in s["prefetch"].items():
            assert READ.match(template) or SEARCH.match(template), (key, template)
            assert template.count("{{") == 1 and "{{context.patientId}}" in template
        for key in ("laboratory", "medicationRequests", "medicationStatements", "medicationAdministrations", "labs"):
            assert key in s["prefetch"]


def test_prefetch_codes_come_from_the_knowledge(client: Any, signer: Signer) -> None:
    services = {s["id"]: s for s in discover(client, signer)["services"]}
    k = load_knowledge(SITE)
    lz, mg = services["labinterp-linezolid-order-sign"]["prefetch"], services["labinterp-magnesium-order-sign"]["prefetch"]
    site_code = next(c for c in k.analyte_codes if c.analyte == "linezolid")
    assert f"{site_code.system}|{site_code.code}" in lz["labs"]  # the site overlay's own code
    for c in k.analyte_codes:
        if c.analyte in ("magnesium", "potassium", "calcium_total"):
            assert f"{c.system}|{c.code}" in mg["labs"]
            assert f"|{c.code}" not in lz["labs"]
        if c.analyte == "creatinine":
            assert f"{c.system}|{c.code}" in lz["labs"] and f"{c.system}|{c.code}" in mg["labs"]
    loinc = k.output.systems["loinc"]
    assert f"{loinc}|{k.genomics.codes['genotype']}" in lz["genotypes"]
    assert f"{loinc}|{k.genomics.codes['variant']}" in lz["genotypes"]
    assert "genotypes" not in mg
    assert k.output.systems["observation_category"] + "|laboratory" in lz["laboratory"]
    patient_view = services["labinterp-patient-view"]["prefetch"]
    assert set(patient_view) >= set(lz) | set(mg)


def test_catalog_follows_the_mappings() -> None:
    """Without the site overlay there is no linezolid code: results named linezolid come with `laboratory`."""
    plain = catalog(load_knowledge())["labinterp-linezolid-order-sign"].prefetch
    assert "LZD-P" not in plain["labs"]
    assert "laboratory" in plain


def test_unknown_service_is_404(client: Any, signer: Signer) -> None:
    path = "/cds-services/no-such-service"
    resp = client.post(path, json={}, headers={"Authorization": f"Bearer {signer.token(url(path))}"})
    assert resp.status_code == 404 and resp.get_json()["resourceType"] == "OperationOutcome"


def test_cors_preflight_needs_no_token_and_answers_carry_the_origin_header(tmp_path: Path) -> None:
    """Browser-based CDS Clients (the CDS Hooks sandbox) send a preflight without Authorization."""
    from labinterp.server.app import create_app

    app = create_app({"QUEUE_PATH": str(tmp_path / "q.db"), "WORKDIR": str(tmp_path)})
    c = app.test_client()
    pre = c.options(
        "/cds-services/labinterp-patient-view",
        headers={"Origin": "https://sandbox.cds-hooks.org", "Access-Control-Request-Method": "POST"},
    )
    assert pre.status_code == 204 and "Authorization" in pre.headers["Access-Control-Allow-Headers"]
    assert pre.headers["Access-Control-Allow-Origin"] == "*"
    refused = c.get("/cds-services")  # no JWT: 401, still readable by the calling page
    assert refused.status_code == 401 and refused.headers["Access-Control-Allow-Origin"] == "*"
