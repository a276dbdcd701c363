"""Per-insurer circuit breakers: after too many recent failures an insurer is not called for a while.

One `CircuitBreaker` per insurer, kept by `Breakers` (one per process, shared by the API and the
worker in it). The state machine, with the policy's numbers:

    CLOSED     calls go through; the outcomes of the last `window` calls are remembered. When
               `failures` of them failed, the circuit OPENS.
    OPEN       no call goes through (`allow()` is False) for `cooldown_s`; then HALF_OPEN.
    HALF_OPEN  up to `probes` calls at a time go through as probes. A probe that succeeds CLOSES
               the circuit (the window starts empty); one that fails OPENS it again for cooldown_s.

A failure is what says the insurer (or the way to it) is unwell: no answer or an unknown outcome,
and failures classified async-eligible (busy, throttled, maintenance, timeouts). A business
rejection (a declined underwriting, a bad ID number) is a healthy insurer answering, and counts as
a success here. State is in memory, and shared through the order database by InsurerHealth
(service/health.py): a trip in any process opens every process's circuit until the same time
(`trip`), a probe that succeeds anywhere closes them all (`reset`). Time comes from an injected
monotonic clock, so the tests drive it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


#: The value of each state in the asyncgate_insurer_circuit_state gauge.
STATE_VALUE = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


@dataclass(frozen=True)
class BreakerPolicy:
    """`failures` failed calls among the last `window` open the circuit for `cooldown_s`; then `probes`
    calls at a time test it. `failures` = 0 disables the breaker."""

    window: int = 20
    failures: int = 10
    cooldown_s: float = 30.0
    probes: int = 1

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"breaker window must be at least 1 call, got {self.window}")
        if not 0 <= self.failures <= self.window:
            raise ValueError(f"breaker failures must be between 0 and the window ({self.window}), got {self.failures}")
        if self.cooldown_s <= 0:
            raise ValueError(f"breaker cooldown must be positive, got {self.cooldown_s}")
        if self.probes < 1:
            raise ValueError(f"breaker probes must be at least 1, got {self.probes}")

    @property
    def enabled(self) -> bool:
        return self.failures > 0


#: A trip from another process that would keep the circuit open less than this longer changes nothing
#: (the process's own trip, read back from the database, is not applied again).
TRIP_SLACK_S = 0.05

#: Called as on_change(insurer, old state, new state, why) on every state change.
OnChange = Callable[[str, BreakerState, BreakerState, str], None]


class CircuitBreaker:
    """The breaker of one insurer; see the module docstring for the states."""

    def __init__(self, policy: BreakerPolicy, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        self._recent: deque[bool] = deque(maxlen=policy.window)  # True: the call failed
        self._state = BreakerState.CLOSED
        self._opened_at = 0.0
        self._probes_out = 0
        self._probe_started = 0.0

    @property
    def state(self) -> BreakerState:
        """The state now (an OPEN circuit whose cooldown has passed reads HALF_OPEN)."""
        if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self.policy.cooldown_s:
            return BreakerState.HALF_OPEN
        return self._state

    def retry_in(self) -> float:
        """Seconds until a call may go through again (0 when one may now)."""
        if self._state is BreakerState.OPEN:
            return max(0.0, self.policy.cooldown_s - (self._clock() - self._opened_at))
        return 0.0

    def allow(self) -> tuple[bool, str | None]:
        """(may this call go through, the state change it caused as a reason or None)."""
        if not self.policy.enabled or self._state is BreakerState.CLOSED:
            return True, None
        now = self._clock()
        changed = None
        if self._state is BreakerState.OPEN:
            if now - self._opened_at < self.policy.cooldown_s:
                return False, None
            self._state, self._probes_out = BreakerState.HALF_OPEN, 0
            changed = f"cooldown of {self.policy.cooldown_s:g} s over: probing"
        # A probe whose outcome never came back (its caller died) frees its slot after a cooldown.
        if self._probes_out and now - self._probe_started >= self.policy.cooldown_s:
            self._probes_out = 0
        if self._probes_out >= self.policy.probes:
            return False, changed
        self._probes_out += 1
        self._probe_started = now
        return True, changed

    def record(self, failed: bool) -> tuple[BreakerState, str] | None:
        """Remember one call's outcome; returns (new state, why) when the state changed."""
        if not self.policy.enabled:
            return None
        if self._state is BreakerState.HALF_OPEN:
            self._probes_out = max(0, self._probes_out - 1)
            if failed:
                self._open()
                return BreakerState.OPEN, "a probe failed"
            self._close()
            return BreakerState.CLOSED, "a probe succeeded"
        if self._state is BreakerState.OPEN:
            return None  # a call let through before the circuit opened: it has been counted enough
        self._recent.append(failed)
        failures, calls = sum(self._recent), len(self._recent)
        if failures >= self.policy.failures:
            self._open()
            return BreakerState.OPEN, f"{failures} of the last {calls} calls failed"
        return None

    def trip(self, open_for_s: float) -> bool:
        """Open for `open_for_s` seconds from now, as another process decided (shared state); False
        when already open at least that long (nothing changes)."""
        if not self.policy.enabled or self.retry_in() >= open_for_s - TRIP_SLACK_S:
            return False
        self._open()
        self._opened_at = self._clock() - max(0.0, self.policy.cooldown_s - open_for_s)
        return True

    def reset(self) -> bool:
        """Close, as a probe that succeeded in another process decided; False when already closed."""
        if self._state is BreakerState.CLOSED:
            return False
        self._probes_out = 0
        self._close()
        return True

    def _close(self) -> None:
        self._state = BreakerState.CLOSED
        self._recent.clear()

    def _open(self) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = self._clock()
        self._probes_out = 0
        self._recent.clear()


