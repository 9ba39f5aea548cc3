"""Readers' words (SPEC 7a, issue 7 point 13): sources are cited as a reader can find them, never as
"seed 000". mappings/ keeps short source keys; the knowledge loader replaces each by its citation from
mappings/sources.toml in every string it loads (package and site overlay), and an unknown key is a load
error naming file and key. Nothing user-facing in the written Bundle, nor any literal in service/, says
"seed 00N"."""

from __future__ import annotations

import ast
import base64
import dataclasses
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from labinterp.cli.main import read_json
from labinterp.errors import MappingsError
from labinterp.knowledge import Knowledge, load_knowledge
from labinterp.knowledge.loader import package_mappings_dir
from labinterp.pipeline import interpret_bundle
from tests.conftest import NOW, ROOT
from tests.golden_tool import PATIENTS

BASE = package_mappings_dir()
SEED = re.compile(r"(?i)\bseeds? ?0\d\d")
STATPEARLS = "StatPearls: Hypomagnesemia (NCBI Bookshelf, last updated 2023-11-30)"
COHORT = "190 adults on linezolid 600 mg every 12 h, Luigi Sacco University Hospital, Milan"


def strings(node: Any, path: str = "") -> list[tuple[str, str]]:
    """Every string in a Knowledge (its models, dataclasses, dicts and tuples) with where it is."""
    if isinstance(node, str):
        return [(path, node)]
    if isinstance(node, BaseModel):
        return strings(node.model_dump(), path)
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        return [s for f in dataclasses.fields(node) for s in strings(getattr(node, f.name), f"{path}.{f.name}")]
    if isinstance(node, dict):
        return [s for key, v in node.items() for s in strings(v, f"{path}.{key}")]
    if isinstance(node, list | tuple | set | frozenset):
        return [s for i, v in enumerate(node) for s in strings(v, f"{path}[{i}]")]
    return []


def copy_base(tmp_path: Path) -> Path:
    base = tmp_path / "base"
    shutil.copytree(BASE, base, ignore=shutil.ignore_patterns("__pycache__", "__init__.py"))
    return base


# --- the loader -------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["package", "site"])
def test_loaded_knowledge_says_no_source_key(k: Knowledge, site_k: Knowledge, which: str) -> None:
    knowledge = k if which == "package" else site_k
    found = [(path, text) for path, text in strings(knowledge) if SEED.search(text)]
    assert not found, found[:5]


def test_sources_are_cited_in_readers_words(k: Knowledge) -> None:
    assert k.magnesium.meta.source.startswith(STATPEARLS)
    assert COHORT in k.linezolid.meta.source
    assert all(b.source.startswith(STATPEARLS) for b in k.magnesium.bands if b.source)
    assert all(c.source.startswith(STATPEARLS) for c in k.mg_causes)  # CSV rows too
    assert any(COHORT in g.meta.source for g in k.genes.values())  # and pgx/*.toml
    assert k.file_versions["sources.toml"]


def write(base: Path, name: str, old: str, new: str) -> None:
    path = base / name
    text = path.read_text()
    assert old in text, f"fixture text not found in {name}"
    path.write_text(text.replace(old, new, 1))


def magnesium_band_source(base: Path, text: str) -> str:
    """Load a copy of the package whose first magnesium band cites `text`; return that band's source."""
    data = (base / "magnesium.toml").read_text()
    first = re.search(r'(?m)^source = "[^"]*"', data[data.index("[[bands]]") :])
    assert first is not None
    (base / "magnesium.toml").write_text(data.replace(first.group(0), f"source = {json.dumps(text)}", 1))
    return load_knowledge(base=base).magnesium.bands[0].source


