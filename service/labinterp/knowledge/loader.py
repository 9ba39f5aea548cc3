"""Loads mappings/ (the package's own, then a site's overlay directory) into a frozen `Knowledge`.

Overlay rules: a TOML file of the same name is merged key by key over the package's (tables merge,
other values are replaced); a CSV file of the same name adds its rows; any other file is an error.
Every problem is raised as MappingsError naming the file and the key.

Readers' words (SPEC 7a): the files cite their sources by short keys ("seed 000 section 2.2"). Every
string read from every file (package and overlay) has each key replaced by the reader's citation from
sources.toml before it is validated, so rules and reports only ever see readable words; a key that
sources.toml does not define is an error naming the file, the key path and the source key.
"""

from __future__ import annotations

import csv
import re
import tomllib
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar, cast

from pydantic import BaseModel, ValidationError

from labinterp.errors import MappingsError
from labinterp.knowledge import model as m
from labinterp.knowledge.knowledge import Knowledge

T = TypeVar("T", bound=BaseModel)

TOML_FILES = (
    "sources.toml",
    "ruleset.toml",
    "units.toml",
    "analytes.toml",
    "linezolid.toml",
    "renal.toml",
    "magnesium.toml",
    "genomics.toml",
    "output.toml",
    "cohort.toml",
    "medications.toml",
    "qc.toml",
    "qc_limits.toml",
    "qc_models.toml",
)
CSV_FILES = ("analyte_codes.csv", "drugs.csv", "magnesium_causes.csv", "genotype_codes.csv")


def package_mappings_dir() -> Path:
    return Path(str(resources.files("labinterp.mappings")))


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _read_toml(path: Path, label: str) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise MappingsError(label, "", f"not valid TOML: {exc}") from exc
    except OSError as exc:
        raise MappingsError(label, "", f"cannot be read: {exc.strerror}") from exc


def _read_csv(path: Path, label: str) -> tuple[list[str], list[dict[str, str]]]:
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            header = list(reader.fieldnames or [])
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise MappingsError(label, "", f"cannot be read as UTF-8 CSV: {exc}") from exc
    for i, row in enumerate(rows, start=2):
        if None in row or any(v is None for v in row.values()):
            raise MappingsError(label, f"line {i}", "wrong number of columns")
    return header, rows


def _loc(loc: Iterable[int | str]) -> str:
    parts: list[str] = []
    for p in loc:
        if isinstance(p, int):
            parts.append(f"[{p}]")
        else:
            parts.append(("." if parts else "") + str(p))
    return "".join(parts)


def _model(cls: type[T], data: Any, label: str, key_prefix: str = "") -> T:
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = _loc(err["loc"])
        if key_prefix:
            key = f"{key_prefix}.{key}" if key else key_prefix
        msg = err["msg"].removeprefix("Value error, ")
        if head := re.match(r"^([A-Za-z_][\w.\[\]]*): ", msg):  # a whole-model check names its key first
            key = f"{key}.{head.group(1)}" if key else head.group(1)
            msg = msg[head.end() :]
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise MappingsError(label, key, msg + more) from exc


# "seed 000", "seeds 000 and 001", "seed 000, 001": a source key or a list of them (a listed key after the
# first starts with 0, so "seed 000, 190 adults" stays a key and a count), and whether a locator follows it
_KEYS = re.compile(
    r"\b(?P<word>seeds?)\s+(?P<nums>\d{3}(?:(?:\s*,\s*|\s+and\s+|\s*&\s*)0\d\d)*)\b"
    r"(?P<locator>(?=\s+(?:[A-Z0-9§]|sections?\b|tables?\b|fig)))?",
    re.IGNORECASE,
)
_NUM = re.compile(r"\d{3}")


class _Citations:
    """Replaces source keys by the reader's citations of sources.toml, in every string of a loaded file."""

    def __init__(self, sources: m.SourcesFile) -> None:
        self.citations = {key: s.citation for key, s in sources.sources.items()}

    def text(self, value: str, label: str, key: str) -> str:
        def one(num: re.Match[str]) -> str:
            source = f"seed {num.group(0)}"
            if source not in self.citations:
                raise MappingsError(
                    label, key, f"unknown source key {source!r} (sources.toml defines {', '.join(map(repr, self.citations))})"
                )
            return self.citations[source]

        def keys(found: re.Match[str]) -> str:
            # "seed 000 section 2.2" -> "<citation>, section 2.2": the locator stays, after a comma
            return _NUM.sub(one, found.group("nums")) + ("," if found.group("locator") is not None else "")

        return _KEYS.sub(keys, value) if "seed" in value.lower() else value

    def expand(self, data: Any, label: str, key: str = "") -> Any:
        """`data` with every source key in every string (not in table keys) replaced; errors name label and key."""
        if isinstance(data, str):
            return self.text(data, label, key)
        if isinstance(data, Mapping):
            return {k: self.expand(v, label, f"{key}.{k}" if key else str(k)) for k, v in data.items()}
        if isinstance(data, list | tuple):
            return [self.expand(v, label, f"{key}[{i}]") for i, v in enumerate(data)]
        return data


