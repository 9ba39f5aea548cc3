"""Cohort analytics as the linezolid cohort study did them: each patient's first trough; troughs below the LOQ and eGFR
< 30 excluded and counted; below/within/above overall and by genotype group with chi-square p-values;
multinomial logistic regression (below vs within, above vs within), unadjusted and adjusted for age, with
95 % CI; trough vs age and vs eGFR correlations; Fig. 1 and Fig. 2 style plots.

stats.json has a stable shape (keys may be added):
{"n", "excluded": {"below_loq", "egfr_below_30", ...}, "categories": {"below", "within", "above"} (counts),
 "groups": [{"factor", "group", "below", "within", "above"} (percentages), ...],
 "associations": [{"factor", "group", "reference", "outcome", "odds_ratio", "ci95", "p", "adjusted_for"}, ...]}"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from labinterp.extract.facts import PatientRecord
from labinterp.knowledge import Knowledge
from labinterp.pipeline import records_of
from labinterp.rules.bands import classify
from labinterp.rules.pgx import interpret_pgx
from labinterp.rules.renal import assess_renal

FACTORS = ("CYP3A5", "POR*28", "CYP3A4*22", "ABCB1 c.3435C>T", "ABCB1 haplotype")
CATEGORY_OF_BAND = {"below": "below", "within": "within", "above": "above", "above_linearity": "above"}


@dataclass
class CohortTable:
    frame: pd.DataFrame  # one row per patient with a trough: pid, trough, band, category, age, egfr, one column per factor
    skipped: int  # patients without a linezolid trough, or whose records could not be read


def table_from_bundle(data: Any, k: Knowledge, progress: bool = False) -> CohortTable:
    return table_from_records(records_of(data, k), k, progress)  # the pipeline's extract step, as everywhere


def table_from_records(records: Iterable[PatientRecord], k: Knowledge, progress: bool = False) -> CohortTable:
    """The table of a stream of patient records (one at a time: an NDJSON cohort read in flat memory)."""
    equation = k.cohort.population.egfr_equation
    rows, skipped = [], 0
    if progress:
        from tqdm import tqdm

        records = tqdm(records, desc="patients", unit="pt")
    for record in records:
        troughs = [m for m in record.of("linezolid") if m.value is not None]
        if not troughs:
            skipped += 1
            continue
        first = troughs[0]  # the first TDM, as the paper analysed
        assert first.value is not None
        band = classify(first.value, k.linezolid.bands, first.comparator)
        when = first.time.start.date() if first.time else None
        renal = assess_renal(record, k, equation)
        pgx = interpret_pgx(record, k)
        row: dict[str, Any] = {
            "pid": record.patient.source.id,
            "trough": first.value,
            "band": band.name if band else "indeterminate",
            "category": CATEGORY_OF_BAND.get(band.name) if band else None,
            "age": record.patient.age_at(when) if when else None,
            "egfr": renal.egfr if renal else None,
        }
        for factor in FACTORS:
            row[factor] = pgx.group(factor) if pgx else None
        rows.append(row)
    return CohortTable(pd.DataFrame(rows), skipped)


def _percent(n: int, total: int) -> float:
    return round(100.0 * float(n) / float(total), 1) if total else 0.0


def _chi2_p(table: np.ndarray) -> float | None:
    from scipy.stats import chi2_contingency

    table = table[:, table.sum(axis=0) > 0]
    if table.shape[0] < 2 or table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return None
    return float(chi2_contingency(table, correction=False)[1])


def _mnlogit(df: pd.DataFrame, exposed: str, adjust: list[str]) -> dict[str, dict[str, Any]]:
    """ORs of below vs within and above vs within for `exposed` (1) vs reference (0), from a multinomial logit."""
    import statsmodels.api as sm

    y = df["category"].map({"within": 0, "below": 1, "above": 2})
    x = pd.DataFrame({"exposed": (df["group"] == exposed).astype(float)})
    for col in adjust:
        x[col] = df[col].astype(float)
    x = sm.add_constant(x, has_constant="add")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = sm.MNLogit(y, x).fit(disp=0, maxiter=200)
    out: dict[str, dict[str, Any]] = {}
    intervals = fit.conf_int(alpha=0.05).xs("exposed", level=1)  # one row per equation, as in fit.params' columns
    for eq, outcome_name in ((0, "below"), (1, "above")):  # statsmodels' equation 0 is y=1 (below), 1 is y=2 (above)
        coef, p = float(fit.params.iloc[1, eq]), float(fit.pvalues.iloc[1, eq])
        low, high = (float(v) for v in intervals.iloc[eq])
        if not all(math.isfinite(v) for v in (coef, p, low, high)):
            raise ValueError("not estimable")
        out[outcome_name] = {
            "odds_ratio": round(math.exp(coef), 4),
            "ci95": [round(math.exp(low), 4), round(math.exp(high), 4)],
            "p": round(p, 4),
        }
    return out


def analyze(table: CohortTable, k: Knowledge) -> dict[str, Any]:
    """The paper's analysis of the first troughs: exclusions, categories, groups with chi-square p, multinomial
    odds ratios (unadjusted and age-adjusted) and correlations."""
    data, excluded = _included(table, k)
    groups, unclassified = _groups(data, k)
    excluded |= unclassified
    n = len(data)
    counts = {c: int((data["category"] == c).sum()) if n else 0 for c in ("below", "within", "above")}
    stats: dict[str, Any] = {
        "n": n,
        "excluded": excluded,
        "categories": {**counts, "percent": {c: _percent(v, n) for c, v in counts.items()}},
        "groups": groups,
        "associations": _associations(data, k),
        "correlations": _correlations(data),
        "rules": {
            "first_trough": True,
            "egfr_equation": k.cohort.population.egfr_equation,
            "egfr_exclude_below": k.cohort.population.egfr_exclude_below,
            "loq_mg_per_l": k.linezolid.assay.loq_mg_per_l,
        },
    }
    return stats


def _included(table: CohortTable, k: Knowledge) -> tuple[pd.DataFrame, dict[str, int]]:
    """The patients the paper analysed (a categorised trough, above the LOQ, eGFR not below the limit), and
    how many were left out for each reason."""
    df = table.frame
    limit = k.cohort.population.egfr_exclude_below
    below_loq = int((df["band"] == "not_quantifiable").sum()) if len(df) else 0
    rest = df[df["band"] != "not_quantifiable"] if len(df) else df
    renal_low = rest["egfr"].notna() & (rest["egfr"] < limit) if len(rest) else pd.Series(dtype=bool)
    egfr_low = int(renal_low.sum()) if len(rest) else 0
    rest = rest[~renal_low] if len(rest) else rest
    indeterminate = int(rest["category"].isna().sum()) if len(rest) else 0
    data = rest[rest["category"].notna()].copy() if len(rest) else rest
    excluded = {
        "below_loq": below_loq,
        "egfr_below_30": egfr_low,
        "indeterminate": indeterminate,
        "no_trough_or_unreadable": table.skipped,
    }
    return data, excluded


def _groups(data: pd.DataFrame, k: Knowledge) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Below / within / above by genotype group with the chi-square p of each factor (Table 2), and how many
    patients each factor could not classify."""
    n = len(data)
    order = {(r.factor, r.group): i for i, r in enumerate(k.linezolid.cohort.table2)}
    out: list[dict[str, Any]] = []
    unclassified: dict[str, int] = {}
    for factor in FACTORS:
        groups = sorted({g for g in data[factor].dropna()} if n else set(), key=lambda g: order.get((factor, g), 99))
        matrix = (
            np.array(
                [
                    [int(((data[factor] == g) & (data["category"] == c)).sum()) for c in ("below", "within", "above")]
                    for g in groups
                ]
            )
            if groups
            else np.zeros((0, 3))
        )
        p = _chi2_p(matrix) if len(groups) >= 2 else None
        for g, row in zip(groups, matrix, strict=True):
            total = int(row.sum())
            out.append(
                {
                    "factor": factor,
                    "group": g,
                    "n": total,
                    "below": _percent(row[0], total),
                    "within": _percent(row[1], total),
                    "above": _percent(row[2], total),
                    "counts": {"below": int(row[0]), "within": int(row[1]), "above": int(row[2])},
                    "p_chi2": p,
                }
            )
        unclassified[f"unclassified {factor}"] = int(data[factor].isna().sum()) if n else 0
    return out, unclassified


