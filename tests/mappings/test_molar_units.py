"""Molar units convert only through a molar mass kept in mappings/analytes.toml with its source."""

from __future__ import annotations

from pathlib import Path

import pytest

from labinterp.errors import MappingsError
from labinterp.knowledge import load_knowledge


@pytest.mark.parametrize(
    ("overlay", "key", "message"),
    [
        ('[analytes.linezolid]\nmolar_mass_source = ""\n', "analytes.linezolid", "needs molar_mass_source"),
        ("[analytes.egfr]\nmolar_mass_g_per_mol = 100.0\nmolar_mass_source = 'x'\n", "analytes.egfr", "mass_units = true"),
        ("[analytes.linezolid]\nmolar_mass_g_per_mol = -1.0\n", "analytes.linezolid.molar_mass_g_per_mol", "greater than 0"),
        ('[analytes.weight]\nname_require = ["x"]\n', "analytes.weight", "name_require needs name_match"),
        ('[molar_concentration_to_mmol_per_l]\n"umol/L" = 0.0\n', "", "factor must be positive"),
    ],
)
def test_molar_mass_needs_its_source(tmp_path: Path, overlay: str, key: str, message: str) -> None:
    name = "units.toml" if overlay.startswith("[molar") else "analytes.toml"
    (tmp_path / name).write_text(overlay)
    with pytest.raises(MappingsError) as exc:
        load_knowledge(tmp_path)
    assert key in str(exc.value) and message in str(exc.value)


def test_a_site_can_give_a_molar_mass(tmp_path: Path) -> None:
    (tmp_path / "analytes.toml").write_text(
        "[analytes.linezolid_mic]\nmolar_mass_g_per_mol = 337.351\nmolar_mass_source = 'site laboratory'\n"
    )
    k = load_knowledge(tmp_path)
    assert k.unit_factor("linezolid_mic", "umol/L") == pytest.approx(0.337351)
