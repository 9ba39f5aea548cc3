"""What the CDS Hooks tests share: a CDS Client's signing keys and JWTs (real ES384 and RS384 signatures, and the
forged ones an attacker would try), the service configured to trust them, and hook requests built from the example
patients (tests/data/patients) with their prefetch filled the way an EHR fills the service's templates."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.conftest import SITE

ISSUER = "https://ehr.example.org"
FHIR = "http://fhir.test/fhir"  # labinterp's FHIR server, and the default allow-list
PATIENTS = Path(__file__).resolve().parents[1] / "patients"
HERE = Path(__file__).resolve().parent
NOW = datetime(2026, 1, 20, 12, 0, tzinfo=UTC)
ATC = "http://www.whocc.no/atc"
LINEZOLID = {"coding": [{"system": ATC, "code": "J01XX08", "display": "linezolid"}], "text": "Linezolid 600 mg"}
FUROSEMIDE = {"coding": [{"system": ATC, "code": "C03CA01", "display": "furosemide"}], "text": "Furosemide 40 mg tablet"}
OMEPRAZOLE = {"text": "Omeprazole 20 mg capsule"}  # recognized by name (magnesium_causes.csv)
PARACETAMOL = {"coding": [{"system": ATC, "code": "N02BE01", "display": "paracetamol"}], "text": "Paracetamol 1 g"}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Signer:
    """A CDS Client's keys: one EC P-384 (ES384) and one RSA (RS384), each with its kid."""

    ec_key: ec.EllipticCurvePrivateKey
    rsa_key: rsa.RSAPrivateKey
    iss: str = ISSUER
    ec_kid: str = "ec-1"
    rsa_kid: str = "rsa-1"

    @classmethod
    def generate(cls) -> Signer:
        return cls(ec.generate_private_key(ec.SECP384R1()), rsa.generate_private_key(public_exponent=65537, key_size=2048))

    def jwks(self) -> dict[str, Any]:
        ec_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.ec_key.public_key()))
        rsa_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.rsa_key.public_key()))
        ec_jwk.update({"kid": self.ec_kid, "use": "sig", "alg": "ES384"})
        rsa_jwk.update({"kid": self.rsa_kid, "use": "sig", "alg": "RS384"})
        return {"keys": [ec_jwk, rsa_jwk]}

    def write_jwks(self, directory: Path) -> Path:
        path = directory / "jwks.json"
        path.write_text(json.dumps(self.jwks()))
        return path

    def claims(self, audience: str, **changes: Any) -> dict[str, Any]:
        """iss, sub, aud, iat, exp (5 minutes), a fresh jti; `changes` replace claims (None: leave one out)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.iss,
            "sub": "ehr-client",
            "aud": audience,
            "iat": now,
            "exp": now + 300,
            "jti": str(uuid.uuid4()),
        }
        for name, value in changes.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        return claims

    def token(self, audience: str, alg: str = "ES384", kid: str | None = None, **changes: Any) -> str:
        key = self.ec_key if alg == "ES384" else self.rsa_key
        default_kid = self.ec_kid if alg == "ES384" else self.rsa_kid
        return jwt.encode(self.claims(audience, **changes), key, algorithm=alg, headers={"kid": kid or default_kid, "typ": "JWT"})

    def unsigned(self, aud: str) -> str:
        """alg none: no signature at all."""
        header = b64url(json.dumps({"alg": "none", "typ": "JWT", "kid": self.ec_kid}).encode())
        return f"{header}.{b64url(json.dumps(self.claims(aud)).encode())}."

    def hmac_with_public_key(self, aud: str, alg: str = "HS384") -> str:
        """Key confusion: HS384 'signed' with the issuer's public RSA key as the HMAC secret."""
        header = b64url(json.dumps({"alg": alg, "typ": "JWT", "kid": self.rsa_kid}).encode())
        body = b64url(json.dumps(self.claims(aud)).encode())
        secret = self.rsa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
        signature = hmac.new(secret, f"{header}.{body}".encode(), digest).digest()
        return f"{header}.{body}.{b64url(signature)}"


