"""Typed, frozen models of Shared pieces of every mappings model: strict base, file metadata, bands and their contiguity check. Unknown keys are rejected."""

from __future__ import annotations

import itertools
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Risk = Literal["negligible", "low", "moderate", "high", "certain"]
RISK_ORDER: tuple[str, ...] = ("negligible", "low", "moderate", "high", "certain")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Meta(Strict):
    source: str = Field(min_length=1)
    version: str = Field(min_length=1)


class Band(Strict):
    """A half-open or closed interval [lower, upper] of a continuous value; either end may be open-ended."""

    name: str
    lower: float | None = None
    lower_closed: bool = True
    upper: float | None = None
    upper_closed: bool = False
    interpretation: str = ""
    snomed: str = ""
    text: str = ""
    source: str = ""
    risk: Risk | None = None
    probability: float | None = Field(default=None, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> Band:
        if self.lower is not None and self.upper is not None and self.lower >= self.upper:
            raise ValueError(f"band {self.name!r}: lower {self.lower} is not below upper {self.upper}")
        return self


def check_contiguous(bands: tuple[Band, ...], what: str, required: tuple[str, ...] = ()) -> None:
    """Bands must cover the whole line in order: open below, open above, and each edge owned once."""
    if not bands:
        raise ValueError(f"{what}: no bands")
    if missing := set(required) - {b.name for b in bands}:
        raise ValueError(f"{what}: missing {sorted(missing)}")
    if bands[0].lower is not None:
        raise ValueError(f"{what}: first band {bands[0].name!r} must have no lower bound")
    if bands[-1].upper is not None:
        raise ValueError(f"{what}: last band {bands[-1].name!r} must have no upper bound")
    for a, b in itertools.pairwise(bands):
        if a.upper is None or b.lower is None or a.upper != b.lower:
            raise ValueError(f"{what}: gap or overlap between {a.name!r} (upper {a.upper}) and {b.name!r} (lower {b.lower})")
        if a.upper_closed == b.lower_closed:
            raise ValueError(f"{what}: the edge {a.upper} between {a.name!r} and {b.name!r} must belong to exactly one band")


# --- sources.toml ------------------------------------------------------------------------------

SOURCE_KEY = r"seed \d{3}"  # how the other mappings files name a source ("seed 000 section 2.2")


class Source(Strict):
    """One source document: the words a reader sees in place of its key, and notes for maintainers."""

    citation: str = Field(min_length=1)  # replaces the key in every loaded string
    details: str = ""  # where to find it (never shown in reports)
    file: str = ""  # the source document's file, for maintainers (never shown)

    @model_validator(mode="after")
    def _readable(self) -> Source:
        if re.search(rf"(?i)\b{SOURCE_KEY}\b", self.citation):
            raise ValueError(f"citation: {self.citation!r} names a source key; write what a reader can find")
        return self


class SourcesFile(Strict):
    meta: Meta
    sources: dict[str, Source]

    @model_validator(mode="after")
    def _keys(self) -> SourcesFile:
        for key in self.sources:
            if not re.fullmatch(SOURCE_KEY, key):
                raise ValueError(f"sources.{key}: a source key is written 'seed NNN' (three digits)")
        return self