def _associations(data: pd.DataFrame, k: Knowledge) -> list[dict[str, Any]]:
    """Multinomial logistic regression odds ratios, below and above vs within, unadjusted and age-adjusted
    (Table 3); "not estimable" with the reason where the data cannot give one."""
    out: list[dict[str, Any]] = []
    for f in k.linezolid.factors:
        subset = data[data[f.factor].isin([f.group, f.reference])].rename(columns={f.factor: "group"}) if len(data) else data
        for adjust in ([], ["age"]):
            base = {"factor": f.factor, "group": f.group, "reference": f.reference, "adjusted_for": adjust}
            try:
                usable = subset.dropna(subset=adjust) if adjust else subset
                result = _mnlogit(usable, f.group, adjust)
            except Exception as exc:  # separation, too few patients: say so rather than print a number
                out += [
                    {
                        **base,
                        "outcome": f"{outcome} vs within",
                        "odds_ratio": None,
                        "ci95": None,
                        "p": None,
                        "error": f"not estimable: {type(exc).__name__}",
                    }
                    for outcome in ("below", "above")
                ]
                continue
            out += [{**base, "outcome": f"{outcome} vs within", **r, "n": len(usable)} for outcome, r in result.items()]
    return out


def _correlations(data: pd.DataFrame) -> list[dict[str, Any]]:
    """Pearson r of the trough with age and with eGFR."""
    from scipy.stats import pearsonr

    out = []
    for var in ("age", "egfr"):
        pair = data[["trough", var]].dropna() if len(data) else data
        if len(pair) >= 3 and pair[var].nunique() > 1:
            r, p = pearsonr(pair["trough"], pair[var])
            out.append({"x": "trough", "y": var, "r": round(float(r), 4), "p": round(float(p), 4), "n": len(pair)})
    return out


