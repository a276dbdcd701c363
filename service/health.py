"""What this process knows about each insurer's health: one object, owned by the runtime.

`InsurerHealth` guards each insurer with one of (settings `insurer_guard`):

- `adaptive` (the default): client-side adaptive throttling (service/throttle.py) — an insurer gets
  calls in proportion to what it accepts, a dead one probes only, a healthy one is never slowed;
- `breaker`: the on/off circuit breaker (service/breaker.py);
- `none`: every call goes through.

It reports every change (the asyncgate_insurer_circuit_state gauge — 0 calls go through, 1 some are
refused, 2 (nearly) all are — and a log line). The runtime (service/runtime.py)
makes one per process and hands it to the OrderProcessor (which asks it before each call and tells
it each outcome), the worker (which claims no orders of a blocked insurer) and the console (which
shows it), so none of them reaches into another for it. Whatever later joins or replaces the
breakers belongs here too.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Literal

from service.breaker import STATE_VALUE, BreakerPolicy, Breakers, BreakerState
from service.metrics import Metrics
from service.throttle import AdaptiveThrottle, ThrottlePolicy

Guard = Literal["adaptive", "breaker", "none"]
#: An adaptive throttle refusing at least this share of the calls reads as OPEN (probes only).
OPEN_AT: float = 0.9

log = logging.getLogger("asyncgate.processing")  # the logger these lines have always had


class InsurerHealth:
    """Per-insurer circuit breakers with their changes reported; time from an injected monotonic clock."""

    def __init__(
        self,
        policy: BreakerPolicy | None,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.monotonic,
        guard: Guard = "breaker",
        throttle: ThrottlePolicy | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.metrics = metrics
        self.guard: Guard = guard
        if guard == "none":
            policy = BreakerPolicy(failures=0)
        self._breakers = Breakers(policy, clock=clock, on_change=self._changed)
        self._throttle_policy = throttle or ThrottlePolicy()
        self._throttles: dict[str, AdaptiveThrottle] = {}
        self._throttle_states: dict[str, BreakerState] = {}
        self._clock = clock
        self._rng = rng or random.Random()

    @property
    def policy(self) -> BreakerPolicy:
        return self._breakers.policy

    def _throttle(self, insurer: str) -> AdaptiveThrottle:
        throttle = self._throttles.get(insurer)
        if throttle is None:
            throttle = AdaptiveThrottle(self._throttle_policy, clock=self._clock, rng=self._rng)
            self._throttles[insurer] = throttle
        return throttle

    def allow(self, insurer: str) -> bool:
        """May a call to `insurer` go through now? (A breaker in HALF_OPEN takes a probe slot.)"""
        if self.guard == "adaptive":
            allowed = self._throttle(insurer).allow()
            self._throttle_changed(insurer)
            return allowed
        return self._breakers.allow(insurer)

    def record(self, insurer: str, *, failed: bool) -> None:
        """One call's (or query's) outcome: did it count against the insurer's health?"""
        if self.guard == "adaptive":
            self._throttle(insurer).record(failed=failed)
            self._throttle_changed(insurer)
            return
        self._breakers.record(insurer, failed=failed)

    def state(self, insurer: str) -> BreakerState:
        if self.guard == "adaptive":
            return self._throttle_state(self._throttle(insurer).reject_probability())
        return self._breakers.state(insurer)

    def reject_probability(self, insurer: str) -> float:
        """The share of calls to `insurer` refused locally now (adaptive; 0 or 1 for a breaker)."""
        if self.guard == "adaptive":
            return self._throttle(insurer).reject_probability()
        return 1.0 if self._breakers.retry_in(insurer) > 0 else 0.0

    def retry_in(self, insurer: str) -> float:
        """Seconds until a call to `insurer` is worth trying again (0 when it may go now)."""
        if self.guard == "adaptive":
            return self._throttle(insurer).retry_in()
        return self._breakers.retry_in(insurer)

    def blocked(self) -> set[str]:
        """Insurers that get (nearly) no call now: the worker claims none of their orders."""
        if self.guard == "adaptive":
            return {name for name, t in self._throttles.items() if t.reject_probability() >= OPEN_AT}
        return self._breakers.blocked()

    @staticmethod
    def _throttle_state(p: float) -> BreakerState:
        return BreakerState.CLOSED if p <= 0.0 else BreakerState.OPEN if p >= OPEN_AT else BreakerState.HALF_OPEN

    def _throttle_changed(self, insurer: str) -> None:
        throttle = self._throttle(insurer)
        p = throttle.reject_probability()
        after = self._throttle_state(p)
        before = self._throttle_states.get(insurer, BreakerState.CLOSED)
        if after is not before:
            self._throttle_states[insurer] = after
            requests, accepts = throttle.counts()
            window = self._throttle_policy.window_s
            self._changed(
                insurer, before, after, f"throttling {p:.0%}: {accepts} of {requests} accepted in {window:g} s"
            )

    def _changed(self, insurer: str, before: BreakerState, after: BreakerState, why: str) -> None:
        self.metrics.circuit(insurer, after.value, STATE_VALUE[after])
        level = logging.WARNING if after is BreakerState.OPEN else logging.INFO
        log.log(
            level,
            "circuit for insurer %s: %s → %s (%s)",
            insurer,
            before.value,
            after.value,
            why,
            extra={"insurer": insurer, "circuit": after.value, "previous": before.value, "reason": why},
        )
