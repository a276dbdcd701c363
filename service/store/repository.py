"""OrderStore: every read and write of orders, attempts, transitions and rules, one transaction per method.

The durable path's steps (reserve, record an attempt or a query, claim, release) are defined once
in `steps` and run synchronously (`run`, the methods below) or from async code without blocking the
event loop (`run_async`: on PostgreSQL through the async driver, no thread).

Together with its helper modules `steps` and `queries`, the only place in asyncgate that issues SQL, always as
SQLAlchemy expressions. Database outages surface as `StoreUnavailable` (the driver's error kept as
`__cause__`). Every time given to or returned by the store is timezone-aware UTC. An order in
ASYNC_PROCESSING is due when its `next_attempt_at` has passed and its lease is free; a lease
(`lease_owner` until `lease_until`) is how a worker, or the API during its synchronous call, holds
an order without holding a transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from typing import Any, Concatenate, Final, ParamSpec, TypeVar, cast

import anyio
import anyio.to_thread
import asyncpg
import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncEngine

from service.store import queries, steps
from service.store.errors import (
    InvalidTransition,
    OrderNotFound,
    StoreUnavailable,
)
from service.store.events import EventStore
from service.store.fastpath import FastSteps
from service.store.insights import ConsoleReads
from service.store.records import (
    AttemptRecord,
    EventFacts,
    FirstFailure,
    NewAttempt,
    OrderRecord,
    TransitionRecord,
    decode_cursor,
    encode_cursor,
    order_from_row,
    transition_from_row,
)
from service.store.rules import RuleStore
from service.store.tables import OrderState, orders, transitions

MAX_LIST_LIMIT: Final = 1000
REQUEUABLE: Final = frozenset({OrderState.FAILED, OrderState.DEAD})
#: Blocking store calls from async code (SQLite; PostgreSQL without an async engine) run in threads,
#: at most this many at once. Each is mostly Python holding the GIL: more threads only queue on the
#: GIL and starve the event loop (measured on 2 cores, /process at 32 connections on PostgreSQL:
#: 96-133 req/s and p99 0.38 s with 4 threads; 83-94 req/s and p99 0.8-1.0 s with anyio's default 40).
STORE_THREADS: Final = 4
P = ParamSpec("P")
T = TypeVar("T")
_UNAVAILABLE = (exc.OperationalError, exc.InterfaceError, exc.TimeoutError)
#: What asyncpg raises when the server cannot be reached or went away (FastSteps).
_FAST_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
)
_NOT_FAST: Final = object()


def _unavailable(error: Exception) -> StoreUnavailable:
    cause = getattr(error, "orig", None) or error
    reason = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    return StoreUnavailable(reason)


class OrderStore:
    """The durable order store on one Engine (SQLite or PostgreSQL), safe to share between threads.

    `insights` holds the console's bounded read queries (service/store/insights.py), `rules` the rules'
    reads and writes (service/store/rules.py), `events` the outbox and its deliveries (service/store/events.py).
    """

    def __init__(
        self, engine: sa.Engine, async_engine: AsyncEngine | None = None, fast: FastSteps | None = None
    ) -> None:
        self._engine = engine
        self._async_engine = async_engine
        self._fast = fast  # PostgreSQL: the per-order statements straight through asyncpg (fastpath.py)
        self._autocommit = async_engine.execution_options(isolation_level="AUTOCOMMIT") if async_engine else None
        self._slots = anyio.CapacityLimiter(STORE_THREADS)
        self.insights = ConsoleReads(self._transaction)
        self.rules = RuleStore(self._transaction)
        self.events = EventStore(self._transaction, engine.dialect.name)

    @contextmanager
    def _transaction(self) -> Iterator[sa.Connection]:
        try:
            with self._engine.begin() as connection:
                yield connection
        except _UNAVAILABLE as error:
            raise _unavailable(error) from error
        except exc.StatementError as error:
            if type(error) is exc.StatementError and isinstance(error.orig, ValueError):
                raise ValueError(str(error.orig)) from error  # e.g. a naive datetime (UTCDateTime)
            raise

    # -- running a step ------------------------------------------------------------------------

    def run(self, body: Callable[Concatenate[sa.Connection, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `body(connection, *args, **kwargs)` as one transaction (a step of service/store/steps.py)."""
        with self._transaction() as conn:
            return body(conn, *args, **kwargs)

    async def run_async(self, body: Callable[Concatenate[sa.Connection, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`run` without blocking the event loop: on the async engine when there is one (PostgreSQL's
        async driver; the body's statements are awaited through SQLAlchemy's greenlet bridge, no
        thread), otherwise in a worker thread, at most STORE_THREADS at once."""
        if self._fast is not None:
            try:
                done = await self._run_fast(body, args, kwargs)
            except _FAST_UNAVAILABLE as error:
                raise StoreUnavailable(f"{type(error).__name__}: {error}".rstrip(": ")) from error
            if done is not _NOT_FAST:
                return cast(T, done)
        if self._async_engine is None:
            return await anyio.to_thread.run_sync(lambda: self.run(body, *args, **kwargs), limiter=self._slots)
        try:
            if body in steps.ONE_STATEMENT and self._autocommit is not None:  # atomic: no BEGIN/COMMIT
                async with self._autocommit.connect() as connection:
                    return await connection.run_sync(lambda conn: body(conn, *args, **kwargs))
            async with self._async_engine.begin() as connection:
                return await connection.run_sync(lambda conn: body(conn, *args, **kwargs))
        except _UNAVAILABLE as error:
            raise _unavailable(error) from error

    async def _run_fast(self, body: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The step through FastSteps when it has it, else _NOT_FAST (also for a reserve of a taken order_id,
        which the engines then run: their insert finds it taken and reads the stored order)."""
        assert self._fast is not None
        if body is steps.reserve:
            order = await self._fast.reserve(*args, **kwargs)
            return _NOT_FAST if order is None else (order, True)
        if body is steps.record_attempt and kwargs.get("full_log") is False and kwargs.get("held") is not None:
            return await self._fast.record_attempt(*args, **{k: v for k, v in kwargs.items() if k != "full_log"})
        if body is steps.record_query:
            return await self._fast.record_query(*args, **kwargs)
        return _NOT_FAST

    # -- the /process flow and the worker (one definition each: service/store/steps.py) -------

    def reserve(
        self,
        order_id: str,
        insurer: str,
        operation: str,
        payload: dict[str, Any],
        request_hash: str,
        *,
        lease_owner: str,
        lease_s: float,
        now: dt.datetime,
    ) -> tuple[OrderRecord, bool]:
        """steps.reserve: the order in ASYNC_PROCESSING, leased; (existing, False) for a replay."""
        return self.run(
            steps.reserve,
            order_id,
            insurer,
            operation,
            payload,
            request_hash,
            lease_owner=lease_owner,
            lease_s=lease_s,
            now=now,
        )

    def record_attempt(
        self,
        order_pk: int,
        attempt: NewAttempt,
        *,
        new_state: OrderState,
        next_attempt_at: dt.datetime | None,
        lease_owner: str,
        reason: str,
        actor: str,
        result: Any = None,
        now: dt.datetime,
        count_call: bool,
        full_log: bool = True,
        held: OrderRecord | None = None,
    ) -> OrderRecord:
        """steps.record_attempt: the attempt, the move (with its event) and the lease's release, all or nothing."""
        return self.run(
            steps.record_attempt,
            order_pk,
            attempt,
            new_state=new_state,
            next_attempt_at=next_attempt_at,
            lease_owner=lease_owner,
            reason=reason,
            actor=actor,
            result=result,
            now=now,
            count_call=count_call,
            full_log=full_log,
            held=held,
        )

    def record_query(
        self, order_pk: int, attempt: NewAttempt, *, lease_owner: str, actor: str, now: dt.datetime
    ) -> AttemptRecord:
        """steps.record_query: a query attempt, the lease kept."""
        return self.run(steps.record_query, order_pk, attempt, lease_owner=lease_owner, actor=actor, now=now)

    def claim_due(
        self,
        worker_id: str,
        *,
        batch: int,
        lease_s: float,
        now: dt.datetime,
        exclude_insurers: Collection[str] = (),
    ) -> list[OrderRecord]:
        """steps.claim_due: lease up to `batch` due orders to `worker_id`, oldest due first."""
        return self.run(
            steps.claim_due, worker_id, batch=batch, lease_s=lease_s, now=now, exclude_insurers=exclude_insurers
        )

    def release(self, order_pk: int, lease_owner: str, *, next_attempt_at: dt.datetime | None = None) -> bool:
        """steps.release: drop `lease_owner`'s lease (state unchanged); False if not held."""
        return self.run(steps.release, order_pk, lease_owner, next_attempt_at=next_attempt_at)

    def extend_lease(self, order_pk: int, lease_owner: str, *, lease_s: float, now: dt.datetime) -> bool:
        """steps.extend_lease: keep holding the order until now+lease_s; False if not held."""
        return self.run(steps.extend_lease, order_pk, lease_owner, lease_s=lease_s, now=now)

    # -- reading and operating --------------------------------------------------------------------

    def get(self, order_id: str, *, with_attempts: bool = True) -> OrderRecord | None:
        """The order with this order_id (and its attempts, oldest first), or None."""
        return self.run(steps.get, order_id, with_attempts=with_attempts)

    def list_orders(
        self,
        *,
        state: OrderState | None = None,
        insurer: str | None = None,
        operation: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[OrderRecord], str | None]:
        """A page of orders, newest first by (created_at, id), with attempts; and the next page's cursor.

        The cursor is opaque (url-safe); pass back a `next_cursor` as received. None means no more.
        """
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIST_LIMIT}, got {limit}")
        query = sa.select(orders).order_by(orders.c.created_at.desc(), orders.c.id.desc()).limit(limit + 1)
        if state is not None:
            query = query.where(orders.c.state == OrderState(state).value)
        if insurer is not None:
            query = query.where(orders.c.insurer == insurer)
        if operation is not None:
            query = query.where(orders.c.operation == operation)
        if cursor is not None:
            created_at, pk = decode_cursor(cursor)
            query = query.where(
                sa.or_(
                    orders.c.created_at < created_at,
                    sa.and_(orders.c.created_at == created_at, orders.c.id < pk),
                )
            )
        with self._transaction() as conn:
            rows = conn.execute(query).mappings().all()
            page = rows[:limit]
            logs = queries.attempt_logs(conn, [row["id"] for row in page])
        found = [order_from_row(row, logs.get(row["id"], ())) for row in page]
        next_cursor = encode_cursor((found[-1].created_at, found[-1].pk)) if len(rows) > limit else None
        return found, next_cursor

    def requeue(self, order_id: str, *, actor: str, now: dt.datetime) -> OrderRecord:
        """FAILED or DEAD → ASYNC_PROCESSING, due now, with a fresh retry budget (attempts 0);
        OrderNotFound / InvalidTransition otherwise."""
        with self._transaction() as conn:
            row = conn.execute(
                sa.select(orders.c.id, orders.c.state, orders.c.insurer, orders.c.operation)
                .where(orders.c.order_id == order_id)
                .with_for_update()
            ).one_or_none()
            if row is None:
                raise OrderNotFound(order_id)
            if OrderState(row.state) not in REQUEUABLE:
                raise InvalidTransition(order_id, row.state, OrderState.ASYNC_PROCESSING.value)
            conn.execute(
                sa.update(orders)
                .where(orders.c.id == row.id)
                .values(
                    state=OrderState.ASYNC_PROCESSING.value,
                    next_attempt_at=now,
                    lease_owner=None,
                    lease_until=None,
                    updated_at=now,
                    # a fresh retry budget: the operator asked for it; the attempt log keeps the history
                    attempts=0,
                    first_failure_at=None,
                )
            )
            queries.insert_transition(
                conn,
                row.id,
                OrderState(row.state),
                OrderState.ASYNC_PROCESSING,
                reason="requeued",
                actor=actor,
                now=now,
                event=EventFacts(order_id, row.insurer, row.operation, attempts=0),
            )
            return queries.load_order(conn, row.id)

    def transitions(self, order_id: str) -> list[TransitionRecord]:
        """Every state change of the order, oldest first; OrderNotFound if there is no such order."""
        with self._transaction() as conn:
            pk = conn.execute(sa.select(orders.c.id).where(orders.c.order_id == order_id)).scalar_one_or_none()
            if pk is None:
                raise OrderNotFound(order_id)
            rows = conn.execute(
                sa.select(transitions).where(transitions.c.order_pk == pk).order_by(transitions.c.at, transitions.c.id)
            ).mappings()
            return [transition_from_row(row) for row in rows]

    def counts_by_state(self) -> dict[str, int]:
        """Number of orders in each state; every state is present, zero when empty."""
        with self._transaction() as conn:
            rows = conn.execute(sa.select(orders.c.state, sa.func.count()).group_by(orders.c.state)).all()
            counts = {state.value: 0 for state in OrderState}
            counts.update((state, number) for state, number in rows)
            return counts

    def first_failures(
        self, *, since: dt.datetime | None = None, after_pk: int = 0, limit: int = 500
    ) -> list[FirstFailure]:
        """Up to `limit` orders with pk > `after_pk` (by pk) whose first failed or unknown call was at
        or after `since`: that call, the order's state, and how many calls and attempts followed it.
        Page through all of them by passing the last `order_pk` back as `after_pk`."""
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIST_LIMIT}, got {limit}")
        statement = queries.first_failures_statement(since=since, after_pk=after_pk, limit=limit)
        with self._transaction() as conn:
            return [queries.first_failure_from_row(row) for row in conn.execute(statement).mappings()]

    def ping(self) -> None:
        """SELECT 1; raises StoreUnavailable when the database cannot be reached."""
        with self._transaction() as conn:
            conn.execute(sa.select(1)).one()