class _Sources:
    """Finds each file in the package directory and the overlay, and reads it merged, source keys expanded
    (once `citations` is set: sources.toml itself is read without)."""

    citations: _Citations | None = None

    def __init__(self, base: Path, overlay: Path | None) -> None:
        self.base, self.overlay = base, overlay
        if overlay is not None:
            if not overlay.is_dir():
                raise MappingsError(str(overlay), "", "overlay directory does not exist")
            known = set(TOML_FILES) | set(CSV_FILES)
            for f in sorted(overlay.rglob("*")):
                rel = f.relative_to(overlay).as_posix()
                if f.is_file() and not rel.endswith(".md") and rel not in known and not rel.startswith("pgx/"):
                    raise MappingsError(str(f), "", "not a mappings file labinterp knows (see mappings/README.md)")

    def label(self, name: str) -> str:
        return f"mappings/{name}"

    def label_of(self, name: str, key: str) -> str:
        """The file a top-level key of a merged TOML file came from: the overlay's when it sets the key."""
        over = self.overlay / name if self.overlay is not None else None
        if over is not None and over.exists() and key in _read_toml(over, str(over)):
            return str(over)
        return self.label(name)

    def _expand(self, data: dict[str, Any], label: str, key: str = "") -> Any:
        return self.citations.expand(data, label, key) if self.citations is not None else data

    def toml(self, name: str) -> dict[str, Any]:
        data = (
            self._expand(_read_toml(self.base / name, self.label(name)), self.label(name)) if (self.base / name).exists() else {}
        )
        if self.overlay is not None and (self.overlay / name).exists():
            over = str(self.overlay / name)
            data = _merge(data, self._expand(_read_toml(self.overlay / name, over), over))
        if not data:
            raise MappingsError(self.label(name), "", "file is missing")
        return data

    def csv(self, name: str) -> list[tuple[str, int, dict[str, str]]]:
        out: list[tuple[str, int, dict[str, str]]] = []
        paths = [(self.base / name, self.label(name))]
        if self.overlay is not None:
            paths.append((self.overlay / name, str(self.overlay / name)))
        expected: list[str] | None = None
        for path, label in paths:
            if not path.exists():
                if label == self.label(name):
                    raise MappingsError(label, "", "file is missing")
                continue
            header, rows = _read_csv(path, label)
            if expected is None:
                expected = header
            elif header != expected:
                raise MappingsError(label, "header", f"columns {header} differ from the package's {expected}")
            out.extend((label, i, self._expand(row, label, f"line {i}")) for i, row in enumerate(rows, start=2))
        return out

    def gene_files(self) -> dict[str, tuple[str, dict[str, Any]]]:
        found: dict[str, tuple[str, dict[str, Any]]] = {}
        for path in sorted((self.base / "pgx").glob("*.toml")):
            label = f"mappings/pgx/{path.name}"
            found[path.name] = (label, self._expand(_read_toml(path, label), label))
        if self.overlay is not None and (self.overlay / "pgx").is_dir():
            for path in sorted((self.overlay / "pgx").glob("*.toml")):
                over = self._expand(_read_toml(path, str(path)), str(path))
                label, data = found.get(path.name, (str(path), {}))
                found[path.name] = (label, _merge(data, over))
        return found


def _split(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split("|") if v.strip())


TOML_MODELS: dict[str, type[BaseModel]] = {
    "ruleset.toml": m.RulesetFile,
    "units.toml": m.UnitsFile,
    "analytes.toml": m.AnalytesFile,
    "linezolid.toml": m.LinezolidFile,
    "renal.toml": m.RenalFile,
    "magnesium.toml": m.MagnesiumFile,
    "genomics.toml": m.GenomicsFile,
    "output.toml": m.OutputFile,
    "cohort.toml": m.CohortFile,
    "medications.toml": m.MedicationsFile,
    "qc.toml": m.QcFile,
    "qc_models.toml": m.QcModelsFile,
}


