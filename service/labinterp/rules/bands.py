"""Classifying a value, possibly with a comparator, into contiguous bands from mappings/."""

from __future__ import annotations

import math
from collections.abc import Sequence

from labinterp.knowledge.model import Band


def _contains(band: Band, value: float) -> bool:
    lo = -math.inf if band.lower is None else band.lower
    hi = math.inf if band.upper is None else band.upper
    above_lo = value > lo or (band.lower_closed and value == lo)
    below_hi = value < hi or (band.upper_closed and value == hi)
    return above_lo and below_hi


def classify(value: float, bands: Sequence[Band], comparator: str = "") -> Band | None:
    """The band holding the value. With a comparator ("<" LOQ) the value is an interval: the band is
    returned only when the whole interval lies in one band, otherwise None (indeterminate)."""
    if not comparator:
        return next((b for b in bands if _contains(b, value)), None)
    if comparator in ("<", "<="):
        # the true value lies in (-inf, value) or (-inf, value]
        hits = [
            b
            for b in bands
            if (b.lower is None or b.lower < value or (comparator == "<=" and b.lower == value and b.lower_closed))
        ]
    elif comparator in (">", ">="):
        hits = [
            b
            for b in bands
            if (b.upper is None or b.upper > value or (comparator == ">=" and b.upper == value and b.upper_closed))
        ]
    else:
        raise ValueError(f"unknown comparator {comparator!r}")
    return hits[0] if len(hits) == 1 else None
