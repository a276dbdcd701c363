"""What this process knows about each insurer's health: one object, owned by the runtime.

`InsurerHealth` holds the per-insurer circuit breakers (service/breaker.py) and reports every state
change (the asyncgate_insurer_circuit_state gauge, a log line). The runtime (service/runtime.py)
makes one per process and hands it to the OrderProcessor (which asks it before each call and tells
it each outcome), the worker (which claims no orders of a blocked insurer) and the console (which
shows it), so none of them reaches into another for it. Whatever later joins or replaces the
breakers belongs here too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from service.breaker import STATE_VALUE, BreakerPolicy, Breakers, BreakerState
from service.metrics import Metrics

log = logging.getLogger("asyncgate.processing")  # the logger these lines have always had


class InsurerHealth:
    """Per-insurer circuit breakers with their changes reported; time from an injected monotonic clock."""

    def __init__(
        self, policy: BreakerPolicy | None, metrics: Metrics, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.metrics = metrics
        self._breakers = Breakers(policy, clock=clock, on_change=self._changed)

    @property
    def policy(self) -> BreakerPolicy:
        return self._breakers.policy

    def allow(self, insurer: str) -> bool:
        """May a call to `insurer` go through now? (In HALF_OPEN this takes a probe slot.)"""
        return self._breakers.allow(insurer)

    def record(self, insurer: str, *, failed: bool) -> None:
        """One call's (or query's) outcome: did it count against the insurer's health?"""
        self._breakers.record(insurer, failed=failed)

    def state(self, insurer: str) -> BreakerState:
        return self._breakers.state(insurer)

    def retry_in(self, insurer: str) -> float:
        """Seconds until a call to `insurer` may go through again (0 when it may now)."""
        return self._breakers.retry_in(insurer)

    def blocked(self) -> set[str]:
        """Insurers whose circuit lets no call through now."""
        return self._breakers.blocked()

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
