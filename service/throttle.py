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

Fleet view (docs/architecture.md, "Shared insurer state"): every process also keeps what it counted
since its last sync (`pending`, by wall-clock bucket); InsurerHealth's sync adds those to the order
database and hands back the fleet's totals over the window (`set_fleet`). While a fleet figure is
fresh, `counts()` is that figure plus what this process counted since — so every process decides on
one figure; without one (no sync yet, or the database unreachable for longer than the stale limit)
it is this process's own window, as before.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

#: (requests, accepts, first calls) counted in one wall-clock bucket since the last sync
Pending = dict[int, list[int]]


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
        self._pending: Pending = {}  # wall-clock bucket start -> [requests, accepts, first calls] not yet synced
        self._inflight: Pending = {}  # handed to a sync that has not answered yet
        self._fleet: tuple[int, int, int] | None = None  # the fleet's totals in the window at the last sync

    @property
    def bucket_s(self) -> float:
        return self._bucket_s

    def take_pending(self) -> Pending:
        """What this process counted since the last sync (kept as in flight until `set_fleet` or `sync_failed`)."""
        for bucket, counts in self._pending.items():
            held = self._inflight.setdefault(bucket, [0, 0, 0])
            for i in range(3):
                held[i] += counts[i]
        self._pending = {}
        return {bucket: list(counts) for bucket, counts in self._inflight.items()}

    def set_fleet(self, requests: int, accepts: int, first_calls: int) -> None:
        """The fleet's totals in the window, the in-flight counts included (they are in the database now)."""
        self._inflight = {}
        self._fleet = (requests, accepts, first_calls)

    def sync_failed(self, *, oldest: int) -> None:
        """The sync did not reach the database: keep the in-flight counts for the next one (but not
        buckets older than `oldest`, which have left the window)."""
        self._inflight = {b: c for b, c in self._inflight.items() if b >= oldest}

    def drop_fleet(self) -> None:
        """Fall back to this process's own window (the fleet figure is stale)."""
        self._fleet = None

    @property
    def shared(self) -> bool:
        return self._fleet is not None

    def _unsynced(self) -> tuple[int, int, int]:
        totals = [0, 0, 0]
        for part in (self._pending, self._inflight):
            for counts in part.values():
                for i in range(3):
                    totals[i] += counts[i]
        return totals[0], totals[1], totals[2]

    def first_calls(self) -> int:
        """First calls in the window: the fleet's (plus this process's since the sync), else 0 locally known."""
        if self._fleet is None:
            return self._unsynced()[2]
        return self._fleet[2] + self._unsynced()[2]

    def _slot(self) -> int:
        epoch = int(self._clock() // self._bucket_s)
        slot = epoch % self.policy.buckets
        if self._epochs[slot] != epoch:  # a new period for this slot: forget what it held
            self._epochs[slot] = epoch
            self._requests[slot] = 0
            self._accepts[slot] = 0
        return slot

    def counts(self) -> tuple[int, int]:
        """(requests, accepts) in the window: the fleet's when shared, else this process's."""
        if self._fleet is not None:
            requests, accepts, _ = self._unsynced()
            return self._fleet[0] + requests, self._fleet[1] + accepts
        return self.local_counts()

    def local_counts(self) -> tuple[int, int]:
        """(requests, accepts) this process made in the window."""
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

    def record(self, *, failed: bool, first: bool = False, wall: float | None = None) -> None:
        """One request made (a call or a query), whether it failed (no accept), and whether it was an
        order's first call (the insurer's normal traffic); `wall`: Unix time, for the fleet bucket."""
        slot = self._slot()
        self._requests[slot] += 1
        if not failed:
            self._accepts[slot] += 1
        bucket = int((time.time() if wall is None else wall) // self._bucket_s * self._bucket_s)
        counts = self._pending.setdefault(bucket, [0, 0, 0])
        counts[0] += 1
        counts[1] += 0 if failed else 1
        counts[2] += 1 if first else 0
        if len(self._pending) > 2 * self.policy.buckets:  # never synced (no database): forget what left the window
            oldest = bucket - self.policy.window_s
            self._pending = {b: c for b, c in self._pending.items() if b >= oldest}

    def retry_in(self) -> float:
        """A hint for when to try again after a refusal: one bucket, scaled up with the refusal rate."""
        return self._bucket_s * (1.0 + 4.0 * self.reject_probability())
