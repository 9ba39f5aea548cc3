"""Typed, frozen model of medications.toml: which medication statuses count as current, and the wash-out
windows. Unknown keys are rejected."""

from __future__ import annotations

from pydantic import Field, model_validator

from labinterp.knowledge.model.base import Meta, Strict

# --- medications.toml -------------------------------------------------------------------------


class MedicationStatuses(Strict):
    ended: tuple[str, ...]
    never: tuple[str, ...]
    current: tuple[str, ...]
    on_hold: str = Field(min_length=1)  # why on-hold is grouped where it is (a labinterp choice)

    @model_validator(mode="after")
    def _disjoint(self) -> MedicationStatuses:
        groups = {"ended": set(self.ended), "never": set(self.never), "current": set(self.current)}
        for a, sa in groups.items():
            for b, sb in groups.items():
                if a < b and (both := sa & sb):
                    raise ValueError(f"statuses: {sorted(both)} in both {a} and {b}")
        return self


class Administrations(Strict):
    given: tuple[str, ...] = Field(min_length=1)


class DrugWashout(Strict):
    days: float = Field(ge=0)
    reason: str = Field(min_length=1)


class Washout(Strict):
    default_days: float = Field(ge=0)
    default_reason: str = Field(min_length=1)
    drugs: dict[str, DrugWashout] = Field(default_factory=dict)


class MedicationsFile(Strict):
    meta: Meta
    statuses: MedicationStatuses
    administrations: Administrations
    washout: Washout

    @model_validator(mode="after")
    def _given_not_never(self) -> MedicationsFile:
        if both := set(self.administrations.given) & set(self.statuses.never):
            raise ValueError(f"administrations.given: {sorted(both)} are also in statuses.never")
        return self

    def washout_days(self, keys: frozenset[str] | set[str]) -> float:
        """The longest window among the drug or class keys a medication matched (each its own, else the default)."""
        w = self.washout
        return max((w.drugs[key].days if key in w.drugs else w.default_days for key in keys), default=w.default_days)
