"""OrderStore: every read and write of orders, attempts, transitions and rules, one transaction per method.

Together with its helper module `queries`, the only place in asyncgate that issues SQL, always as
SQLAlchemy expressions. Database outages surface as `StoreUnavailable` (the driver's error kept as
`__cause__`). Every time given to or returned by the store is timezone-aware UTC. An order in
ASYNC_PROCESSING is due when its `next_attempt_at` has passed and its lease is free; a lease
(`lease_owner` until `lease_until`) is how a worker, or the API during its synchronous call, holds
an order without holding a transaction.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import exc

from service.events.payload import failure_summary
from service.store import queries
from service.store.errors import (
    InvalidTransition,
    LeaseLost,
    OrderConflict,
    OrderNotFound,
    StoreUnavailable,
)
from service.store.events import EventStore
from service.store.insights import ConsoleReads
from service.store.records import (
    AttemptRecord,
    EventFacts,
    FirstFailure,
    LastOutcome,
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
_LAST_OUTCOME: Final[dict[str, LastOutcome]] = {
    "success": "success",
    "completed": "success",
    "failure": "failure",
    "unknown": "unknown",
}
_UNAVAILABLE = (exc.OperationalError, exc.InterfaceError, exc.TimeoutError)


class OrderStore(RuleStore):
    """The durable order store on one Engine (SQLite or PostgreSQL), safe to share between threads.

    `insights` holds the console's bounded read queries (service/store/insights.py).
    """

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self.insights = ConsoleReads(self._transaction)
        self.events = EventStore(self._transaction, engine.dialect.name)

    @contextmanager
    def _transaction(self) -> Iterator[sa.Connection]:
        try:
            with self._engine.begin() as connection:
                yield connection
        except _UNAVAILABLE as error:
            cause = getattr(error, "orig", None) or error
            reason = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
            raise StoreUnavailable(reason) from error
        except exc.StatementError as error:
            if type(error) is exc.StatementError and isinstance(error.orig, ValueError):
                raise ValueError(str(error.orig)) from error  # e.g. a naive datetime (UTCDateTime)
            raise

    # -- the /process flow ------------------------------------------------------------------------

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
        """Insert the order in ASYNC_PROCESSING, leased to `lease_owner`: (order, True).

        The order falls due when the lease runs out, so a worker takes it over if the caller dies
        during its insurer call. An existing order_id gives (existing order, False) when
        `request_hash` matches and raises OrderConflict otherwise. Concurrent reserves of one
        order_id: exactly one gets True.
        """
        lease_until = now + dt.timedelta(seconds=lease_s)
        try:
            with self._transaction() as conn:
                existing = queries.find_order(conn, order_id)
                if existing is None:
                    values = {
                        "order_id": order_id,
                        "insurer": insurer,
                        "operation": operation,
                        "payload": payload,
                        "request_hash": request_hash,
                        "state": OrderState.ASYNC_PROCESSING.value,
                        "attempts": 0,
                        "next_attempt_at": lease_until,
                        "lease_owner": lease_owner,
                        "lease_until": lease_until,
                        "created_at": now,
                        "updated_at": now,
                    }
                    row = conn.execute(sa.insert(orders).values(values).returning(*orders.c)).mappings().one()
                    queries.insert_transition(
                        conn,
                        row["id"],
                        None,
                        OrderState.ASYNC_PROCESSING,
                        reason="received",
                        actor=lease_owner,
                        now=now,
                        event=EventFacts(order_id, insurer, operation, attempts=0),
                    )
                    return order_from_row(row), True
        except exc.IntegrityError:
            # Lost the race: the other reserve committed first; read what it wrote.
            with self._transaction() as conn:
                existing = queries.find_order(conn, order_id)
            if existing is None:
                raise
        if existing.request_hash != request_hash:
            raise OrderConflict(order_id)
        return existing, False

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
    ) -> OrderRecord:
        """Write the attempt, move the order to `new_state`, release the lease: all or nothing.

        Raises LeaseLost, writing nothing, if `lease_owner` no longer holds the order. `attempts`
        grows by one when `count_call`; a failure (or unknown outcome) sets `category` and, the
        first time, `first_failure_at`; `result` is stored when given. A transition row is added
        when the state changes. Returns the order with its attempt log.
        """
        new_state = OrderState(new_state)
        if new_state is OrderState.ASYNC_PROCESSING and next_attempt_at is None:
            raise ValueError("an order kept in ASYNC_PROCESSING needs a next_attempt_at")
        with self._transaction() as conn:
            current = conn.execute(
                sa.select(
                    orders.c.state,
                    orders.c.first_failure_at,
                    orders.c.last_outcome,
                    orders.c.attempts,
                    *(orders.c.order_id, orders.c.insurer, orders.c.operation, orders.c.category),  # the event's
                )
                .where(orders.c.id == order_pk, orders.c.lease_owner == lease_owner)
                .with_for_update()
            ).one_or_none()
            if current is None:
                raise LeaseLost(order_pk, lease_owner)
            values: dict[str, Any] = {
                "state": new_state.value,
                "next_attempt_at": next_attempt_at,
                "lease_owner": None,
                "lease_until": None,
                "updated_at": now,
            }
            if count_call:
                values["attempts"] = orders.c.attempts + 1
            if attempt.outcome in _LAST_OUTCOME:
                values["last_outcome"] = _LAST_OUTCOME[attempt.outcome]
            elif attempt.kind == "skip" and current.last_outcome is None and current.attempts == 0:
                values["last_outcome"] = "not_sent"  # skipped before any call: never sent, no query needed
            if attempt.outcome in ("failure", "unknown"):
                if attempt.category is not None:
                    values["category"] = attempt.category
                if current.first_failure_at is None:
                    values["first_failure_at"] = now
            if result is not None:
                values["result"] = result
            conn.execute(sa.update(orders).where(orders.c.id == order_pk).values(values))
            queries.insert_attempt(conn, order_pk, attempt, actor=actor, now=now)
            if new_state != current.state:
                failed = attempt.outcome in ("failure", "unknown")
                event = EventFacts(
                    current.order_id,
                    current.insurer,
                    current.operation,
                    attempts=current.attempts + (1 if count_call else 0),
                    result=result,
                    failure=failure_summary(
                        error_code=attempt.error_code if failed else None,
                        error_message=attempt.error_message if failed else None,
                        http_status=attempt.http_status if failed else None,
                        category=attempt.category if failed and attempt.category else current.category,
                    ),
                )
                queries.insert_transition(
                    conn,
                    order_pk,
                    OrderState(current.state),
                    new_state,
                    reason=reason,
                    actor=actor,
                    now=now,
                    event=event,
                )
            return queries.load_order(conn, order_pk)

    def record_query(
        self, order_pk: int, attempt: NewAttempt, *, lease_owner: str, actor: str, now: dt.datetime
    ) -> AttemptRecord:
        """Write a query attempt, keeping the lease; LeaseLost, writing nothing, if the lease is not held."""
        if attempt.kind != "query":
            raise ValueError(f"record_query takes attempts of kind 'query', not {attempt.kind!r}")
        with self._transaction() as conn:
            held = conn.execute(
                sa.select(orders.c.id)
                .where(orders.c.id == order_pk, orders.c.lease_owner == lease_owner)
                .with_for_update()
            ).one_or_none()
            if held is None:
                raise LeaseLost(order_pk, lease_owner)
            return queries.insert_attempt(conn, order_pk, attempt, actor=actor, now=now)

    # -- the worker ---------------------------------------------------------------------------------

    def claim_due(
        self,
        worker_id: str,
        *,
        batch: int,
        lease_s: float,
        now: dt.datetime,
        exclude_insurers: Collection[str] = (),
    ) -> list[OrderRecord]:
        """Lease up to `batch` due ASYNC_PROCESSING orders to `worker_id` until now+lease_s, oldest due first.

        Due: next_attempt_at <= now and no lease, or an expired one (lease_until < now). Concurrent
        claimers never get the same order. `attempts` is not changed here (it counts calls). Orders
        of `exclude_insurers` are not claimed.
        """
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        statement = queries.claim_statement(
            worker_id,
            batch=batch,
            lease_until=now + dt.timedelta(seconds=lease_s),
            now=now,
            exclude_insurers=exclude_insurers,
        )
        with self._transaction() as conn:
            rows = conn.execute(statement).mappings().all()
        claimed = [order_from_row(row) for row in rows]
        return sorted(claimed, key=lambda order: (order.next_attempt_at or now, order.pk))

    def release(self, order_pk: int, lease_owner: str, *, next_attempt_at: dt.datetime | None = None) -> bool:
        """Drop `lease_owner`'s lease (state unchanged), optionally rescheduling; False if not held."""
        values: dict[str, Any] = {"lease_owner": None, "lease_until": None}
        if next_attempt_at is not None:
            values["next_attempt_at"] = next_attempt_at
        with self._transaction() as conn:
            done = conn.execute(
                sa.update(orders).where(orders.c.id == order_pk, orders.c.lease_owner == lease_owner).values(values)
            )
            return done.rowcount == 1

    def extend_lease(self, order_pk: int, lease_owner: str, *, lease_s: float, now: dt.datetime) -> bool:
        """Keep holding the order until now+lease_s; False if `lease_owner` no longer holds it."""
        with self._transaction() as conn:
            done = conn.execute(
                sa.update(orders)
                .where(orders.c.id == order_pk, orders.c.lease_owner == lease_owner)
                .values(lease_until=now + dt.timedelta(seconds=lease_s))
            )
            return done.rowcount == 1

    # -- reading and operating --------------------------------------------------------------------

    def get(self, order_id: str, *, with_attempts: bool = True) -> OrderRecord | None:
        """The order with this order_id (and its attempts, oldest first), or None."""
        with self._transaction() as conn:
            order = queries.find_order(conn, order_id)
            if order is None or not with_attempts:
                return order
            log = queries.attempt_logs(conn, [order.pk])
        return dataclasses.replace(order, attempt_log=log.get(order.pk, ()))

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
