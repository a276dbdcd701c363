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

Shared state (docs/architecture.md, "Shared insurer state"): `allow()` and `record()` stay in memory;
`sync(store)`, run every `sync_s` by `run_sync` in each serve and worker process, adds this process's
counts since the last sync to the order database and takes back the fleet's totals over the window,
so the adaptive throttle of every process decides on one figure (requests and accepts of all
processes) and the worker's retry budget sees the fleet's first-call rate. A sync that fails keeps
its counts for the next one; after `stale_s` without a sync each process falls back to its own
window (logged), and back to the fleet's figure (logged) once a sync succeeds.

The on/off breaker (guard "breaker") is shared the same way: each sync writes this process's trips
(its breaker opened: until when it stays open) and closes (a probe succeeded) to the insurer's
`insurer_circuit` row and reads every row back, so a trip anywhere opens every process's circuit until
the same time, within two sync periods (the writer's, then the reader's: ≤ 1 s by default), and one
successful probe anywhere closes them all
(service/store/insurer_state.py). Each process still counts its own calls to decide a trip.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import anyio
import anyio.to_thread

from service.breaker import STATE_VALUE, BreakerPolicy, Breakers, BreakerState
from service.budget import BudgetFigure
from service.metrics import Metrics
from service.store import StoreUnavailable
from service.store.insurer_state import CircuitClose, CircuitRow, CircuitTrip, InsurerStateStore, Traffic
from service.throttle import AdaptiveThrottle, ThrottlePolicy

Guard = Literal["adaptive", "breaker", "none"]
#: An adaptive throttle refusing at least this share of the calls reads as OPEN (probes only).
OPEN_AT: float = 0.9
#: ... and at least this share, the worker claims none of the insurer's orders for now (blocked()).
#: Higher than OPEN_AT: between the two the worker keeps drawing, so the probes find an insurer
#: that is only degraded (measured: at 0.9 the fleet stops at the first wave of transient failures
#: of a backlog and waits a whole window; docs/architecture.md, "Shared insurer state").
BLOCK_AT: float = 0.99

log = logging.getLogger("asyncgate.processing")  # the logger these lines have always had
sync_log = logging.getLogger("asyncgate.health")


