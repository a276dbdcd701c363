"""The training-data profile a model card carries for drift checks: per insurer, its rows, async rate and codes.

    profile = data_profile(frame)            # at training time, stored as card["training_data"]["profile"]
    known = TrainingProfile.from_card(card)  # at serving time; cards written before profiles existed give
                                             # an empty profile (`available` False), never an error

Drift monitoring compares live failures with this: error codes an insurer never showed in training,
and each insurer's async-eligible rate against its training-time rate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from model.records import is_missing
from model.schema import LABEL_COLUMN

if TYPE_CHECKING:
    import pandas as pd

PROFILE_KEY: Final = "profile"
#: At most this many distinct codes are kept per insurer (the most frequent ones).
MAX_CODES_PER_INSURER: Final = 2000


def _code(value: Any) -> str | None:
    if is_missing(value):
        return None
    text = str(value).strip()
    return text or None


def data_profile(frame: pd.DataFrame) -> dict[str, Any]:
    """{"insurers": {name: {"rows", "async_rate", "codes": [...]}}} of a validated training frame."""
    insurers: dict[str, Any] = {}
    for insurer, group in frame.groupby(frame["insurer"].astype(str), sort=True):
        codes = group["error_code"].map(_code).dropna()
        frequent = codes.value_counts().head(MAX_CODES_PER_INSURER)
        insurers[str(insurer)] = {
            "rows": len(group),
            "async_rate": round(float(group[LABEL_COLUMN].mean()), 4),
            "codes": sorted(str(c) for c in frequent.index),
        }
    return {"insurers": insurers}


@dataclass(frozen=True)
class InsurerProfile:
    rows: int
    async_rate: float
    codes: frozenset[str]


@dataclass(frozen=True)
class TrainingProfile:
    """What the model saw in training, per insurer; empty for cards without a profile."""

    insurers: Mapping[str, InsurerProfile] = field(default_factory=dict)
    available: bool = False

    @classmethod
    def from_card(cls, card: Mapping[str, Any]) -> TrainingProfile:
        data = card.get("training_data")
        raw = data.get(PROFILE_KEY) if isinstance(data, Mapping) else None
        if not isinstance(raw, Mapping) or not isinstance(raw.get("insurers"), Mapping):
            return cls()
        insurers = {}
        for name, entry in raw["insurers"].items():
            if not isinstance(entry, Mapping):
                continue
            insurers[str(name)] = InsurerProfile(
                rows=int(entry.get("rows", 0)),
                async_rate=float(entry.get("async_rate", math.nan)),
                codes=frozenset(str(c) for c in entry.get("codes", ())),
            )
        return cls(insurers, True)

    def knows_code(self, insurer: str | None, code: str | None) -> bool | None:
        """Whether training saw `code` from `insurer`; None when it cannot tell (no profile, or no code)."""
        if not self.available or code is None:
            return None
        known = self.insurers.get(insurer or "")
        return known is not None and code in known.codes

    def async_rate(self, insurer: str) -> float | None:
        known = self.insurers.get(insurer)
        return None if known is None or math.isnan(known.async_rate) else known.async_rate
