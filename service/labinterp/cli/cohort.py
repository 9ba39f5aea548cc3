"""`labinterp cohort`: cohort analytics and synthetic cohorts."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from labinterp.cli.common import (
    OutputFailure,
    UsageFailure,
    _knowledge,
    check_writable,
    one_line_errors,
    write_json_atomic,
    write_text_atomic,
)
from labinterp.config import Settings
from labinterp.knowledge import load_knowledge


@click.group("cohort", invoke_without_command=True)
@click.option(
    "--input", "input_path", type=click.Path(exists=True, dir_okay=False), help="A FHIR Bundle (JSON) or NDJSON file of patients."
)
@click.option("--fhir-url", default=None, help="Read every Patient of this FHIR server instead.")
@click.option("--out", "out_path", default="stats.json", show_default=True, type=click.Path(dir_okay=False))
@click.option(
    "--html", "html_path", default=None, type=click.Path(dir_okay=False), help="Also write a readable report with the plots."
)
@click.option("--mappings", "mappings", type=click.Path(file_okay=False), help="A site's overlay directory for mappings/.")
@click.pass_context
def cohort_group(
    ctx: click.Context, input_path: str | None, fhir_url: str | None, out_path: str, html_path: str | None, mappings: str | None
) -> None:
    """Cohort analytics as the linezolid cohort study did them (labinterp cohort --input FILE --out stats.json [--html report.html]),
    or `labinterp cohort synth` to make a synthetic cohort."""
    if ctx.invoked_subcommand is not None:
        return
    from labinterp.cohort.analytics import analyze, html_report, plots, table_from_bundle, table_from_records
    from labinterp.cohort.io import is_ndjson, ndjson_patients, read_cohort_file, read_cohort_server
    from labinterp.pipeline import batch_gc, records_of

    with one_line_errors(str(input_path or "the server data")):
        if bool(input_path) == bool(fhir_url):
            raise UsageFailure("give either --input FILE or --fhir-url URL")
        outputs = [out_path] + ([html_path] if html_path else [])
        for path in outputs:
            if input_path and _same_file(path, input_path):
                raise UsageFailure(f"{path}: an output would overwrite the input file")
            check_writable(path)
        k = _knowledge(mappings)
        progress = sys.stderr.isatty()
        if input_path and is_ndjson(Path(input_path)):  # streamed patient by patient: flat memory at any size
            groups = ndjson_patients(Path(input_path))
            with batch_gc():  # one thread, many patients: see labinterp.pipeline.batch_gc
                table = table_from_records((r for group in groups for r in records_of(group, k)), k, progress=progress)
        else:
            data = (
                read_cohort_file(Path(str(input_path)))
                if input_path
                else read_cohort_server(Settings.from_env().client(fhir_url), k)
            )
            table = table_from_bundle(data, k, progress=progress)
        if table.frame.empty:  # no patient with a linezolid trough: nothing to analyse (exit 0, no file left)
            stale = _remove_earlier(outputs)  # an earlier run's file must not look like this run's
            click.echo(
                f"labinterp: nothing to analyse: no patient with a linezolid trough in the input ({table.skipped} without one)"
                + (f"; removed the earlier {' and '.join(stale)}" if stale else ""),
                err=True,
            )
            return
        stats = analyze(table, k)
        plot_dir = Path(out_path).resolve().parent / (Path(out_path).stem + "_plots")
        try:
            figures = plots(table, stats, k, plot_dir)
        except OSError as exc:
            raise OutputFailure(f"{plot_dir}: cannot be written: {exc.strerror or exc}") from None
        stats["plots"] = {name: str(p) for name, p in figures.items()}
        write_json_atomic(out_path, stats)
        if html_path:
            write_text_atomic(html_path, html_report(stats, figures))
    c = stats["categories"]
    click.echo(
        f"{stats['n']} patients (excluded: {stats['excluded']['below_loq']} below LOQ, {stats['excluded']['egfr_below_30']} eGFR < 30); "
        f"below/within/above {c['below']}/{c['within']}/{c['above']}; wrote {out_path}"
        + (f" and {html_path}" if html_path else "")
    )


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # `a` does not exist (yet)
        return False


def _remove_earlier(paths: list[str]) -> list[str]:
    """Remove the files an earlier run wrote at these output paths; the ones removed."""
    removed = []
    for path in paths:
        if Path(path).is_file():
            try:
                Path(path).unlink()
            except OSError as exc:
                raise OutputFailure(
                    f"nothing to analyse, but the earlier {path} cannot be removed and would look current: {exc.strerror or exc}"
                ) from None
            removed.append(path)
    return removed


@cohort_group.command("synth")
@click.option(
    "--mode",
    type=click.Choice(["table2", "realistic"]),
    default="table2",
    show_default=True,
    help="table2: the 190 patients of Table 2 exactly (+ 6 below LOQ, + eGFR < 30); realistic: drawn from the distributions.",
)
@click.option(
    "--patients", "n", default=1000, show_default=True, type=click.IntRange(min=1), help="With --mode realistic: how many."
)
@click.option("--seed", default=190, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["bundle", "ndjson"]), default="bundle", show_default=True)
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False))
def cohort_synth(mode: str, n: int, seed: int, fmt: str, out_path: str) -> None:
    """A synthetic cohort with the paper's distributions, deterministic from --seed, as FHIR."""
    from labinterp.cohort.io import write_cohort
    from labinterp.cohort.synth import realistic_patients, table2_patients

    with one_line_errors("the synthetic cohort"):
        check_writable(out_path)
        k = load_knowledge()
        patients = table2_patients(k, seed) if mode == "table2" else realistic_patients(k, n, seed)
        count = write_cohort(patients, k, Path(out_path), fmt, progress=sys.stderr.isatty())
    click.echo(f"{len(patients)} patients, {count} resources -> {out_path}")