def load_knowledge(overlay: str | Path | None = None, base: str | Path | None = None) -> Knowledge:
    """Load and validate every mappings file; raise MappingsError naming file and key on any problem."""
    src = _Sources(Path(base) if base else package_mappings_dir(), Path(overlay) if overlay else None)
    sources = _model(m.SourcesFile, src.toml("sources.toml"), src.label("sources.toml"))
    src.citations = _Citations(sources)  # from here on every string read has its source keys replaced
    files = {name: _model(cls, src.toml(name), src.label(name)) for name, cls in TOML_MODELS.items()}
    # the laboratory's limits are a site's: errors name the overlay's file when it sets the products
    limits_label = src.label_of("qc_limits.toml", "products")
    qc_limits = _model(m.QcLimitsFile, src.toml("qc_limits.toml"), limits_label)

    def one(name: str, cls: type[T]) -> T:
        model = files[name]
        assert isinstance(model, cls)
        return model

    genes, versions = _genes(src)
    versions |= {"sources.toml": sources.meta.version} | {name: cast(Any, f).meta.version for name, f in files.items()}
    versions["qc_limits.toml"] = qc_limits.meta.version
    analyte_codes = [(_model(m.AnalyteCode, row, label, f"line {i}"), label, i) for label, i, row in src.csv("analyte_codes.csv")]
    genotype_codes = [
        (_model(m.GenotypeCode, row, label, f"line {i}"), label, i) for label, i, row in src.csv("genotype_codes.csv")
    ]
    knowledge = Knowledge(
        ruleset_version=one("ruleset.toml", m.RulesetFile).ruleset.version,
        units=one("units.toml", m.UnitsFile),
        analytes=one("analytes.toml", m.AnalytesFile).analytes,
        linezolid=one("linezolid.toml", m.LinezolidFile),
        genes=genes,
        renal=one("renal.toml", m.RenalFile),
        magnesium=one("magnesium.toml", m.MagnesiumFile),
        genomics=one("genomics.toml", m.GenomicsFile),
        output=one("output.toml", m.OutputFile),
        cohort=one("cohort.toml", m.CohortFile),
        medications=one("medications.toml", m.MedicationsFile),
        analyte_codes=tuple(c for c, _, _ in analyte_codes),
        drugs=_drugs(src),
        mg_causes=_causes(src),
        genotype_codes=tuple(c for c, _, _ in genotype_codes),
        file_versions=versions,
        qc=one("qc.toml", m.QcFile),
        qc_limits=qc_limits,
        qc_models=one("qc_models.toml", m.QcModelsFile),
    )
    _cross_check(knowledge, analyte_codes, genotype_codes, src)
    _check_qc_limits(knowledge.qc, knowledge.qc_limits, limits_label)
    return knowledge


def _genes(src: _Sources) -> tuple[dict[str, m.GeneFile], dict[str, str]]:
    """pgx/*.toml, one gene each, and their versions."""
    genes: dict[str, m.GeneFile] = {}
    versions: dict[str, str] = {}
    for fname, (label, data) in src.gene_files().items():
        gene = _model(m.GeneFile, data, label)
        if gene.gene.symbol in genes:
            raise MappingsError(label, "gene.symbol", f"{gene.gene.symbol} is defined in two pgx files")
        genes[gene.gene.symbol] = gene
        versions[f"pgx/{fname}"] = gene.meta.version
    if not genes:
        raise MappingsError("mappings/pgx", "", "no gene files")
    return genes, versions


def _drugs(src: _Sources) -> tuple[m.Drug, ...]:
    rows = []
    for label, i, row in src.csv("drugs.csv"):
        lists = {key: _split(row.get(key, "")) for key in ("atc", "rxnorm", "names")}
        rows.append(_model(m.Drug, {**row, **lists}, label, f"line {i}"))
    return tuple(rows)


def _causes(src: _Sources) -> tuple[m.MgCause, ...]:
    rows = []
    for label, i, row in src.csv("magnesium_causes.csv"):
        data = {
            "cls": row.get("class", ""),
            "display": row.get("display", ""),
            "atc_prefix": _split(row.get("atc_prefix", "")),
            "names": _split(row.get("names", "")),
            "source": row.get("source", ""),
        }
        rows.append(_model(m.MgCause, data, label, f"line {i}"))
    return tuple(rows)