class Breakers:
    """One CircuitBreaker per insurer name, made on first use; `on_change` hears every state change."""

    def __init__(
        self,
        policy: BreakerPolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: OnChange | None = None,
    ) -> None:
        self.policy = policy or BreakerPolicy()
        self._clock = clock
        self._on_change = on_change
        self._breakers: dict[str, CircuitBreaker] = {}

    def _get(self, insurer: str) -> CircuitBreaker:
        breaker = self._breakers.get(insurer)
        if breaker is None:
            breaker = self._breakers[insurer] = CircuitBreaker(self.policy, clock=self._clock)
        return breaker

    def allow(self, insurer: str) -> bool:
        """May a call to `insurer` go through now? (In HALF_OPEN this takes a probe slot.)"""
        breaker = self._get(insurer)
        before = breaker._state
        allowed, why = breaker.allow()
        if why is not None:
            self._changed(insurer, before, breaker._state, why)
        return allowed

    def record(self, insurer: str, *, failed: bool) -> None:
        breaker = self._get(insurer)
        before = breaker._state
        change = breaker.record(failed)
        if change is not None:
            self._changed(insurer, before, *change)

    def trip(self, insurer: str, open_for_s: float, why: str) -> bool:
        """Open `insurer`'s circuit for `open_for_s` seconds (another process's trip); did it change?"""
        return self._impose(insurer, lambda b: b.trip(open_for_s), BreakerState.OPEN, why)

    def reset(self, insurer: str, why: str) -> bool:
        """Close `insurer`'s circuit (another process's probe succeeded); did it change?"""
        return self._impose(insurer, CircuitBreaker.reset, BreakerState.CLOSED, why)

    def _impose(self, insurer: str, change: Callable[[CircuitBreaker], bool], after: BreakerState, why: str) -> bool:
        breaker = self._get(insurer)
        before = breaker.state
        if not change(breaker):
            return False
        self._changed(insurer, before, after, why)
        return True

    def state(self, insurer: str) -> BreakerState:
        return self._get(insurer).state

    def retry_in(self, insurer: str) -> float:
        return self._get(insurer).retry_in()

    def blocked(self) -> set[str]:
        """Insurers whose circuit lets no call through now (OPEN, cooldown not over)."""
        return {name for name, breaker in self._breakers.items() if breaker.retry_in() > 0}

    def _changed(self, insurer: str, before: BreakerState, after: BreakerState, why: str) -> None:
        if before is not after and self._on_change is not None:
            self._on_change(insurer, before, after, why)
