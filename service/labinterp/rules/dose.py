"""The linezolid dose suggestion, with its safety in the sentence itself (SPEC section 2; issue 7 point 3):
hold and platelets above the range, dilution and hold above linearity, adherence and sampling before any
increase, the MIC (never "continue" below it), the inducer, the trend, and the same dosing interval only
(a change of interval is not proportional to the daily dose). A suggestion for the clinician, never an order."""

from __future__ import annotations

import math
from dataclasses import dataclass

from labinterp.extract.facts import Measurement
from labinterp.knowledge.model import Band, LinezolidFile, Regimen
from labinterp.rules.trough_timing import Timing


@dataclass(frozen=True)
class Suggestion:
    text: str
    regimen: Regimen | None
    basis: str


@dataclass(frozen=True)
class DoseContext:
    band: Band | None
    trough: Measurement
    timing: Timing
    regimen: Regimen
    known: bool  # the regimen is recorded (not the standard one assumed)
    below_mic: bool | None
    mic: Measurement | None
    child: bool
    trend: str = ""  # "rising" | "falling" | "stable" | ""
    inducer: str = ""  # the current CYP3A inducer's words, "" without one
    possible: tuple[str, ...] = ()  # for a censored trough that spans bands: the bands it may be in


def _sentence(parts: list[str]) -> str:
    text = "; ".join(p for p in parts if p)
    return text[:1].upper() + text[1:] + "." if text else ""


def _proportional(c: DoseContext, lz: LinezolidFile) -> tuple[str, Regimen | None, str]:
    """A same-interval regimen proportional to target / observed: (sentence, regimen, basis)."""
    ds = lz.dose_suggestion
    assert c.trough.value is not None
    current = c.regimen
    wanted = current.daily_mg * ds.target_mg_per_l / c.trough.value
    pool = [r for r in ds.regimens if r.interval_h == current.interval_h] if ds.same_interval_only else list(ds.regimens)
    basis = (
        f"proportional adjustment at the same dosing interval: {current.daily_mg:g} mg/day x {ds.target_mg_per_l:g} / "
        f"{c.trough.value:.2f} mg/L = {wanted:.0f} mg/day; current {current.label()}"
        + ("" if c.known else " (standard regimen assumed: the current one is not recorded)")
        + f". {ds.source}"
    )
    if not pool:
        return f"no listed regimen has the current interval (every {current.interval_h:g} h); {ds.interval_text}", None, basis
    largest, smallest = max(r.daily_mg for r in pool), min(r.daily_mg for r in pool)
    best = min(pool, key=lambda r: round(abs(math.log(r.daily_mg / wanted)), 9))
    at = f"at every {current.interval_h:g} h"
    if wanted > largest:  # no figure above the largest real dose is printed: a reader could take it as advice
        estimate, cap = "the proportional estimate is above it", f", the largest listed regimen {at}"
    elif wanted < smallest:
        estimate, cap = f"proportional estimate {wanted:.0f} mg/day", f", the smallest listed regimen {at}"
    else:
        estimate, cap = f"proportional estimate {wanted:.0f} mg/day", ""
    if (best.dose_mg, best.interval_h) == (current.dose_mg, current.interval_h):
        already = (
            f"{current.label()} is already{cap.removeprefix(',')}"
            if cap
            else f"no listed regimen is closer than {current.label()}"
        )
        return f"{already} ({estimate}); {ds.interval_text}", None, basis
    return (
        f"consider {best.label()} ({best.daily_mg:g} mg/day{cap}; {estimate}) instead of {current.label()}, "
        "then recheck the trough at steady state",
        best,
        basis,
    )


def _mic_words(c: DoseContext, lz: LinezolidFile) -> tuple[str, str]:
    """(below the MIC, MIC not comparable): the sentences the MIC calls for, "" when none."""
    ds = lz.dose_suggestion
    if c.mic is None:
        return "", ""
    if c.below_mic:
        words = ds.mic_text.replace("the MIC", f"the MIC ({c.mic.original})", 1)
        if c.timing.is_trough is False:
            words = words.replace("the trough", "even this post-dose level", 1)
        return words, ""
    if c.below_mic is None:
        return "", f"the MIC of the isolate ({c.mic.original}) may be above this trough: ask the laboratory for a quantified MIC"
    return "", ""


def _no_number(c: DoseContext, lz: LinezolidFile) -> str:
    """Why no dose is named for a level whose timing cannot be set against the doses, "" when it can."""
    t = c.timing
    if t.sample_untimed:
        return "no dose is named: the sample has no time of collection; record it, or repeat the level as a timed trough"
    if t.is_trough is None and t.untimed_doses:
        return (
            "no dose is named: the doses are recorded without times, so the level cannot be placed in the dosing interval; "
            "record the dose and sampling times, or repeat the level one dosing interval after a dose"
        )
    if t.is_trough is None and not c.known:
        return (
            "no dose is named: neither the doses nor the regimen are recorded; record the dose and sampling times, "
            "or repeat the level one dosing interval after a dose"
        )
    return ""


