"""Every mappings file loads with its source and version; broken files are rejected naming file and
key; a site's overlay adds codes without editing the package."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest

from labinterp.errors import MappingsError
from labinterp.knowledge import load_knowledge
from labinterp.knowledge.loader import CSV_FILES, TOML_FILES, package_mappings_dir
from tests.builders import P
from tests.conftest import findings_of

BASE = package_mappings_dir()


def test_every_file_has_source_and_version() -> None:
    for name in [*TOML_FILES, *(f"pgx/{p.name}" for p in (BASE / "pgx").glob("*.toml"))]:
        meta = tomllib.loads((BASE / name).read_text())["meta"]
        assert meta["source"] and meta["version"], name
    for name in CSV_FILES:
        header = (BASE / name).read_text().splitlines()[0].split(",")
        assert "source" in header, name


def test_loads_and_cross_references() -> None:
    k = load_knowledge()
    assert k.ruleset_version and set(k.genes) == {"CYP3A5", "CYP3A4", "POR", "ABCB1"}
    assert k.analyte_for("http://loinc.org", "19123-9") == "magnesium"
    assert k.analyte_for("http://loinc.org", "98979-8") == "egfr"


def copy_base(tmp_path: Path) -> Path:
    base = tmp_path / "base"
    shutil.copytree(BASE, base, ignore=shutil.ignore_patterns("__pycache__", "__init__.py"))
    return base


@pytest.mark.parametrize(
    ("file", "old", "new", "key", "message"),
    [
        ("linezolid.toml", "upper = 8.0\nupper_closed = true", "upper = 9.0\nupper_closed = true", "bands", "gap or overlap"),
        ("linezolid.toml", "[trough]", "[trough]\nbogus = 1", "trough.bogus", "Extra inputs are not permitted"),
        ("magnesium.toml", 'name = "normal"', 'name = "usual"', "bands", "missing ['normal']"),
        ("magnesium.toml", 'interpretation = "LL"', "interpretation = 3", "bands[0].interpretation", "valid string"),
        (
            "linezolid.toml",
            'risk = "high"\nprobability = 0.259',
            'risk = "severe"\nprobability = 0.259',
            "factors[0].risk",
            "Input should be",
        ),
        ("linezolid.toml", "odds_ratio = 9.09", "odds_ratio = 99.0", "factors", "outside its CI"),
        ("renal.toml", '[[stages]]\nname = "G5"', '[[stages]]\nname = "G5"\nlower = 1.0', "stages", "no lower bound"),
        ("units.toml", '"mg/l" = "mg/L"', '"mg/l" = "furlong"', "aliases.mg/l", "no analyte accepts"),
        ("pgx/cyp3a5.toml", 'hgnc = "HGNC:2638"', 'hgnc = "2638"', "gene.hgnc", "pattern"),
        ("pgx/cyp3a5.toml", 'star_alternate = "*3"', 'star_alternate = "*33"', "", "*33 is not defined in alleles"),
        (
            "linezolid.toml",
            'group = "expresser"\nreference',
            'group = "expressor"\nreference',
            "factors[0]",
            "not defined in mappings/pgx",
        ),
        ("analytes.toml", "[analytes.linezolid]", "[analytes.linezolid\n", "", "not valid TOML"),
        (
            "analyte_codes.csv",
            "magnesium,http://loinc.org,19123-9",
            "magnesum,http://loinc.org,19123-9",
            "line 2.analyte",
            "unknown analyte 'magnesum'",
        ),
        ("drugs.csv", "digoxin,Digoxin", "digoxin", "line 4", "wrong number of columns"),
        (
            "magnesium.toml",
            'source = "seed 001 Introduction"',
            'source = "seed 010 Introduction"',
            "bands[",
            "source key 'seed 010'",
        ),
        ("magnesium_causes.csv", ",seed 001 Etiology;", ",seed 01 Etiology; seed 099;", "line 2.source", "'seed 099'"),
        ("pgx/por.toml", 'source = "seed 000', 'source = "seeds 000 and 011', "meta.source", "'seed 011'"),
        ("sources.toml", '[sources."seed 001"]', '[sources."seed 001"]\nurl = 1', "sources.seed 001.url", "Extra inputs"),
    ],
)
def test_broken_file_names_file_and_key(tmp_path: Path, file: str, old: str, new: str, key: str, message: str) -> None:
    base = copy_base(tmp_path)
    path = base / file
    text = path.read_text()
    assert old in text, f"fixture text not found in {file}"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(MappingsError) as exc:
        load_knowledge(base=base)
    assert exc.value.file.endswith(file.split("/")[-1]) or (file.startswith("pgx") and "pgx" in exc.value.file)
    assert key in exc.value.key and message in str(exc.value)


def test_overlay_adds_a_site_code(tmp_path: Path) -> None:
    overlay = tmp_path / "site"
    overlay.mkdir()
    (overlay / "analyte_codes.csv").write_text(
        "analyte,system,code,display,status,source\n"
        "linezolid,http://hospital.example/lab,LINEZ,Linezolid,local,hospital lab catalogue\n"
    )
    (overlay / "magnesium.toml").write_text("[renal]\nthreshold = 25.0\n")
    k = load_knowledge(overlay)
    assert k.analyte_for("http://hospital.example/lab", "LINEZ") == "linezolid"
    assert k.analyte_for("http://loinc.org", "19123-9") == "magnesium"  # the package's codes remain
    assert k.magnesium.renal.threshold == 25.0 and k.magnesium.renal.dose_reduction == 0.5
    p = P("o1", "male", "1960-01-01", "")
    p.lab(
        {"coding": [{"system": "http://hospital.example/lab", "code": "LINEZ"}]},
        3.0,
        "mg/L",
        "2026-01-15T08:00:00+01:00",
        kind="lzd",
    )
    f = findings_of(p.bundle(), k)
    assert f.linezolid is not None and f.linezolid.trough.matched_by == "code"


def test_overlay_errors(tmp_path: Path) -> None:
    with pytest.raises(MappingsError, match="overlay directory does not exist"):
        load_knowledge(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(MappingsError, match="not a mappings file labinterp knows"):
        load_knowledge(tmp_path)
    (tmp_path / "notes.txt").unlink()
    (tmp_path / "analyte_codes.csv").write_text("analyte,code\nlinezolid,X\n")
    with pytest.raises(MappingsError, match=r"columns .* differ"):
        load_knowledge(tmp_path)
    (tmp_path / "analyte_codes.csv").write_text(
        "analyte,system,code,display,status,source\nmagnesium,http://loinc.org,2160-0,x,local,me\n"
    )
    with pytest.raises(MappingsError, match="already maps to 'creatinine'"):
        load_knowledge(tmp_path)
