"""The retry budget: how many re-executions per second a worker may send to each insurer.

A token bucket per insurer: it holds at most `burst` tokens and gains `rate_per_s` a second; each
re-execution (a query or a call of one claimed order) takes one. After an outage the backlog is
therefore sent at `rate_per_s` per insurer, never as a storm; the worker takes the tokens in the
order it claimed the orders, which is due order, so the backlog drains oldest first.

`RetryBudget` is one process's buckets (the fallback, and what tests drive). `SharedRetryBudget`
(the runtime's) is the fleet's: its tokens come from one bucket per insurer in the order database
(service/store/insurer_state.py), taken in chunks, so all worker processes together send at most
burst + rate x time; its rate is max(floor, share x the insurer's first-call rate), the first calls
counted by every serve process (service/health.py). A worker waits for a granted token (FIFO per
insurer, so due order holds) up to its wait limit. When the database cannot be reached it falls back
to its own bucket at the floor rate, logs it, and goes back to the fleet's once a take succeeds.

Reservations may only be made up to `max_wait_s` ahead: `reserve` returns how long the caller must
wait for its token, or None (and takes nothing) when that wait would be longer, so a worker never
sits on a leased order for longer than a fraction of its lease. Time comes from an injected
monotonic clock. `rate_per_s` = 0 means no budget (every reservation is granted at once).
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
import anyio.to_thread

from service.store import StoreUnavailable
from service.store.insurer_state import Grant, InsurerStateStore

log = logging.getLogger("asyncgate.budget")


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

    async def acquire(self, insurer: str, *, max_wait_s: float, stop: anyio.Event | None = None) -> bool:
        """Take a token and wait until it may be used (False, nothing taken, when that is over
        `max_wait_s`); returns early, token taken, when `stop` is set."""
        wait = self.reserve(insurer, max_wait_s=max_wait_s)
        if wait is None:
            return False
        if wait > 0:
            with anyio.move_on_after(wait):
                await (stop or anyio.Event()).wait()
        return True

    def refund(self, insurer: str) -> None:
        """Give back a token that was not used (the call was refused by the insurer's guard)."""
        if self.enabled and insurer in self._buckets:
            bucket = self._bucket(insurer)
            bucket.tokens = min(float(self.burst), bucket.tokens + 1.0)
            self.granted[insurer] = self.granted.get(insurer, 1) - 1

    def figures(self) -> dict[str, BudgetFigure]:
        """Per insurer: the rate and what was used, as this process knows them."""
        return {
            name: BudgetFigure(name, False, self.rate_per_s, self.granted.get(name, 0), self.granted.get(name, 0))
            for name in self._buckets
        }


@dataclass(frozen=True)
class BudgetFigure:
    """The retry budget of one insurer for /metrics and the console."""

    insurer: str
    shared: bool  # the fleet's bucket (else this process's own)
    rate_per_s: float
    granted_total: int  # tokens taken (net) from the fleet's bucket, or this process's when not shared
    used_here: int  # tokens this process used


class _Waiter:
    __slots__ = ("event", "granted")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.granted = False


@dataclass
class _Share:
    """This process's side of one insurer's fleet bucket."""

    tokens: int = 0  # granted to this process, not used yet
    waiters: deque[_Waiter] = field(default_factory=deque)
    next_take: float = 0.0  # monotonic: no take before (the fleet bucket was empty)
    idle_since: float = 0.0
    recent: deque[tuple[float, int]] = field(default_factory=deque)  # (when, tokens granted): the local rate


class SharedRetryBudget(RetryBudget):
    """The fleet's retry budget per insurer: tokens from the order database, rate max(floor, share x
    first-call rate); this process's own RetryBudget at the floor rate while the database is down."""

    def __init__(
        self,
        floor_per_s: float,
        burst: int,
        *,
        share: float,
        first_call_rate: Callable[[str], float],
        period_s: float = 0.5,
        min_interval_s: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(floor_per_s, burst, clock=clock)
        if share < 0:
            raise ValueError(f"retry budget share must be >= 0, got {share}")
        self.share = share
        self._first_call_rate = first_call_rate
        self.period_s = period_s
        self.min_interval_s = min_interval_s
        self._wall = wall
        self._shares: dict[str, _Share] = {}
        self._demand = anyio.Event()
        self.local = False  # the database could not be reached at the last take: own bucket
        self._fleet: dict[str, tuple[float, int]] = {}  # insurer -> (fleet rate, net tokens granted) as last read
        self.used: dict[str, int] = {}

    @property
    def enabled(self) -> bool:
        return self.rate_per_s > 0

    def rate_for(self, insurer: str) -> float:
        """The fleet's rate for `insurer`: max(floor, share x its first calls per second)."""
        return max(self.rate_per_s, self.share * self._first_call_rate(insurer))

    def _share(self, insurer: str) -> _Share:
        share = self._shares.get(insurer)
        if share is None:
            share = self._shares[insurer] = _Share(idle_since=self._clock())
        return share

    async def acquire(self, insurer: str, *, max_wait_s: float, stop: anyio.Event | None = None) -> bool:
        if not self.enabled:
            return True
        if self.local:
            return await super().acquire(insurer, max_wait_s=max_wait_s, stop=stop)
        share = self._share(insurer)
        if share.tokens >= 1 and not share.waiters:
            share.tokens -= 1
            self._used(insurer)
            return True
        waiter = _Waiter()
        share.waiters.append(waiter)
        self._demand.set()
        deadline = self._clock() + max_wait_s
        while not waiter.granted and (stop is None or not stop.is_set()):
            left = deadline - self._clock()
            if left <= 0:
                break
            with anyio.move_on_after(min(left, 0.25)):
                await waiter.event.wait()
        if waiter.granted:
            return True
        try:
            share.waiters.remove(waiter)
        except ValueError:  # pragma: no cover - granted between the check and here cannot happen (one thread)
            return True
        if stop is not None and stop.is_set():
            return True  # the caller sees `stop` and releases the order; nothing to hand back
        return False

    def _used(self, insurer: str) -> None:
        self.used[insurer] = self.used.get(insurer, 0) + 1
        self.granted[insurer] = self.granted.get(insurer, 0) + 1

    def refund(self, insurer: str) -> None:
        if self.local:
            super().refund(insurer)
            return
        share = self._shares.get(insurer)
        if share is None:
            return
        self.used[insurer] = self.used.get(insurer, 1) - 1
        self.granted[insurer] = self.granted.get(insurer, 1) - 1
        self._hand_out(insurer, share, 1)

    def _hand_out(self, insurer: str, share: _Share, tokens: int) -> None:
        share.tokens += tokens
        while share.tokens >= 1 and share.waiters:
            waiter = share.waiters.popleft()
            share.tokens -= 1
            self._used(insurer)
            waiter.granted = True
            waiter.event.set()

    def wait_s(self, insurer: str) -> float:
        if not self.enabled:
            return 0.0
        if self.local:
            return super().wait_s(insurer)
        share = self._share(insurer)
        if share.tokens >= 1:
            return 0.0
        return max(self.min_interval_s, share.next_take - self._clock())

    def local_rate(self, insurer: str) -> float:
        """Tokens per second this process was granted over the last few seconds."""
        share = self._share(insurer)
        horizon = self._clock() - 5.0
        while share.recent and share.recent[0][0] < horizon:
            share.recent.popleft()
        return sum(n for _, n in share.recent) / 5.0

    def exhausted(self, insurers: set[str], *, max_wait_s: float) -> set[str]:
        """Insurers for which enough orders already wait for tokens to use what this process is
        likely to be granted within `max_wait_s` (do not claim more of theirs now)."""
        if not self.enabled:
            return set()
        if self.local:
            return super().exhausted(insurers, max_wait_s=max_wait_s)
        found = set()
        for name in insurers:
            share = self._share(name)
            if share.waiters and len(share.waiters) >= max(1.0, self.local_rate(name) * max_wait_s):
                found.add(name)
        return found

    def known(self) -> set[str]:
        return set(self._shares) | super().known()

    def figures(self) -> dict[str, BudgetFigure]:
        if self.local:
            return super().figures()
        found = {}
        for name in set(self._fleet) | set(self._shares):
            rate, total = self._fleet.get(name, (self.rate_for(name), 0))
            found[name] = BudgetFigure(name, True, rate, total, self.used.get(name, 0))
        return found

    async def run(self, store: InsurerStateStore) -> None:
        """Take tokens for waiting orders, give back idle ones, read the fleet's buckets; until cancelled."""
        last_read = -math.inf
        while True:
            try:
                now = self._clock()
                if now - last_read >= self.period_s:
                    rows = await anyio.to_thread.run_sync(store.budgets)
                    self._fleet = {name: (row.rate_per_s, row.granted) for name, row in rows.items()}
                    last_read = now
                    if self.local:
                        self._back()
                if not self.local:
                    await self._take_all(store)
            except StoreUnavailable as exc:
                if not self.local:
                    self.local = True
                    log.warning(
                        "retry budget: the database is unreachable (%s); this process uses its own bucket of "
                        "%g re-executions/s per insurer until it is back",
                        exc,
                        self.rate_per_s,
                    )
                    for share in self._shares.values():  # orders waiting for fleet tokens try the local bucket
                        share.tokens = 0
            except Exception:  # the sync must never stop the process; the next round tries again
                log.exception("retry budget sync failed")
            await self._pause()

    def _back(self) -> None:
        self.local = False
        log.info("retry budget: the database is reachable again; the fleet's buckets apply")

    async def _pause(self) -> None:
        """Until the next take is due, new demand arrives, or a period passes."""
        if self._demand.is_set():  # an order began waiting during the round: go again at once
            self._demand = anyio.Event()
            await anyio.sleep(0)
            return
        now = self._clock()
        waiting = [max(s.next_take, now + self.min_interval_s) for s in self._shares.values() if s.waiters]
        until = min([now + self.period_s, *waiting])
        with anyio.move_on_after(max(0.0, until - now)):
            await self._demand.wait()

    async def _take_all(self, store: InsurerStateStore) -> None:
        for name, share in list(self._shares.items()):
            now = self._clock()
            want = max(0, len(share.waiters) - share.tokens)
            if share.waiters:
                share.idle_since = now
            give_back = share.tokens if not share.waiters and now - share.idle_since >= self.period_s else 0
            if (want == 0 or now < share.next_take) and give_back == 0:
                continue
            rate = self.rate_for(name)
            share.tokens -= give_back  # before the await: orders arriving meanwhile must not use them
            try:
                grant = await self._take(store, name, want, give_back, rate)
            except BaseException:
                share.tokens += give_back  # not returned after all
                raise
            share.next_take = self._clock() + max(self.min_interval_s, min(grant.wait_s, self.period_s))
            if grant.granted:
                share.recent.append((self._clock(), grant.granted))
            self._fleet[name] = (grant.rate_per_s, grant.granted_total)
            self._hand_out(name, share, grant.granted)

    async def _take(self, store: InsurerStateStore, name: str, want: int, give_back: int, rate: float) -> Grant:
        return await anyio.to_thread.run_sync(
            functools.partial(
                store.take_tokens,
                name,
                want=want,
                give_back=give_back,
                rate_per_s=rate,
                burst=self.burst,
                now=self._wall(),
            )
        )