def _cross_check(
    k: Knowledge,
    analyte_codes: list[tuple[m.AnalyteCode, str, int]],
    genotype_codes: list[tuple[m.GenotypeCode, str, int]],
    src: _Sources,
) -> None:
    known_drugs = {d.drug for d in k.drugs} | {c.cls for c in k.mg_causes}
    for drug in k.medications.washout.drugs:
        if drug not in known_drugs:
            raise MappingsError(
                src.label("medications.toml"),
                f"washout.drugs.{drug}",
                "not a drug of drugs.csv nor a class of magnesium_causes.csv",
            )
    seen: dict[tuple[str, str], str] = {}
    for code, label, line in analyte_codes:
        if code.analyte not in k.analytes:
            raise MappingsError(label, f"line {line}.analyte", f"unknown analyte {code.analyte!r} (known: {sorted(k.analytes)})")
        key = (code.system, code.code)
        if key in seen and seen[key] != code.analyte:
            raise MappingsError(label, f"line {line}.code", f"{code.system}|{code.code} already maps to {seen[key]!r}")
        seen[key] = code.analyte
    for gcode, label, line in genotype_codes:
        gene = k.genes.get(gcode.gene)
        if gene is None:
            raise MappingsError(label, f"line {line}.gene", f"unknown gene {gcode.gene!r} (known: {sorted(k.genes)})")
        if gcode.rsid and gcode.rsid not in {v.rsid for v in gene.variants}:
            raise MappingsError(label, f"line {line}.rsid", f"{gcode.rsid} is not a variant of {gcode.gene}")
    mass = k.units.mass_concentration_to_mg_per_l
    for name, analyte in k.analytes.items():
        if analyte.mass_units and analyte.canonical_unit not in mass:
            raise MappingsError(
                "mappings/analytes.toml",
                f"analytes.{name}.canonical_unit",
                f"{analyte.canonical_unit!r} is not a mass-concentration unit in units.toml",
            )
        for unit, factor in analyte.units.items():
            if factor <= 0:
                raise MappingsError("mappings/analytes.toml", f"analytes.{name}.units.{unit}", "factor must be positive")
    known_units = set(mass) | {u for a in k.analytes.values() for u in (a.canonical_unit, *a.units)}
    for alias, target in k.units.aliases.items():
        if target not in known_units:
            raise MappingsError("mappings/units.toml", f"aliases.{alias}", f"maps to {target!r}, which no analyte accepts")
    groups = {(g.factor, g.name) for gene in k.genes.values() for g in gene.groups}
    for gene in k.genes.values():
        if gene.haplotype:
            groups |= {(gene.haplotype.factor, name) for name in gene.haplotype.groups.values()}
    for i, f in enumerate(k.linezolid.factors):
        for grp in (f.group, f.reference):
            if (f.factor, grp) not in groups:
                raise MappingsError(
                    "mappings/linezolid.toml", f"factors[{i}]", f"group {f.factor} {grp!r} is not defined in mappings/pgx"
                )
    for i, row in enumerate(k.linezolid.cohort.table2):
        if (row.factor, row.group) not in groups:
            raise MappingsError(
                "mappings/linezolid.toml",
                f"cohort.table2[{i}]",
                f"group {row.factor} {row.group!r} is not defined in mappings/pgx",
            )
    for kind, report in k.output.reports.items():
        if report.category not in ("LAB", "GE"):
            raise MappingsError("mappings/output.toml", f"reports.{kind}.category", f"{report.category!r} is not LAB or GE")
    del src


# which condition of a measure each field of a limit names
_LIMIT_CONDITIONS = (("medium", "medium"), ("condition", "storage_condition"), ("at_h", "elapsed_time"), ("at_d", "storage_time"))


def _check_qc_limits(qc: m.QcFile, limits: m.QcLimitsFile, label: str) -> None:
    """Each limit names a measure of qc.toml, in that measure's unit, with only the conditions it has."""
    for i, product in enumerate(limits.products):
        for j, limit in enumerate(product.limits):
            key = f"products[{i}].limits[{j}]"
            measure = qc.measures.get(limit.measure)
            if measure is None or measure.kind == "particle_count":
                known = sorted(k for k, v in qc.measures.items() if v.kind != "particle_count")
                raise MappingsError(label, f"{key}.measure", f"unknown measure {limit.measure!r} (known: {', '.join(known)})")
            units = (measure.unit, measure.alt_unit) if measure.alt_unit else (measure.unit,)
            if limit.unit not in units:
                raise MappingsError(
                    label, f"{key}.unit", f"{limit.unit!r} is not the unit of {limit.measure} in qc.toml ({' or '.join(units)})"
                )
            for field_name, condition in _LIMIT_CONDITIONS:
                if getattr(limit, field_name) not in ("", None) and condition not in measure.conditions:
                    raise MappingsError(
                        label, f"{key}.{field_name}", f"{limit.measure} is not measured by {condition.replace('_', ' ')}"
                    )