def plots(table: CohortTable, stats: dict[str, Any], k: Knowledge, outdir: Path) -> dict[str, Path]:
    """Fig. 1 (box plot with the therapeutic window and the shares) and Fig. 2 (trough vs age with its trend)."""
    from matplotlib.figure import Figure  # the object API: no global figure state shared between request threads

    outdir.mkdir(parents=True, exist_ok=True)
    df = table.frame
    limit = stats["rules"]["egfr_exclude_below"]
    data = df[df["category"].notna() & ~(df["egfr"].notna() & (df["egfr"] < limit))]
    lo, hi = k.linezolid.band("within").lower, k.linezolid.band("within").upper
    pct = stats["categories"]["percent"]
    fig1 = Figure(figsize=(4.2, 5.2), dpi=110)
    ax = fig1.subplots()
    ax.boxplot(data["trough"], widths=0.5, showfliers=True)
    for edge in (lo, hi):
        if edge is not None:
            ax.axhline(edge, linestyle="--", color="grey", linewidth=1)
    ax.set_ylabel("Linezolid trough (mg/L)")
    ax.set_xticks([1], [f"n = {stats['n']}"])
    ax.text(1.32, (hi or 8) * 1.6, f"above {pct['above']} %", fontsize=8)
    ax.text(1.32, ((lo or 2) + (hi or 8)) / 2, f"within {pct['within']} %", fontsize=8)
    ax.text(1.32, (lo or 2) * 0.5, f"below {pct['below']} %", fontsize=8)
    ax.set_title("Fig. 1  First linezolid trough")
    fig1.tight_layout()
    p1 = outdir / "fig1_troughs.png"
    fig1.savefig(p1)
    fig2 = Figure(figsize=(5.6, 4.2), dpi=110)
    ax2 = fig2.subplots()
    pair = data[["age", "trough"]].dropna()
    ax2.scatter(pair["age"], pair["trough"], s=10, alpha=0.7)
    if len(pair) >= 2:
        slope, intercept = np.polyfit(pair["age"], pair["trough"], 1)
        xs = np.array([pair["age"].min(), pair["age"].max()])
        ax2.plot(xs, slope * xs + intercept, color="black")
    r = next((c["r"] for c in stats["correlations"] if c["y"] == "age"), None)
    ax2.set_xlabel("Age (years)")
    ax2.set_ylabel("Linezolid trough (mg/L)")
    ax2.set_title(f"Fig. 2  Trough vs age (r = {r})" if r is not None else "Fig. 2  Trough vs age")
    fig2.tight_layout()
    p2 = outdir / "fig2_trough_vs_age.png"
    fig2.savefig(p2)
    return {"fig1": p1, "fig2": p2}


def html_report(stats: dict[str, Any], figures: dict[str, Path]) -> str:
    import base64

    from labinterp.jinja import template

    encoded = {name: base64.b64encode(path.read_bytes()).decode() for name, path in figures.items()}
    return template("cohort_report.html").render(s=stats, figures=encoded)
