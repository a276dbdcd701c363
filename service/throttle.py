"""Client-side adaptive throttling per insurer: calls in proportion to what the insurer accepts.

The insurer guard that replaces an on/off circuit breaker (after Google's SRE book, "Handling
Overload"): over the last `window_s` seconds this process counts, per insurer, the requests it made
(calls and queries) and the insurer's accepts (a success, or any answer that is not the insurer's or
the network's failure — a business rejection is a healthy insurer). A new request is refused locally
with probability

    p = max(0, (requests - K * accepts) / (requests + 1))

One change from the book: `requests` counts the requests made, not the ones refused locally too. The
book's count assumes an overloaded backend that accepts more as it is sent less; an insurer that fails
a third of its calls for its own reasons keeps failing a third, and counting refusals would then drive
its calls to zero (measured: 15% of the wanted calls within a minute). Counting calls made, an
insurer accepting a share a < 1/K gets a steady 1 - p ≈ K·a of the wanted calls (two thirds at a
third accepted, K = 2), a healthy one (a ≥ 1/K) is never slowed, and a dead one gets a trickle of
about sqrt(window × wanted rate) probe calls per window — which notice when it is back. Below
`min_requests` in the window nothing is refused: a handful of failures says little. Refused requests
are not errors: the caller records the order ASYNC_PROCESSING (the API) or leaves it for later (the
worker), as with an open circuit.

Counts live in `buckets` time buckets of window_s / buckets seconds, so old traffic slides out. Time
comes from an injected monotonic clock and the draw from an injected random source: tests drive both.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ThrottlePolicy:
    """K (`accept_multiplier`), the sliding window and its buckets, and the traffic below which nothing
    is refused. K <= 0 disables throttling."""

    accept_multiplier: float = 2.0
    window_s: float = 120.0
    buckets: int = 24
    min_requests: int = 20

    def __post_init__(self) -> None:
        if self.window_s <= 0:
            raise ValueError(f"throttle window must be positive, got {self.window_s}")
        if self.buckets < 1:
            raise ValueError(f"throttle buckets must be at least 1, got {self.buckets}")
        if self.min_requests < 0:
            raise ValueError(f"throttle min_requests must be >= 0, got {self.min_requests}")

    @property
    def enabled(self) -> bool:
        return self.accept_multiplier > 0


class AdaptiveThrottle:
    """The throttle of one insurer."""

    def __init__(
        self,
        policy: ThrottlePolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._rng = rng or random.Random()
        self._bucket_s = policy.window_s / policy.buckets
        self._requests = [0] * policy.buckets
        self._accepts = [0] * policy.buckets
        self._epochs = [-1] * policy.buckets  # which bucket period each slot currently counts

    def _slot(self) -> int:
        epoch = int(self._clock() // self._bucket_s)
        slot = epoch % self.policy.buckets
        if self._epochs[slot] != epoch:  # a new period for this slot: forget what it held
            self._epochs[slot] = epoch
            self._requests[slot] = 0
            self._accepts[slot] = 0
        return slot

    def counts(self) -> tuple[int, int]:
        """(requests, accepts) in the window."""
        self._slot()
        now_epoch = int(self._clock() // self._bucket_s)
        live = [i for i, e in enumerate(self._epochs) if now_epoch - e < self.policy.buckets]
        return sum(self._requests[i] for i in live), sum(self._accepts[i] for i in live)

    def reject_probability(self) -> float:
        if not self.policy.enabled:
            return 0.0
        requests, accepts = self.counts()
        if requests < self.policy.min_requests:
            return 0.0
        return max(0.0, (requests - self.policy.accept_multiplier * accepts) / (requests + 1))

    def allow(self) -> bool:
        """May a request go now? (Drawn with the refusal probability; a refusal is not counted.)"""
        p = self.reject_probability()
        return not (p > 0.0 and self._rng.random() < p)

    def record(self, *, failed: bool) -> None:
        """One request made (a call or a query) and whether it failed (no accept)."""
        slot = self._slot()
        self._requests[slot] += 1
        if not failed:
            self._accepts[slot] += 1

    def retry_in(self) -> float:
        """A hint for when to try again after a refusal: one bucket, scaled up with the refusal rate."""
        return self._bucket_s * (1.0 + 4.0 * self.reject_probability())
