"""The command line's file handling: `cohort --input` reads files as `interpret` does (one line and exit 2 for
anything unreadable, never a traceback), NDJSON errors name file and line, an earlier run's output never looks
current, unwritable output paths are one line naming them, and one very long integer is a per-resource problem."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from labinterp.cli.common import OutputFailure, parse_json, write_json_atomic
from labinterp.cli.main import cli
from labinterp.cohort.synth import as_bundle, table2_patients
from labinterp.errors import InputError
from labinterp.knowledge import Knowledge
from tests.conftest import ROOT

P08 = ROOT / "tests" / "data" / "patients" / "p08.json"  # one patient, no linezolid trough
EMPTY_BUNDLE = '{"resourceType": "Bundle", "type": "collection", "entry": []}'
HUGE = "9" * 5000  # more digits than Python converts to an int (4300)


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args))


def _one_line(r: Any) -> str:
    """The single line on standard error, and no traceback anywhere."""
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return str(lines[0])


def _cohort(tmp_path: Path, source: Path, *extra: str) -> tuple[Any, Path]:
    out = tmp_path / "stats.json"
    return invoke("cohort", "--input", str(source), "--out", str(out), *extra), out


@pytest.fixture(scope="module")
def troughs(k: Knowledge) -> dict[str, Any]:
    """A small Bundle of patients with linezolid troughs."""
    return as_bundle(table2_patients(k)[:12], k)


# --- 1. cohort --input reads files as interpret does -----------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (("[" * 100_000 + "]" * 100_000).encode(), "nested too deeply"),
        (('{"resourceType": "Bundle", "type": "collection", "entry": [], "x": "caf\xe9"}').encode("latin-1"), "not UTF-8"),
        (b"", "empty"),
        (b"\n  \n", "empty"),
    ],
    ids=["deep", "latin1", "zero-bytes", "blank"],
)
def test_cohort_unreadable_files_exit_2_with_one_line(tmp_path: Path, content: bytes, message: str) -> None:
    """Before: RecursionError / UnicodeDecodeError tracebacks with exit 1; a 0-byte or blank file exit 0."""
    source = tmp_path / "in.json"
    source.write_bytes(content)
    r, out = _cohort(tmp_path, source)
    line = _one_line(r)
    assert r.exit_code == 2 and line.startswith("labinterp: error: ") and str(source) in line and message in line
    assert not out.exists()


def test_a_zero_byte_file_is_exit_2_for_interpret_and_cohort_alike(tmp_path: Path) -> None:
    source = tmp_path / "in.json"
    source.write_bytes(b"")
    a = invoke("interpret", "--bundle", str(source), "--out", str(tmp_path / "out.json"))
    b, _ = _cohort(tmp_path, source)
    assert a.exit_code == b.exit_code == 2
    assert str(source) in _one_line(a) and str(source) in _one_line(b)


@pytest.mark.parametrize(
    "content",
    [b"\xef\xbb\xbf" + EMPTY_BUNDLE.encode(), EMPTY_BUNDLE[:-1].encode() + b', "x": ' + HUGE.encode() + b"}"],
    ids=["byte-order-mark", "5000-digit-number"],
)
def test_cohort_reads_what_interpret_reads(tmp_path: Path, content: bytes) -> None:
    """Before: a byte order mark was "not JSON" (exit 2, interpret took it); a 5000-digit number a traceback."""
    source = tmp_path / "in.json"
    source.write_bytes(content)
    r, _ = _cohort(tmp_path, source)
    assert r.exit_code == 0 and "nothing to analyse" in _one_line(r)
    assert invoke("interpret", "--bundle", str(source), "--out", str(tmp_path / "out.json")).exit_code == 0


def test_a_bundle_written_with_indent_0_is_json_not_ndjson(tmp_path: Path, troughs: dict[str, Any]) -> None:
    """Before: every line starts with `{` or a key, so it was taken for NDJSON and rejected (exit 2)."""
    source = tmp_path / "in.json"
    source.write_text(json.dumps(troughs, indent=0))
    assert "\n{" in source.read_text()
    r, out = _cohort(tmp_path, source)
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text())["n"] > 0


def test_ndjson_is_still_read(tmp_path: Path, troughs: dict[str, Any]) -> None:
    source = tmp_path / "in.ndjson"
    source.write_text("".join(json.dumps(e["resource"]) + "\n" for e in troughs["entry"]))
    r, out = _cohort(tmp_path, source)
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text())["n"] > 0


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ('1\n"x"\nnull\n', 1, "found a JSON number"),
        ("[]\n", 1, "found a JSON array"),
        ('{"resourceType":"Patient","id":"a"}\n[1]\n', 2, "found a JSON array"),
        ('{"resourceType":"Patient","id":"a"}\n\n{"id":"b"}\n', 3, "an object with no resourceType"),
        ('{"resourceType":"Patient","id":"a"}\n{bad\n', 2, "not JSON"),
        ('{"resourceType":"Patient","id":"a"}\n' + "[" * 100_000 + "]" * 100_000 + "\n", 2, "nested too deeply"),
    ],
)
def test_ndjson_errors_name_file_and_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    """Before: "Bundle.entry[0]: entry has no resource", an entry no file has."""
    source = tmp_path / "in.ndjson"
    source.write_text(text)
    r, _ = _cohort(tmp_path, source)
    got = _one_line(r)
    assert r.exit_code == 2 and f"{source} line {line}: " in got and message in got and "Bundle.entry" not in got


def test_a_broken_json_document_gets_its_json_error(tmp_path: Path) -> None:
    source = tmp_path / "in.json"
    source.write_text('{\n"resourceType": "Bundle",\n"type": "collection",\n"entry": [\n')
    r, _ = _cohort(tmp_path, source)
    assert r.exit_code == 2 and f"{source}: not JSON: " in _one_line(r) and "line 5" in r.stderr


def test_a_bug_in_cohort_is_one_line_exit_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: only LabinterpError was caught: any other exception escaped as a traceback."""

    def broken(*args: Any, **kwargs: Any) -> None:
        raise KeyError("Patient/secret-id")

    monkeypatch.setattr("labinterp.cohort.analytics.table_from_bundle", broken)
    source = tmp_path / "in.json"
    source.write_text(EMPTY_BUNDLE)
    r, _ = _cohort(tmp_path, source)
    line = _one_line(r)
    assert r.exit_code == 1 and "unexpected internal error (KeyError)" in line and "secret" not in r.output