def config(tmp_path: Path, signer: Signer | None, **more: Any) -> dict[str, Any]:
    """create_app's test config: labinterp's FHIR server, the site overlay, the issuer's JWK Set as a file."""
    cfg: dict[str, Any] = {
        "FHIR_BASE_URL": FHIR,
        "MAPPINGS_DIR": str(SITE),
        "QUEUE_PATH": str(tmp_path / "q.db"),
        "WORKDIR": str(tmp_path / "work"),
        "WORKER": False,
    }
    if signer is not None:
        cfg["CDS_ISSUERS"] = json.dumps({signer.iss: str(signer.write_jwks(tmp_path))})
    cfg.update(more)
    return cfg


def url(path: str) -> str:
    """The URL the Flask test client calls: the `aud` of its tokens."""
    return f"http://localhost{path}"


def patient_resources(pid: str) -> list[dict[str, Any]]:
    bundle = json.loads((PATIENTS / f"{pid}.json").read_text())
    return [e["resource"] for e in bundle["entry"]]


def patient_bundle(pid: str) -> dict[str, Any]:
    return json.loads((PATIENTS / f"{pid}.json").read_text())


def searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": len(resources)}
    if resources:
        out["entry"] = [{"resource": r} for r in resources]
    return out


def matches(resource: dict[str, Any], template: str) -> bool:
    """Whether a resource answers a prefetch template (resource type, code or category tokens)."""
    rtype, _, query = template.partition("?")
    if resource["resourceType"] != rtype.split("/")[0]:
        return False
    for param in query.split("&"):
        name, _, value = param.partition("=")
        if name not in ("code", "category"):
            continue
        wanted = set(value.split(","))
        concepts = resource.get(name)
        concepts = concepts if isinstance(concepts, list) else [concepts or {}]
        found = {f"{c.get('system')}|{c.get('code')}" for concept in concepts for c in concept.get("coding", [])}
        if not found & wanted:
            return False
    return True


def prefetch_for(pid: str, templates: dict[str, str], leave_out: tuple[str, ...] = ()) -> dict[str, Any]:
    """The prefetch an EHR sends for these templates: the Patient and a searchset per search (null when empty)."""
    resources = patient_resources(pid)
    out: dict[str, Any] = {}
    for key, template in templates.items():
        if key in leave_out:
            continue
        if "?" not in template:
            out[key] = next(r for r in resources if r["resourceType"] == "Patient")
            continue
        found = [r for r in resources if matches(r, template)]
        out[key] = searchset(found) if found else None
    return out


def medication_request(
    rid: str, pid: str, concept: dict[str, Any], dose_mg: float = 600, every_h: float = 12, start: str | None = None
) -> dict[str, Any]:
    repeat: dict[str, Any] = {"frequency": 1, "period": every_h, "periodUnit": "h"}
    if start:
        repeat["boundsPeriod"] = {"start": start}
    return {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{pid}"},
        "medicationCodeableConcept": concept,
        "dosageInstruction": [
            {
                "timing": {"repeat": repeat},
                "doseAndRate": [
                    {"doseQuantity": {"value": dose_mg, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}}
                ],
            }
        ],
    }


def hook_body(
    hook: str,
    pid: str,
    prefetch: dict[str, Any] | None = None,
    drafts: list[dict[str, Any]] | None = None,
    **more: Any,
) -> dict[str, Any]:
    context: dict[str, Any] = {"userId": "Practitioner/example", "patientId": pid}
    if hook in ("order-select", "order-sign"):
        context["draftOrders"] = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": d} for d in drafts or []],
        }
    if hook == "order-select":
        context["selections"] = [f"MedicationRequest/{d['id']}" for d in drafts or []]
    body: dict[str, Any] = {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context}
    if prefetch is not None:
        body["prefetch"] = prefetch
    body.update(more)
    return body


def draft_orders(pid: str) -> list[dict[str, Any]]:
    """The draft orders of draft-orders.json for this patient: [linezolid, furosemide]."""
    text = (HERE / "draft-orders.json").read_text().replace("Patient/PATIENT", f"Patient/{pid}")
    return [e["resource"] for e in json.loads(text)["entry"]]
