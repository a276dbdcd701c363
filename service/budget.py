"""The retry budget: how many re-executions per second a worker may send to each insurer.

A token bucket per insurer: it holds at most `burst` tokens and gains `rate_per_s` a second; each
re-execution (a query or a call of one claimed order) takes one. After an outage the backlog is
therefore sent at `rate_per_s` per insurer per worker process, never as a storm; the worker takes
the tokens in the order it claimed the orders, which is due order, so the backlog drains oldest
first. The budget is per worker process: N workers send at most N x rate_per_s to one insurer.

Reservations may only be made up to `max_wait_s` ahead: `reserve` returns how long the caller must
wait for its token, or None (and takes nothing) when that wait would be longer, so a worker never
sits on a leased order for longer than a fraction of its lease. Time comes from an injected
monotonic clock. `rate_per_s` = 0 means no budget (every reservation is granted at once).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RetryBudget:
    """Token buckets per insurer: `rate_per_s` tokens a second, at most `burst` saved up."""

    def __init__(self, rate_per_s: float, burst: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if rate_per_s < 0:
            raise ValueError(f"retry budget rate must be >= 0 per second, got {rate_per_s}")
        if burst < 1:
            raise ValueError(f"retry budget burst must be at least 1, got {burst}")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self.granted: dict[str, int] = {}

    @property
    def enabled(self) -> bool:
        return self.rate_per_s > 0

    def _bucket(self, insurer: str) -> _Bucket:
        now = self._clock()
        bucket = self._buckets.get(insurer)
        if bucket is None:
            bucket = self._buckets[insurer] = _Bucket(float(self.burst), now)
        else:  # tokens may be negative: reservations made ahead of time
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate_per_s)
            bucket.updated = now
        return bucket

    def wait_s(self, insurer: str) -> float:
        """How long a reservation made now would wait for its token."""
        if not self.enabled:
            return 0.0
        bucket = self._bucket(insurer)
        return max(0.0, (1.0 - bucket.tokens) / self.rate_per_s)

    def reserve(self, insurer: str, *, max_wait_s: float) -> float | None:
        """Take a token for `insurer`: the seconds to wait before using it, or None (nothing taken) when
        that would exceed `max_wait_s`."""
        if not self.enabled:
            return 0.0
        wait = self.wait_s(insurer)
        if wait > max_wait_s:
            return None
        self._buckets[insurer].tokens -= 1.0
        self.granted[insurer] = self.granted.get(insurer, 0) + 1
        return wait

    def exhausted(self, insurers: set[str], *, max_wait_s: float) -> set[str]:
        """Those of `insurers` whose next token is more than `max_wait_s` away."""
        return {name for name in insurers if self.wait_s(name) > max_wait_s}

    def known(self) -> set[str]:
        """Insurers that have a bucket (were re-executed by this process)."""
        return set(self._buckets)