# --- 2. nothing to analyse: an earlier run's output does not stay ------------------------------------------------


def test_nothing_to_analyse_removes_the_earlier_outputs(tmp_path: Path) -> None:
    """Before: exit 0 and nothing written, so an old stats.json stayed and looked current."""
    out, html = tmp_path / "stats.json", tmp_path / "report.html"
    out.write_text('{"n": 190}')
    html.write_text("<html>old</html>")
    r = invoke("cohort", "--input", str(P08), "--out", str(out), "--html", str(html))
    line = _one_line(r)
    assert r.exit_code == 0 and "nothing to analyse" in line and f"removed the earlier {out} and {html}" in line
    assert not out.exists() and not html.exists()


def test_nothing_to_analyse_without_earlier_output_says_nothing_about_removing(tmp_path: Path) -> None:
    r, out = _cohort(tmp_path, P08)
    assert r.exit_code == 0 and "removed" not in _one_line(r) and not out.exists()


def test_an_output_that_is_the_input_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "in.json"
    source.write_bytes(P08.read_bytes())
    r = invoke("cohort", "--input", str(source), "--out", str(source))
    assert r.exit_code == 2 and "would overwrite the input" in _one_line(r) and source.read_bytes() == P08.read_bytes()


# --- 3. output paths that cannot be written ---------------------------------------------------------------------


