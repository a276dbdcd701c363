"""The retry schedule: from an order's attempts and age to its next attempt time, or None for DEAD.

Pure: no I/O, no clock, no global randomness (the caller passes `now` and an `rng`).

Exponential backoff with full jitter, capped:

    delay = uniform(0, min(max_s, base_s * 2 ** (attempts - 1)))

where `attempts` is the number of insurer calls made so far (1 after the first failure). The
order is DEAD (None is returned) when `attempts >= max_attempts`, or when the next attempt would
come more than `max_age_s` after the first failure: `now + delay - first_failure_at > max_age_s`
(which includes an age already exceeded).

An order not called because its insurer's circuit is open is due when a probe may go
(`after_open_circuit`); that spends no attempt.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff parameters: first delay cap `base_s`, delay cap `max_s`, and the two limits before DEAD."""

    base_s: float = 5.0
    max_s: float = 600.0
    max_attempts: int = 8
    max_age_s: float = 86400.0

    def __post_init__(self) -> None:
        for name in ("base_s", "max_s", "max_age_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"RetryPolicy.{name} must be a finite number of seconds, got {value!r}")
            if value <= 0:
                raise ValueError(f"RetryPolicy.{name} must be positive, got {value!r}")
        if self.max_s < self.base_s:
            raise ValueError(f"RetryPolicy.max_s ({self.max_s}) must be at least base_s ({self.base_s})")
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise ValueError(f"RetryPolicy.max_attempts must be an integer, got {self.max_attempts!r}")
        if self.max_attempts < 1:
            raise ValueError(f"RetryPolicy.max_attempts must be at least 1, got {self.max_attempts}")

    def delay_cap(self, attempts: int) -> float:
        """The jittered delay's upper bound after `attempts` calls: min(max_s, base_s * 2**(attempts-1))."""
        if attempts < 1:
            raise ValueError(f"attempts must be at least 1 (calls made so far), got {attempts}")
        # Past 2**64 the cap is max_s whatever base_s is; avoid huge float powers.
        exponent = min(attempts - 1, 64)
        return min(self.max_s, self.base_s * 2.0**exponent)


def next_attempt_at(
    policy: RetryPolicy,
    *,
    attempts: int,
    first_failure_at: dt.datetime,
    now: dt.datetime,
    rng: random.Random,
) -> dt.datetime | None:
    """When to call the insurer again after `attempts` calls, or None when the order is DEAD.

    See the module docstring for the formula. `first_failure_at` and `now` must both be aware or
    both naive (they are only subtracted).
    """
    if attempts >= policy.max_attempts:
        return None
    # Whole microseconds, rounded down, so the returned time never exceeds the cap.
    delay = dt.timedelta(microseconds=math.floor(rng.uniform(0.0, policy.delay_cap(attempts)) * 1e6))
    if (now + delay - first_failure_at).total_seconds() > policy.max_age_s:
        return None
    return now + delay


def after_open_circuit(policy: RetryPolicy, *, retry_in_s: float, now: dt.datetime, rng: random.Random) -> dt.datetime:
    """When an order held back by an open circuit (no call made) is due: once the breaker lets a
    probe through, `retry_in_s` from now, plus up to `base_s` of jitter so held orders do not all
    come due at once. No call was made, so this spends none of the attempts."""
    return now + dt.timedelta(seconds=retry_in_s + rng.uniform(0.0, policy.base_s))
