"""Settings from the environment, prefix LABINTERP_, validated once."""

from __future__ import annotations

import os
from dataclasses import dataclass

from service.errors import InputError

EQUATIONS = {"ckd-epi-2021": "ckd_epi_2021", "mdrd": "mdrd_idms"}


@dataclass(frozen=True)
class Settings:
    mappings_dir: str | None = None  # a site's overlay directory (LABINTERP_MAPPINGS_DIR)
    egfr_equation: str | None = None  # "ckd-epi-2021" | "mdrd" (LABINTERP_EGFR_EQUATION); None: mappings default
    validate_output: bool = True  # validate every written resource with fhir.resources R4B (LABINTERP_VALIDATE_OUTPUT)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        equation = env.get("LABINTERP_EGFR_EQUATION") or None
        if equation is not None and equation not in EQUATIONS:
            raise InputError("LABINTERP_EGFR_EQUATION", f"{equation!r} is not one of {', '.join(EQUATIONS)}")
        flag = env.get("LABINTERP_VALIDATE_OUTPUT", "true").lower()
        if flag not in ("true", "false", "1", "0", "yes", "no"):
            raise InputError("LABINTERP_VALIDATE_OUTPUT", f"{flag!r} is not true or false")
        return cls(env.get("LABINTERP_MAPPINGS_DIR") or None, equation, flag in ("true", "1", "yes"))
