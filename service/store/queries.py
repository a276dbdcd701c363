"""Statements and in-transaction helpers for OrderStore; each helper runs on the caller's connection.

Private to the store: `repository.OrderStore` owns the transactions, this module builds the SQL
(SQLAlchemy expressions only) and maps rows to records.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from service.events.payload import encode_document, event_document, new_event_id
from service.store.events import insert_event
from service.store.records import (
    AttemptRecord,
    EventFacts,
    FirstFailure,
    OrderRecord,
    attempt_from_row,
    order_from_row,
)
from service.store.tables import OrderState, attempts, orders, transitions


def claim_statement(
    worker_id: str,
    *,
    batch: int,
    lease_until: dt.datetime,
    now: dt.datetime,
    exclude_insurers: Collection[str] = (),
) -> sa.Update:
    """The claim: lease up to `batch` due orders (oldest due first) to `worker_id`, returning them;
    orders of `exclude_insurers` (circuit open, retry budget spent) are left where they are.

    A materialized CTE with FOR UPDATE SKIP LOCKED on PostgreSQL, so concurrent claimers skip each
    other's rows and the LIMIT is applied once (on SQLite, BEGIN IMMEDIATE serialises claimers and
    the locking clause is not rendered). The state is rendered as a literal so that PostgreSQL can
    match the partial index `ix_orders_due` even with a cached generic plan.
    """
    conditions = [
        orders.c.state == sa.literal(OrderState.ASYNC_PROCESSING.value, literal_execute=True),
        orders.c.next_attempt_at <= now,
        sa.or_(orders.c.lease_until.is_(None), orders.c.lease_until < now),
    ]
    if exclude_insurers:
        conditions.append(orders.c.insurer.not_in(sorted(exclude_insurers)))
    due = (
        sa.select(orders.c.id)
        .where(*conditions)
        .order_by(orders.c.next_attempt_at)
        .limit(batch)
        .with_for_update(skip_locked=True)
        .cte("due")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    return (
        sa.update(orders)
        .where(orders.c.id.in_(sa.select(due.c.id)))
        .values(lease_owner=worker_id, lease_until=lease_until)
        .returning(*orders.c)
    )


def first_failures_statement(*, since: dt.datetime | None, after_pk: int, limit: int) -> sa.Select[Any]:
    """Orders (pk > after_pk, by pk) with their first failed or unknown call at or after `since`,
    the attempt's columns and the number of calls and attempts made after it."""
    failed_calls = sa.and_(attempts.c.kind == "call", attempts.c.outcome.in_(("failure", "unknown")))
    first = (
        sa.select(attempts.c.order_pk, sa.func.min(attempts.c.id).label("attempt_id"))
        .where(failed_calls, attempts.c.order_pk > after_pk)
        .group_by(attempts.c.order_pk)
        .subquery("first_failure")
    )
    later = attempts.alias("later")
    after_first = sa.and_(later.c.order_pk == first.c.order_pk, later.c.id > first.c.attempt_id)
    later_calls = sa.select(sa.func.count()).where(after_first, later.c.kind == "call").scalar_subquery()
    later_attempts = sa.select(sa.func.count()).where(after_first).scalar_subquery()
    statement = (
        sa.select(
            *attempts.c,
            orders.c.order_id,
            orders.c.insurer,
            orders.c.operation,
            orders.c.state.label("order_state"),
            orders.c.created_at,
            orders.c.updated_at,
            later_calls.label("later_calls"),
            later_attempts.label("later_attempts"),
        )
        .select_from(
            first.join(attempts, attempts.c.id == first.c.attempt_id).join(orders, orders.c.id == first.c.order_pk)
        )
        .order_by(first.c.order_pk)
        .limit(limit)
    )
    if since is not None:
        statement = statement.where(attempts.c.at >= since)
    return statement


def first_failure_from_row(row: RowMapping) -> FirstFailure:
    return FirstFailure(
        order_pk=row["order_pk"],
        order_id=row["order_id"],
        insurer=row["insurer"],
        operation=row["operation"],
        state=OrderState(row["order_state"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        attempt=attempt_from_row(row),
        later_calls=int(row["later_calls"]),
        later_attempts=int(row["later_attempts"]),
    )


def find_order(conn: sa.Connection, order_id: str) -> OrderRecord | None:
    """The order with this order_id, without attempts, or None."""
    row = conn.execute(sa.select(orders).where(orders.c.order_id == order_id)).mappings().first()
    return None if row is None else order_from_row(row)


def load_order(conn: sa.Connection, order_pk: int) -> OrderRecord:
    """The order with this primary key, with its attempt log."""
    row = conn.execute(sa.select(orders).where(orders.c.id == order_pk)).mappings().one()
    return order_from_row(row, attempt_logs(conn, [order_pk]).get(order_pk, ()))


def attempt_logs(conn: sa.Connection, order_pks: Sequence[int]) -> dict[int, tuple[AttemptRecord, ...]]:
    """The attempts of these orders, oldest first, in one query; orders without attempts are absent."""
    if not order_pks:
        return {}
    rows = conn.execute(
        sa.select(attempts)
        .where(attempts.c.order_pk.in_(order_pks))
        .order_by(attempts.c.order_pk, attempts.c.at, attempts.c.id)
    ).mappings()
    logs: dict[int, list[AttemptRecord]] = {}
    for row in rows:
        logs.setdefault(row["order_pk"], []).append(attempt_from_row(row))
    return {pk: tuple(log) for pk, log in logs.items()}


def insert_transition(
    conn: sa.Connection,
    order_pk: int,
    from_state: OrderState | None,
    to_state: OrderState,
    *,
    reason: str,
    actor: str,
    now: dt.datetime,
    event: EventFacts,
) -> None:
    """Record a state change (from_state None: the order's creation) and its event (docs/contract.md §8),
    on the same connection, so the event commits, or not, with the transition (the outbox)."""
    conn.execute(
        sa.insert(transitions).values(
            order_pk=order_pk,
            at=now,
            from_state=None if from_state is None else from_state.value,
            to_state=to_state.value,
            reason=reason,
            actor=actor,
        )
    )
    event_id = new_event_id(now)
    document = event_document(
        event_id=event_id,
        order_id=event.order_id,
        insurer=event.insurer,
        operation=event.operation,
        from_state=None if from_state is None else from_state.value,
        to_state=to_state.value,
        attempts=event.attempts,
        result=event.result,
        failure=event.failure,
        at=now,
    )
    insert_event(
        conn,
        event_id=event_id,
        order_pk=order_pk,
        order_id=event.order_id,
        to_state=to_state.value,
        body=encode_document(document),
        now=now,
    )
