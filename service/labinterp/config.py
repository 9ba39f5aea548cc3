"""Settings from the environment, prefix LABINTERP_, validated once."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from labinterp.errors import InputError
from labinterp.fhir.client import FhirClient

ROOT = Path(__file__).resolve().parents[2]  # the checkout: service/labinterp/config.py

EQUATIONS = {"ckd-epi-2021": "ckd_epi_2021", "mdrd": "mdrd_idms"}
TRUE, FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def flag_value(name: str, value: object) -> bool | None:
    """A boolean setting (str from the environment, or a bool/int from Flask's JSON parsing); None when unset."""
    if value is None:
        return None
    if isinstance(value, bool | int):
        return bool(value)
    text = str(value).strip().lower()
    if not text:
        return None
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise InputError(name, f"{value!r} is not true or false")


def strict_setting(strict: object, lenient: object = None) -> bool:
    """LABINTERP_STRICT: true makes any unusable resource an error (default false: it is left out, with a
    warning). LABINTERP_LENIENT, from when strict was the default, keeps its meaning when STRICT is unset:
    `true` is the default now, an explicit `false` still asks for strict."""
    chosen = flag_value("LABINTERP_STRICT", strict)
    old = flag_value("LABINTERP_LENIENT", lenient)
    if chosen is not None:
        return chosen
    return old is False


@dataclass(frozen=True)
class Settings:
    mappings_dir: str | None = None  # a site's overlay directory (LABINTERP_MAPPINGS_DIR)
    fhir_base_url: str | None = None  # LABINTERP_FHIR_BASE_URL
    fhir_token: str | None = None  # LABINTERP_FHIR_TOKEN: bearer token for the FHIR server
    fhir_basic: str | None = None  # LABINTERP_FHIR_BASIC: "user:password"
    workdir: str = str(ROOT / ".labinterp")  # LABINTERP_WORKDIR: sandbox, queue database
    egfr_equation: str | None = None  # "ckd-epi-2021" | "mdrd" (LABINTERP_EGFR_EQUATION); None: mappings default
    validate_output: bool = True  # validate every written resource with fhir.resources R4B (LABINTERP_VALIDATE_OUTPUT)
    render: bool = True  # HTML/PDF presentedForm and rendered narrative for each report (LABINTERP_RENDER)
    strict: bool = False  # LABINTERP_STRICT: any resource that cannot be used is an error (validating a feed)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        equation = env.get("LABINTERP_EGFR_EQUATION") or None
        if equation is not None and equation not in EQUATIONS:
            raise InputError("LABINTERP_EGFR_EQUATION", f"{equation!r} is not one of {', '.join(EQUATIONS)}")
        flag = env.get("LABINTERP_VALIDATE_OUTPUT", "true").lower()
        if flag not in ("true", "false", "1", "0", "yes", "no"):
            raise InputError("LABINTERP_VALIDATE_OUTPUT", f"{flag!r} is not true or false")
        strict = strict_setting(env.get("LABINTERP_STRICT"), env.get("LABINTERP_LENIENT"))
        return cls(
            mappings_dir=env.get("LABINTERP_MAPPINGS_DIR") or None,
            fhir_base_url=env.get("LABINTERP_FHIR_BASE_URL") or None,
            fhir_token=env.get("LABINTERP_FHIR_TOKEN") or None,
            fhir_basic=env.get("LABINTERP_FHIR_BASIC") or None,
            workdir=env.get("LABINTERP_WORKDIR") or str(ROOT / ".labinterp"),
            egfr_equation=equation,
            validate_output=flag in ("true", "1", "yes"),
            render=env.get("LABINTERP_RENDER", "true").lower() in ("true", "1", "yes"),
            strict=strict,
        )

    def client(self, base_url: str | None = None) -> FhirClient:
        url = base_url or self.fhir_base_url
        if not url:
            raise InputError("LABINTERP_FHIR_BASE_URL", "no FHIR server configured")
        basic = None
        if self.fhir_basic:
            user, _, password = self.fhir_basic.partition(":")
            basic = (user, password)
        return FhirClient(url, token=self.fhir_token, basic=basic)
