"""The delivery retry schedule (docs/contract.md §8): pure, no clock, no global randomness.

Exponential backoff with equal jitter, capped:

    cap   = min(max_s, base_s * 2 ** (tries - 1))
    delay = cap / 2 + uniform(0, cap / 2)

where `tries` counts the unacknowledged tries so far (1 after the first). Half the cap is kept so a
receiver that is down sees the tries spread out rather than some coming back at once. The event is
given up (None: `failed`) when the next try would come more than `max_age_s` after `since` (the
event's time, or its last redeliver): every event is tried at least once.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class DeliveryBackoff:
    base_s: float = 1.0
    max_s: float = 600.0
    max_age_s: float = 86_400.0

    def __post_init__(self) -> None:
        for name in ("base_s", "max_s", "max_age_s"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"DeliveryBackoff.{name} must be a positive number of seconds, got {value!r}")
        if self.max_s < self.base_s:
            raise ValueError(f"DeliveryBackoff.max_s ({self.max_s}) must be at least base_s ({self.base_s})")

    def cap(self, tries: int) -> float:
        if tries < 1:
            raise ValueError(f"tries must be at least 1, got {tries}")
        return min(self.max_s, self.base_s * 2.0 ** min(tries - 1, 64))

    def next_try(self, *, tries: int, since: dt.datetime, now: dt.datetime, rng: random.Random) -> dt.datetime | None:
        """When to try again after `tries` unacknowledged tries, or None when the maximum age is spent."""
        cap = self.cap(tries)
        delay = dt.timedelta(seconds=cap / 2 + rng.uniform(0.0, cap / 2))
        if (now + delay - since).total_seconds() > self.max_age_s:
            return None
        return now + delay