def test_interpret_out_in_a_missing_directory_is_exit_2_naming_it(tmp_path: Path) -> None:
    """Before: exit 1 with a 34-line traceback (FileNotFoundError from mkstemp)."""
    out = tmp_path / "nope" / "x.json"
    r = invoke("interpret", "--bundle", str(P08), "--out", str(out), "--now", "2026-01-20T12:00:00Z", "--no-render")
    line = _one_line(r)
    assert r.exit_code == 2 and str(out) in line and "cannot be written" in line
    assert not out.parent.exists()


def test_a_write_that_fails_late_is_one_line_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The directory passes the early check but the write itself fails (disk full, the directory removed)."""

    def full(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("labinterp.cli.common.os.replace", full)
    out = tmp_path / "out.json"
    r = invoke("interpret", "--bundle", str(P08), "--out", str(out), "--now", "2026-01-20T12:00:00Z", "--no-render")
    assert r.exit_code == 2 and f"{out}: cannot be written: No space left on device" in r.stderr
    assert "Traceback" not in r.output and list(tmp_path.iterdir()) == []  # no temporary file left


def test_write_json_atomic_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(OutputFailure, match=r"nope/x\.json: cannot be written"):
        write_json_atomic(str(tmp_path / "nope" / "x.json"), {})


@pytest.mark.parametrize("option", ["--out", "--html"])
def test_cohort_outputs_in_a_missing_directory_are_exit_2(tmp_path: Path, option: str) -> None:
    source = tmp_path / "in.json"
    source.write_text(EMPTY_BUNDLE)
    bad = tmp_path / "nope" / "file"
    args = {"--out": str(tmp_path / "stats.json"), "--html": None, option: str(bad)}
    r = invoke("cohort", "--input", str(source), *[x for o, v in args.items() if v for x in (o, v)])
    assert r.exit_code == 2 and f"{bad}: cannot be written" in _one_line(r)


def test_cohort_synth_out_in_a_missing_directory_is_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "nope" / "cohort.json"
    r = invoke("cohort", "synth", "--out", str(bad))
    assert r.exit_code == 2 and f"{bad}: cannot be written" in _one_line(r)


# --- 4. one very long integer is a problem of its resource ------------------------------------------------------


def test_parse_json_reads_very_long_integers_as_floats() -> None:
    assert parse_json("[1, -2, 10000000000000000000000]", "x") == [1, -2, 10**22]
    assert all(type(v) is int for v in parse_json("[1, -2, 10000000000000000000000]", "x"))
    big, small = parse_json(f"[{HUGE}, -{HUGE}]", "x")
    assert math.isinf(big) and big > 0 and math.isinf(small) and small < 0
    with pytest.raises(InputError, match=r"x line 3: not JSON: .* at column 2"):
        parse_json("{bad", "x", line=3)


def test_a_5000_digit_value_leaves_one_resource_out_not_the_input(tmp_path: Path) -> None:
    """Before: exit 2, "a number with too many digits": the whole input rejected for one value."""
    data = json.loads(P08.read_text())
    obs = next(e["resource"] for e in data["entry"] if "valueQuantity" in e["resource"])
    obs["valueQuantity"]["value"] = 0.123456789
    source, out = tmp_path / "in.json", tmp_path / "out.json"
    source.write_text(json.dumps(data).replace("0.123456789", HUGE))
    r = invoke("interpret", "--bundle", str(source), "--out", str(out), "--now", "2026-01-20T12:00:00Z", "--no-render")
    assert r.exit_code == 0, r.output
    assert f"labinterp: warning: Observation/{obs['id']} valueQuantity" in r.stderr
    written = out.read_text()
    assert json.loads(written)["entry"] and "Infinity" not in written


# --- 5. cohort synth --patients ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n", ["-5", "0"])
def test_synth_needs_at_least_one_patient(tmp_path: Path, n: str) -> None:
    """Before: --patients -5 was accepted."""
    out = tmp_path / "c.json"
    r = invoke("cohort", "synth", "--mode", "realistic", "--patients", n, "--out", str(out))
    assert r.exit_code == 2 and "--patients" in r.output and not out.exists()
