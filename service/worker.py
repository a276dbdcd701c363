"""The re-execution worker (docs/contract.md §4): claim due ASYNC_PROCESSING orders under a lease,
re-execute them concurrently, and move each on through OrderProcessor.reexecute.

Shutdown (SIGTERM/SIGINT sets `stop`): no new claims; orders already running finish (each is
bounded by its insurer's timeout); orders claimed but not started are released at once, so another
worker can take them without waiting for the lease. A worker that is killed outright loses nothing:
its leases expire and other workers take the orders over.

Protecting insurers: orders of an insurer whose circuit breaker is open are not claimed (and a
claimed one whose circuit opens meanwhile is put back untouched), and each re-execution takes a
token of the insurer's retry budget (service/budget.py) first, in claim order, which is due order:
the runtime's budget is the fleet's (one bucket per insurer in the order database, shared by every
worker), and an order waits up to `max_budget_wait_s` for its token, then goes back untouched. An
insurer whose budget is spent for longer than that is left out of the next claims, so its backlog
stays in the table, in due order, instead of in this worker's memory. A token taken for an order
whose call the insurer's guard then refuses is handed back.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import uuid
from dataclasses import dataclass, field

import anyio

from service.budget import RetryBudget
from service.health import InsurerHealth
from service.metrics import Metrics
from service.processing import CircuitOpen, OrderProcessor, utcnow
from service.store import LeaseLost, OrderRecord, OrderStore, StoreUnavailable, steps

log = logging.getLogger("asyncgate.worker")


def new_worker_id() -> str:
    return f"worker:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class WorkerStats:
    claimed: int = 0
    finished: int = 0
    released: int = 0
    errors: int = 0
    deferred: int = 0  # put back untouched: circuit open or retry budget spent
    by_state: dict[str, int] = field(default_factory=dict)


class Worker:
    def __init__(
        self,
        processor: OrderProcessor,
        store: OrderStore,
        *,
        health: InsurerHealth,
        metrics: Metrics,
        worker_id: str | None = None,
        batch: int = 100,
        concurrency: int = 16,
        lease_s: float = 60.0,
        poll_s: float = 1.0,
        budget: RetryBudget | None = None,
    ):
        self.processor = processor
        self.store = store
        self.health = health  # the runtime's, shared with the processor: open circuits are not claimed
        self.metrics = metrics
        self.worker_id = worker_id or new_worker_id()
        self.batch = batch
        self.concurrency = concurrency
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.budget = budget or RetryBudget(0.0, 1)
        #: the longest a claimed order may wait for its budget token: well inside its lease
        self.max_budget_wait_s = lease_s / 4
        self.stats = WorkerStats()
        self._seen: set[int] = set()  # with --once: the orders this run has handled

    def _excluded(self) -> set[str]:
        """Insurers not to claim for now: circuit open, or retry budget spent for longer than a wait."""
        blocked = self.health.blocked()
        return blocked | self.budget.exhausted(self.budget.known() - blocked, max_wait_s=self.max_budget_wait_s)

    async def run(self, *, once: bool = False, stop: anyio.Event | None = None) -> WorkerStats:
        """Work until `stop` is set; with `once`, until nothing is due (each order at most once)."""
        stop = stop or anyio.Event()
        self._seen.clear()
        seen = self._seen
        limiter = anyio.Semaphore(self.concurrency)
        log.info("worker %s started", self.worker_id, extra={"worker": self.worker_id, "once": once})
        while not stop.is_set():
            excluded = self._excluded()
            try:
                claimed = await self._claim(excluded)
            except StoreUnavailable as exc:
                log.warning("claim failed, database unavailable: %s", exc, extra={"worker": self.worker_id})
                if once:
                    raise
                await self._pause(stop)
                continue
            fresh = claimed
            if once:  # an order due again within this run is left for the next run
                fresh = [o for o in claimed if o.pk not in seen]
                for order in claimed:
                    if order.pk in seen:
                        await self._release(order)
                seen.update(o.pk for o in fresh)
            if not fresh:
                budget_waits = [self.budget.wait_s(name) for name in excluded - self.health.blocked()]
                if once and not budget_waits:
                    break  # with --once, orders held back by an open circuit stay for the next run
                await self._pause(stop, min(budget_waits, default=self.poll_s))
                continue
            self.stats.claimed += len(fresh)
            async with anyio.create_task_group() as group:
                for order in fresh:
                    group.start_soon(self._handle, order, limiter, stop)
        log.info(
            "worker %s stopped",
            self.worker_id,
            extra={
                "worker": self.worker_id,
                "claimed": self.stats.claimed,
                "finished": self.stats.finished,
                "released": self.stats.released,
                "errors": self.stats.errors,
            },
        )
        return self.stats

    async def _claim(self, excluded: set[str]) -> list[OrderRecord]:
        return await self.store.run_async(
            steps.claim_due,
            self.worker_id,
            batch=self.batch,
            lease_s=self.lease_s,
            now=utcnow(),
            exclude_insurers=excluded,
        )

    async def _pause(self, stop: anyio.Event, seconds: float | None = None) -> None:
        with anyio.move_on_after(self.poll_s if seconds is None else max(0.01, min(seconds, self.poll_s))):
            await stop.wait()

    async def _defer(self, order: OrderRecord, *, requeue: bool = False) -> None:
        """Put the order back untouched, still due: with its due time (the budget's deferral, so the
        backlog drains in due order), or with `requeue` due now, behind the orders that came due
        meanwhile (the throttle's refusal: the next draws go to other orders, among them the ones
        just retried, so the probes of a degraded insurer reach orders it will accept)."""
        self._seen.discard(order.pk)
        await self._release(order, deferred=True, due=utcnow() if requeue else None)

    async def _release(self, order: OrderRecord, *, deferred: bool = False, due: dt.datetime | None = None) -> None:
        try:
            await self.store.run_async(steps.release, order.pk, self.worker_id, next_attempt_at=due)
            if deferred:
                self.stats.deferred += 1
            else:
                self.stats.released += 1
        except StoreUnavailable as exc:
            log.warning("release failed (the lease will expire): %s", exc, extra={"order_id": order.order_id})

    async def _handle(self, order: OrderRecord, limiter: anyio.Semaphore, stop: anyio.Event) -> None:
        # the token is taken once a slot is held (both queues are FIFO, so tokens still go out in claim
        # order, which is due order) and used at once: a token never waits behind the limiter, so
        # the insurer sees the calls at the budget's pace, not in bursts of tokens queued up meanwhile
        async with limiter:
            if not await self.budget.acquire(order.insurer, max_wait_s=self.max_budget_wait_s, stop=stop):
                self.metrics.budget_deferred.labels(insurer=order.insurer).inc()
                await self._defer(order)
                return
            if stop.is_set():
                await self._release(order)
                return
            context = {"order_id": order.order_id, "insurer": order.insurer, "worker": self.worker_id}
            try:
                done = await self.processor.reexecute(order, actor=self.worker_id)
            except CircuitOpen:
                self.budget.refund(order.insurer)  # no call was made: the token goes to the next order
                await self._defer(order, requeue=True)
                return
            except LeaseLost:
                log.warning("lease lost; another worker owns the order now", extra=context)
                self.stats.errors += 1
                return
            except StoreUnavailable as exc:
                log.warning("database unavailable; the order comes back after its lease: %s", exc, extra=context)
                self.stats.errors += 1
                return
            except Exception:  # one broken order must not stop the others; it comes back after its lease
                log.exception("re-execution failed unexpectedly", extra=context)
                self.stats.errors += 1
                return
            self.stats.finished += 1
            self.stats.by_state[done.state.value] = self.stats.by_state.get(done.state.value, 0) + 1
            self.metrics.reexecutions.labels(state=done.state.value).inc()
