"""The generic band classifier, with comparators read as intervals."""

import pytest

from labinterp.knowledge.model import Band, check_contiguous
from labinterp.rules.bands import classify

BANDS = (
    Band(name="low", upper=1.0, upper_closed=False),
    Band(name="mid", lower=1.0, lower_closed=True, upper=2.0, upper_closed=True),
    Band(name="high", lower=2.0, lower_closed=False),
)


@pytest.mark.parametrize(
    ("value", "comparator", "expected"),
    [
        (0.999, "", "low"),
        (1.0, "", "mid"),
        (2.0, "", "mid"),
        (2.0001, "", "high"),
        (1.0, "<", "low"),  # (-inf, 1): wholly low
        (1.0, "<=", None),  # (-inf, 1]: touches mid
        (0.5, "<", "low"),
        (1.5, "<", None),  # spans low and mid
        (2.0, ">", "high"),
        (2.0, ">=", None),
        (3.0, ">", "high"),
    ],
)
def test_classify(value: float, comparator: str, expected: str | None) -> None:
    band = classify(value, BANDS, comparator)
    assert (band.name if band else None) == expected


def test_contiguity_rejects_gaps_and_double_edges() -> None:
    check_contiguous(BANDS, "ok")
    with pytest.raises(ValueError, match="gap or overlap"):
        check_contiguous((BANDS[0], Band(name="x", lower=1.5, upper=None)), "t")
    with pytest.raises(ValueError, match="exactly one band"):
        check_contiguous((Band(name="a", upper=1.0, upper_closed=True), Band(name="b", lower=1.0, lower_closed=True)), "t")
    with pytest.raises(ValueError, match="no lower bound"):
        check_contiguous((Band(name="a", lower=0.0, upper=None),), "t")