def _censored(c: DoseContext, lz: LinezolidFile) -> list[str]:
    """What a censored trough spanning bands ("<=2", ">=8") still calls for."""
    ds, sides = lz.dose_suggestion, lz.comparators
    out = []
    if set(c.possible) & set(sides.high_side):
        out += [ds.platelet_text]
    if set(c.possible) & set(sides.low_side):
        out += [ds.check_first_text]
    return [*out, "ask the laboratory for a quantified result"] if out else []


def suggest_dose(c: DoseContext, lz: LinezolidFile) -> Suggestion:
    """What to do, with its safety in the sentence itself."""
    ds = lz.dose_suggestion
    band, timing = c.band, c.timing
    mic, mic_open = _mic_words(c, lz)
    falling = "the trough is falling beyond the reference change value: repeat it early" if c.trend == "falling" else ""
    if band is None:
        if timing.is_trough is False:
            return Suggestion(
                _sentence(["no dose change on this result: it is not a trough", mic, c.inducer]) + " " + timing.draw_advice,
                None,
                lz.trough.source,
            )
        words = ["no dose suggestion: the result cannot be placed in one category", *_censored(c, lz), mic, mic_open]
        return Suggestion(_sentence(words), None, "")
    if band.name == "above_linearity":
        return Suggestion(_sentence([ds.hold_linearity_text, ds.platelet_text]), None, f"{lz.assay.source}; {ds.safety_source}")
    if band.name == "not_quantifiable":
        return Suggestion(
            _sentence(["not quantifiable: " + ds.check_first_text, "repeat the trough", mic, c.inducer]), None, band.source
        )
    above, below = band.name == "above", band.name == "below"
    safety = [ds.hold_text, ds.platelet_text] if above else []
    far = below and (c.trough.comparator.startswith("<") or (c.trough.value or 0.0) < ds.far_below_mg_per_l)
    check = [ds.check_first_text] if far else []
    context = [mic, mic_open, c.inducer]
    if c.child:
        return Suggestion(_sentence([*safety, *context, ds.child_text]), None, f"{lz.cohort.name}; {ds.safety_source}")
    if timing.steady_state == "interrupted":
        record = "check adherence and the dosing record" if not below else ds.check_first_text
        wait = "a dose appears to have been missed: recheck the trough at steady state before changing the dose"
        return Suggestion(_sentence([*safety, *context, record, wait]), None, lz.trough.source)
    if timing.steady_state == "not_reached":
        wait = "the trough may still rise before steady state: recheck it at steady state before changing the dose"
        if band.name == "within":
            wait = (
                "within the range before steady state, where it may still rise: no change yet; recheck the trough at steady state"
            )
        return Suggestion(_sentence([*safety, *check, *context, wait]), None, lz.trough.source)
    if no_number := _no_number(c, lz):
        return Suggestion(_sentence([*safety, *check, *context, no_number]), None, lz.trough.source)
    if_trough = "if this was a trough (the time since the last dose is not recorded): " if timing.is_trough is None else ""
    unchecked = ""
    if timing.is_trough and timing.status != "valid":
        unchecked = "steady state could not be confirmed (start of therapy unknown): check it first"
    if band.name == "within":
        if mic or mic_open:
            return Suggestion(_sentence([*context, unchecked]), None, ds.mic_source)
        keep = f"{if_trough}continue {c.regimen.label()}; the trough is within the therapeutic range"
        if falling:
            keep = f"{if_trough}continue {c.regimen.label()} for now; {falling}"
        return Suggestion(_sentence([keep, c.inducer, unchecked]), c.regimen, band.source)
    if c.trough.comparator or c.trough.value is None:  # "<2", ">8": a side, not a number to scale by
        words = [*safety, *context, *check, "no proportional dose: the trough is not a quantified value", "repeat the trough"]
        return Suggestion(_sentence(words), None, band.source)
    if above and mic_open:  # a lower dose could take the trough further below an MIC that may already exceed it
        return Suggestion(_sentence([*safety, mic_open + " before any reduction", c.inducer]), None, ds.mic_source)
    sentence, regimen, basis = _proportional(c, lz)
    text = _sentence([*safety, *context, *check, if_trough + sentence, unchecked])
    if regimen is not None:
        text = "Suggestion for the clinician: " + text[:1].lower() + text[1:]
    return Suggestion(text, regimen, f"{basis}; {ds.safety_source}")
