"""Statements and in-transaction helpers for OrderStore; each helper runs on the caller's connection.

Private to the store: `repository.OrderStore` owns the transactions, this module builds the SQL
(SQLAlchemy expressions only) and maps rows to records.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa

from service.store.records import (
    AttemptRecord,
    NewAttempt,
    OrderRecord,
    attempt_from_row,
    order_from_row,
)
from service.store.tables import OrderState, attempts, orders, transitions


def claim_statement(worker_id: str, *, batch: int, lease_until: dt.datetime, now: dt.datetime) -> sa.Update:
    """The claim: lease up to `batch` due orders (oldest due first) to `worker_id`, returning them.

    A materialized CTE with FOR UPDATE SKIP LOCKED on PostgreSQL, so concurrent claimers skip each
    other's rows and the LIMIT is applied once (on SQLite, BEGIN IMMEDIATE serialises claimers and
    the locking clause is not rendered). The state is rendered as a literal so that PostgreSQL can
    match the partial index `ix_orders_due` even with a cached generic plan.
    """
    due = (
        sa.select(orders.c.id)
        .where(
            orders.c.state == sa.literal(OrderState.ASYNC_PROCESSING.value, literal_execute=True),
            orders.c.next_attempt_at <= now,
            sa.or_(orders.c.lease_until.is_(None), orders.c.lease_until < now),
        )
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


def insert_attempt(
    conn: sa.Connection, order_pk: int, attempt: NewAttempt, *, actor: str, now: dt.datetime
) -> AttemptRecord:
    """Add one attempt row to the order."""
    values = dataclasses.asdict(attempt) | {"order_pk": order_pk, "at": now, "actor": actor}
    row = conn.execute(sa.insert(attempts).values(values).returning(*attempts.c)).mappings().one()
    return attempt_from_row(row)


def insert_transition(
    conn: sa.Connection,
    order_pk: int,
    from_state: OrderState | None,
    to_state: OrderState,
    *,
    reason: str,
    actor: str,
    now: dt.datetime,
) -> None:
    """Record a state change (from_state None: the order's creation)."""
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