def test_a_locator_follows_the_citation_after_a_comma(tmp_path: Path) -> None:
    base = copy_base(tmp_path)
    got = magnesium_band_source(base, "seed 001 Introduction; seed 000 section 2.2 and Table 3")
    assert got == f"{STATPEARLS}, Introduction; Linezolid TDM and pharmacogenetics cohort ({COHORT}), section 2.2 and Table 3"


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("seeds 000 and 001", f"Linezolid TDM and pharmacogenetics cohort ({COHORT}) and {STATPEARLS}"),
        ("Seed 001 (Etiology)", f"{STATPEARLS} (Etiology)"),
        (
            "range of seed 000; labinterp choice",
            f"range of Linezolid TDM and pharmacogenetics cohort ({COHORT}); labinterp choice",
        ),
        ("seeded 000 stays; seed00 stays", "seeded 000 stays; seed00 stays"),
        ("seed 000, 190 adults", f"Linezolid TDM and pharmacogenetics cohort ({COHORT}), 190 adults"),
        ("seed 001, 000 and 002", f"{STATPEARLS}, Linezolid TDM and pharmacogenetics cohort ({COHORT}) and Review of"),
    ],
)
def test_key_forms(tmp_path: Path, text: str, want: str) -> None:
    assert magnesium_band_source(copy_base(tmp_path), text).startswith(want)


def test_an_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    base = copy_base(tmp_path)
    write(base, "linezolid.toml", "[trough]", '[trough]\nnote = "seed 009 section 1"')
    with pytest.raises(MappingsError) as exc:
        load_knowledge(base=base)
    assert exc.value.file == "mappings/linezolid.toml"
    assert exc.value.key == "trough.note"
    assert "unknown source key 'seed 009'" in exc.value.problem


def test_an_unknown_key_in_a_csv_row_names_the_line(tmp_path: Path) -> None:
    base = copy_base(tmp_path)
    write(base, "magnesium_causes.csv", "seed 001 Etiology", "seed 003 Etiology")
    with pytest.raises(MappingsError) as exc:
        load_knowledge(base=base)
    assert exc.value.file == "mappings/magnesium_causes.csv"
    assert exc.value.key == "line 2.source" and "'seed 003'" in str(exc.value)


def test_an_unknown_key_in_a_gene_file(tmp_path: Path) -> None:
    base = copy_base(tmp_path)
    write(base, "pgx/cyp3a5.toml", 'source = "seed 000', 'source = "seed 004')
    with pytest.raises(MappingsError) as exc:
        load_knowledge(base=base)
    assert exc.value.file == "mappings/pgx/cyp3a5.toml" and exc.value.key == "meta.source"


def test_overlay_keys_are_expanded_and_checked(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "magnesium.toml").write_text('[renal]\nthreshold = 25.0\nsource = "seed 001 Treatment / Management; site protocol"\n')
    (site / "analyte_codes.csv").write_text(
        "analyte,system,code,display,status,source\nlinezolid,http://hospital.example/lab,LZD,Linezolid,local,seed 000 section 2.2\n"
    )
    k = load_knowledge(site)
    assert k.magnesium.renal.source == f"{STATPEARLS}, Treatment / Management; site protocol"
    assert next(c for c in k.analyte_codes if c.code == "LZD").source.endswith(f"({COHORT}), section 2.2")
    (site / "magnesium.toml").write_text('[renal]\nsource = "seed 007"\n')
    with pytest.raises(MappingsError) as exc:
        load_knowledge(site)
    assert exc.value.file == str(site / "magnesium.toml") and exc.value.key == "renal.source"
    assert "unknown source key 'seed 007'" in exc.value.problem


def test_a_site_may_word_a_citation_its_own_way(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sources.toml").write_text(
        '[sources."seed 001"]\ncitation = "StatPearls: Hypomagnesemia (NCBI Bookshelf NBK500003)"\n'
    )
    k = load_knowledge(site)
    assert k.magnesium.meta.source.startswith("StatPearls: Hypomagnesemia (NCBI Bookshelf NBK500003)")
    assert COHORT in k.linezolid.meta.source  # the package's other citations remain


