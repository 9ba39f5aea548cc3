"""Microsphere formulation QC reference data (SPEC section 5): qc.toml loads with its codes, units and sources in
readers' words; the package sets no acceptance limits; the example laboratory's overlay sets its own; bad limit
files are rejected naming file and key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from labinterp.errors import MappingsError
from labinterp.knowledge import Knowledge, load_knowledge
from labinterp.knowledge.loader import package_mappings_dir

BASE = package_mappings_dir()
SITE = BASE / "sites" / "example-compounding-lab"
QC = "urn:labinterp:formulation-qc"


@pytest.fixture(scope="module")
def qk() -> Knowledge:
    return load_knowledge()


@pytest.fixture(scope="module")
def lab_k() -> Knowledge:
    return load_knowledge(SITE)


def test_qc_toml_loads(qk: Knowledge) -> None:
    qc = qk.qc
    assert qc.system.url == QC and qc.system.version == "1"
    assert (qc.microsphere_range.low_um, qc.microsphere_range.high_um) == (1.0, 1000.0)
    assert qc.report.code == "formulation-qc-report"
    assert {c.code for c in qc.conclusions.values()} == {"batch-released", "batch-not-released", "batch-incomplete"}
    vmd = qc.measures["volume_mean_diameter"]
    assert vmd.unit == "um" and vmd.factor("mm") == ("um", 1000.0) and vmd.factor("nm") == ("um", 0.001)
    assert vmd.factor("mg") is None
    content = qc.measures["drug_content_actual"]
    assert content.factor("g") == ("mg", 1000.0) and content.factor("mg/g") == ("%", 0.1)
    assert qc.measures["zeta_potential"].signed
    assert qc.components["elapsed_time"].factor("min") == pytest.approx(1 / 60)
    assert qc.components["storage_time"].factor("mo") == 30.4375
    derived = {key for key, m in qc.measures.items() if m.kind == "derived"}
    assert derived == {
        "d10",
        "d50",
        "d90",
        "span",
        "d43",
        "share_outside_range",
        "t50",
        "t80",
        "release_exponent",
        "retained_drug_content",
    }
    assert set(qc.qualitative) == {"sem", "xrd", "dsc", "tga", "ftir"}
    assert qk.qc_key_for(QC, "volume-mean-diameter") == ("measure", "volume_mean_diameter")
    assert qk.qc_key_for(QC, "elapsed-time") == ("component", "elapsed_time")
    assert qk.qc_key_for(QC, "sem") == ("qualitative", "sem")
    assert qk.qc_key_for("http://loinc.org", "volume-mean-diameter") is None
    assert qk.file_versions["qc.toml"] and qk.file_versions["qc_limits.toml"]


def test_sources_in_readers_words(qk: Knowledge) -> None:
    for measure in qk.qc.measures.values():
        assert "seed" not in measure.source.lower()
        assert measure.source.startswith("Review of microsphere drug-delivery systems")
    assert "Introduction" in qk.qc.microsphere_range.source


def test_package_sets_no_limits(qk: Knowledge) -> None:
    assert qk.qc_limits.products == ()
    assert qk.qc_product("urn:example:compounding-lab:products", "KMS-01") is None


def test_release_models(qk: Knowledge) -> None:
    assert 0 < qk.qc_models.peppas.max_released_pct <= 100 and qk.qc_models.peppas_exponent_spheres
    assert qk.file_versions["qc_models.toml"]


def test_overlay_limits_load(lab_k: Knowledge) -> None:
    product = lab_k.qc_product("urn:example:compounding-lab:products", "KMS-01")
    assert product is not None and product.specification == "KMS-01" and product.version == "3"
    by_measure = {(lim.measure, lim.condition, lim.medium): lim for lim in product.limits}
    assert by_measure[("entrapment_efficiency", "", "")].min == 75.0
    assert by_measure[("retained_drug_content", "40 ± 2 °C", "")].at_d == 60.0
    assert by_measure[("swelling_index", "", "pH 7.4 phosphate buffer")].max is not None
    release = by_measure[("drug_released", "", "")]
    assert release.at_h is not None and release.min is not None
    measures = {lim.measure for lim in product.limits}
    assert {"volume_mean_diameter", "span", "share_outside_range", "t50", "zeta_potential"} <= measures
    other = lab_k.qc_product("urn:example:compounding-lab:products", "DMS-02")
    assert other is not None and other.limits == ()
    assert lab_k.qc_key_for("urn:example:compounding-lab:tests", "EE-UV") == ("measure", "entrapment_efficiency")
    assert lab_k.qc_key_for(QC, "entrapment-efficiency") == ("measure", "entrapment_efficiency")  # the package's stay


def overlay_with(tmp_path: Path, old: str, new: str) -> Path:
    site = tmp_path / "site"
    shutil.copytree(SITE, site)
    path = site / "qc_limits.toml"
    text = path.read_text()
    assert old in text, "fixture text not found"
    path.write_text(text.replace(old, new, 1))
    return site


@pytest.mark.parametrize(
    ("old", "new", "key", "message"),
    [
        (
            'measure = "entrapment_efficiency"',
            'measure = "entrapment"',
            "products[0].limits[3].measure",
            "unknown measure 'entrapment'",
        ),
        ("min = 50.0\nmax = 250.0", "min = 300.0\nmax = 250.0", "products[0].limits[0].min", "is above max"),
        (
            'max = 250.0\nunit = "um"',
            'max = 250.0\nunit = "mm"',
            "products[0].limits[0].unit",
            "is not the unit of volume_mean_diameter",
        ),
        ('measure = "span"', 'measure = "span"\nlimit = 1', "products[0].limits[1].limit", "Extra inputs are not permitted"),
        ('measure = "span"\nmax = 1.6', 'measure = "span"', "products[0].limits[1].min", "needs min, max or both"),
        (
            'measure = "zeta_potential"',
            'measure = "zeta_potential"\nat_d = 60.0',
            "products[0].limits[9].at_d",
            "not measured by storage time",
        ),
        ('code = "DMS-02"', 'code = "KMS-01"', "products[1].code", "listed twice"),
        ('name = "Ketoprofen', 'colour = "red"\nname = "Ketoprofen', "products[0].colour", "Extra inputs are not permitted"),
    ],
)
def test_bad_limits_name_file_and_key(tmp_path: Path, old: str, new: str, key: str, message: str) -> None:
    site = overlay_with(tmp_path, old, new)
    with pytest.raises(MappingsError) as exc:
        load_knowledge(site)
    assert exc.value.file == str(site / "qc_limits.toml")
    assert exc.value.key == key and message in exc.value.problem


def test_bad_qc_toml_is_rejected(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "qc.toml").write_text('[[site_codes]]\nsystem = "http://lab.example/x"\ncode = "A"\nkey = "span"\nsource = "lab"\n')
    with pytest.raises(MappingsError) as exc:
        load_knowledge(site)
    assert exc.value.key == "site_codes[0].key" and "computed by labinterp" in exc.value.problem
    (site / "qc.toml").write_text(
        '[[site_codes]]\nsystem = "http://lab.example/x"\ncode = "A"\nkey = "nonsense"\nsource = "lab"\n'
    )
    with pytest.raises(MappingsError, match="unknown key 'nonsense'"):
        load_knowledge(site)
    (site / "qc.toml").write_text("[measures.volume_mean_diameter]\nunits = { mm = -1.0 }\n")
    with pytest.raises(MappingsError) as exc:
        load_knowledge(site)
    assert exc.value.key.startswith("measures.volume_mean_diameter") and "positive" in exc.value.problem