@dataclass(frozen=True)
class HealthFigure:
    """One insurer's health for /metrics and the console: the fleet's figure, or this process's own
    when `shared` is False (no sync yet, or the database unreachable)."""

    insurer: str
    shared: bool
    state: BreakerState
    reject_probability: float
    requests: int  # in the window
    accepts: int
    first_calls: int
    first_call_rate: float  # first calls per second over the window
    local_requests: int  # of `requests`, this process's own
    local_accepts: int


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
        first_calls: bool = False,
        stale_s: float = 5.0,
        wall: Callable[[], float] = time.time,
    ) -> None:
        """`first_calls`: this process makes orders' first calls (serve): what it records is the
        insurer's normal traffic, from which the retry budget is a share."""
        self.metrics = metrics
        self.guard: Guard = guard
        if guard == "none":
            policy = BreakerPolicy(failures=0)
        self._breakers = Breakers(policy, clock=clock, on_change=self._breaker_changed)
        # the breaker's last trip and close per insurer not yet written to the database (the latest of
        # each says all: see push_circuit), and what the fleet's rows did here
        self._trips: dict[str, CircuitTrip] = {}
        self._closes: dict[str, CircuitClose] = {}
        self._applying = False  # a change the fleet's row made is not written back
        self._tripped_at: dict[str, float] = {}  # wall time of the trip that opened this process's circuit
        self._seen_trip: dict[str, float] = {}  # opened_at of the last fleet trip applied
        self._throttle_policy = throttle or ThrottlePolicy()
        self._throttles: dict[str, AdaptiveThrottle] = {}
        self._throttle_states: dict[str, BreakerState] = {}
        self._clock = clock
        self._rng = rng or random.Random()
        self.first_calls = first_calls
        self.stale_s = stale_s
        self._wall = wall
        self._last_sync: float | None = None  # monotonic time of the last sync that reached the database
        #: the runtime's retry budget figures (service/budget.py), for the console beside the health
        self.budget_figures: Callable[[], Mapping[str, BudgetFigure]] = dict
        self._sync_down = False

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
        self._throttle(insurer).record(failed=failed, first=self.first_calls, wall=self._wall())
        if self.guard == "adaptive":
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
            return {name for name, t in self._throttles.items() if t.reject_probability() >= BLOCK_AT}
        return self._breakers.blocked()

    def first_call_rate(self, insurer: str) -> float:
        """The insurer's first calls per second over the window (the fleet's when shared)."""
        throttle = self._throttles.get(insurer)
        return throttle.first_calls() / self._throttle_policy.window_s if throttle is not None else 0.0

    def figure(self, insurer: str) -> HealthFigure:
        throttle = self._throttle(insurer)
        requests, accepts = throttle.counts()
        local_requests, local_accepts = throttle.local_counts()
        return HealthFigure(
            insurer,
            throttle.shared,
            self.state(insurer),
            self.reject_probability(insurer),
            requests,
            accepts,
            throttle.first_calls(),
            self.first_call_rate(insurer),
            local_requests,
            local_accepts,
        )

    def figures(self) -> dict[str, HealthFigure]:
        return {name: self.figure(name) for name in sorted(self._throttles)}

    @property
    def shared(self) -> bool:
        """Is the figure the fleet's now (a sync reached the database within `stale_s`)?"""
        return self._last_sync is not None and self._clock() - self._last_sync <= self.stale_s

    async def sync(self, store: InsurerStateStore) -> bool:
        """Add this process's counts since the last sync to the database and take the fleet's totals
        back; False (counts kept for the next sync) when the database cannot be reached."""
        policy = self._throttle_policy
        bucket_s = policy.window_s / policy.buckets
        current = int(self._wall() // bucket_s * bucket_s)
        since = int(current - (policy.buckets - 1) * bucket_s)
        throttles = dict(self._throttles)
        deltas = {
            (name, bucket): Traffic(*counts)
            for name, throttle in throttles.items()
            for bucket, counts in throttle.take_pending().items()
        }
        try:
            totals = await anyio.to_thread.run_sync(
                lambda: store.push_traffic(deltas, since=since, prune_before=int(since - policy.window_s))
            )
        except StoreUnavailable as exc:
            for throttle in throttles.values():
                throttle.sync_failed(oldest=since)
            if not self._sync_down:
                self._sync_down = True
                sync_log.warning(
                    "insurer state: the database is unreachable (%s); the fleet's figure is kept for %g s, then "
                    "each process decides on its own counts",
                    exc,
                    self.stale_s,
                )
            if not self.shared:
                for throttle in self._throttles.values():
                    throttle.drop_fleet()
            self._changes()
            return False
        for name in totals.keys() - throttles.keys():
            throttles[name] = self._throttle(name)
        for name, throttle in throttles.items():
            total = totals.get(name, Traffic())
            throttle.set_fleet(total.requests, total.accepts, total.first_calls)
        if self.guard == "breaker" and not await self._sync_circuits(store):
            return False
        self._last_sync = self._clock()
        if self._sync_down:
            self._sync_down = False
            sync_log.info("insurer state: the database is reachable again; every process decides on the fleet's figure")
        self._changes()
        return True

    async def _sync_circuits(self, store: InsurerStateStore) -> bool:
        """Write the breaker's trips and closes since the last sync, apply the fleet's rows; False
        (the changes kept for the next sync) when the database cannot be reached."""
        trips, closes = self._trips, self._closes
        self._trips, self._closes = {}, {}
        try:
            rows = await anyio.to_thread.run_sync(store.push_circuit, list(trips.values()), list(closes.values()))
        except BaseException as exc:
            self._trips, self._closes = trips | self._trips, closes | self._closes  # newer ones win
            if not isinstance(exc, StoreUnavailable):
                raise
            if not self._sync_down:
                self._sync_down = True
                sync_log.warning("insurer state: the breaker's changes not shared (%s); kept for the next sync", exc)
            return False
        self._apply_circuits(rows)
        return True

    def _apply_circuits(self, rows: Mapping[str, CircuitRow]) -> None:
        """Open this process's circuit until a newer trip's end; close it when a probe succeeded (anywhere)
        after the trip that opened it."""
        wall = self._wall()
        self._applying = True
        try:
            for name, row in rows.items():
                if row.open_until > wall:
                    if row.opened_at > self._seen_trip.get(name, -math.inf):
                        self._seen_trip[name] = row.opened_at
                        if self._breakers.trip(name, row.open_until - wall, f"opened by another process: {row.reason}"):
                            self._tripped_at[name] = row.opened_at
                elif (
                    row.closed_at is not None
                    and row.closed_at >= self._tripped_at.get(name, math.inf)
                    and self._breakers.reset(name, "a probe of another process succeeded")
                ):
                    self._tripped_at.pop(name, None)
        finally:
            self._applying = False

    def _breaker_changed(self, insurer: str, before: BreakerState, after: BreakerState, why: str) -> None:
        """A breaker's change: reported, and (this process's own decision) kept for the next sync."""
        if not self._applying:
            wall = self._wall()
            if after is BreakerState.OPEN:
                self._tripped_at[insurer] = wall
                self._trips[insurer] = CircuitTrip(insurer, wall, wall + self.policy.cooldown_s, why)
            elif after is BreakerState.CLOSED:
                self._tripped_at.pop(insurer, None)
                self._closes[insurer] = CircuitClose(insurer, wall)
        self._changed(insurer, before, after, why)

    def _changes(self) -> None:
        if self.guard == "adaptive":
            for name in list(self._throttles):
                self._throttle_changed(name)

    async def run_sync(self, store: InsurerStateStore, period_s: float) -> None:
        """`sync` every `period_s` until cancelled; an unexpected error is logged, never raised."""
        while True:
            try:
                await self.sync(store)
            except Exception:
                sync_log.exception("insurer state sync failed")
            await anyio.sleep(period_s)

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