@pytest.mark.parametrize(
    ("old", "new", "key", "message"),
    [
        ('citation = "StatPearls', 'citation = "seed 000 StatPearls', "sources.seed 001.citation", "names a source key"),
        ('[sources."seed 002"]', '[sources."paper two"]', "", "a source key is written 'seed NNN'"),
        ('file = "002_2a41f0aa250c243a.txt"', 'file = "x"\npage = 3', "sources.seed 002.page", "Extra inputs are not permitted"),
        (
            'citation = "StatPearls: Hypomagnesemia (NCBI Bookshelf, last updated 2023-11-30)"',
            'citation = ""',
            "citation",
            "at least 1",
        ),
    ],
)
def test_broken_sources_file(tmp_path: Path, old: str, new: str, key: str, message: str) -> None:
    base = copy_base(tmp_path)
    write(base, "sources.toml", old, new)
    with pytest.raises(MappingsError) as exc:
        load_knowledge(base=base)
    assert exc.value.file == "mappings/sources.toml"
    assert key in exc.value.key and message in str(exc.value)


def test_missing_sources_file(tmp_path: Path) -> None:
    base = copy_base(tmp_path)
    (base / "sources.toml").unlink()
    with pytest.raises(MappingsError, match=r"mappings/sources.toml: file is missing"):
        load_knowledge(base=base)


# --- what a reader sees -----------------------------------------------------------------------


def readable_texts(bundle: dict[str, Any], path: str = "") -> list[tuple[str, str]]:
    """Every string of a written Bundle, with the rendered HTML decoded (the PDF is checked in test_render)."""
    out: list[tuple[str, str]] = []
    if isinstance(bundle, dict):
        if bundle.get("contentType") == "text/html" and "data" in bundle:
            out.append((f"{path}/presentedForm(html)", base64.b64decode(bundle["data"]).decode("utf-8")))
        for key, v in bundle.items():
            if not (key == "data" and "contentType" in bundle):
                out += readable_texts(v, f"{path}/{key}")
    elif isinstance(bundle, list):
        for i, v in enumerate(bundle):
            out += readable_texts(v, f"{path}[{i}]")
    elif isinstance(bundle, str):
        out.append((path, bundle))
    return out


def example_bundles() -> list[tuple[str, dict[str, Any]]]:
    examples = [ROOT / "service" / "labinterp" / "examples" / "patients.json", *sorted(PATIENTS.glob("*.json"))]
    return [(p.stem, read_json(str(p))) for p in examples]


def seed_hits(site_k: Knowledge, render: bool) -> list[str]:
    hits = []
    for name, data in example_bundles():
        bundle = interpret_bundle(data, site_k, NOW, strict=False, render=render).bundle
        for path, text in readable_texts(bundle):
            for m in SEED.finditer(text):
                where = re.sub(r"\[\d+\]", "[]", path)
                hits.append(f"{name} {where}: ...{text[max(0, m.start() - 60) : m.end() + 30]}...")
    return sorted(set(hits))


@pytest.mark.parametrize("render", [True, False], ids=["rendered", "not-rendered"])
def test_no_source_key_in_any_written_bundle(site_k: Knowledge, render: bool) -> None:
    hits = seed_hits(site_k, render)
    assert not hits, "\n".join(hits[:20])


def user_facing_literals(path: Path) -> list[tuple[int, str]]:
    """String literals of a module that can reach a reader: everything but module/class/function docstrings,
    except a click command's docstring (its --help text)."""
    tree = ast.parse(path.read_text())
    docstrings: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            is_doc = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str)
            is_command = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and any(
                "command" in ast.unparse(d) for d in node.decorator_list
            )
            if is_doc and not is_command:
                docstrings.add(id(first.value))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and SEED.search(node.value)
    ]


def test_render_has_no_source_key_literal() -> None:
    assert user_facing_literals(ROOT / "service" / "labinterp" / "render" / "report.py") == []


def test_no_source_key_literal_in_service() -> None:
    found = [
        f"{p.relative_to(ROOT)}:{line}: {text.strip()[:80]}"
        for p in sorted((ROOT / "service" / "labinterp").rglob("*.py"))
        for line, text in user_facing_literals(p)
    ]
    assert not found, "\n".join(found)
