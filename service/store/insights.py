"""Bounded read-only queries for the operations console: `OrderStore.insights` (SQLAlchemy expressions only).

Every query here is bounded so that a console page stays fast with millions of orders: order
searches are keyset-paginated on an index (`ix_orders_created`, `ix_orders_state_created`,
`ix_orders_insurer_created`, or the unique order_id index for a prefix search); aggregates read one
time window through an index on `created_at` or `updated_at`; samples carry a LIMIT. An order
"went async" when its synchronous call failed and it was kept for re-execution: it has a first
failure and is not a FAILED order that made at most one call (a final verdict at the first call).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa

from service.store.records import OrderRecord, decode_cursor, encode_cursor, order_from_row
from service.store.tables import OrderState, attempts, orders

MAX_PAGE: Final = 500
MAX_SAMPLE_ORDERS: Final = 20_000
MAX_WINDOW: Final = dt.timedelta(days=31)
_FAILING: Final = ("failure", "unknown")

#: The order was kept for re-execution after a failed call (see the module docstring).
WENT_ASYNC: Final = sa.and_(
    orders.c.first_failure_at.is_not(None),
    sa.not_(sa.and_(orders.c.state == OrderState.FAILED.value, orders.c.attempts <= 1)),
)


@dataclass(frozen=True, slots=True)
class ActivityBucket:
    """Orders received in one UTC hour from one insurer, and how many of them went async."""

    hour: dt.datetime
    insurer: str
    received: int
    went_async: int


@dataclass(frozen=True, slots=True)
class FailureObservation:
    """One failed (or unknown-outcome) call in the window, with the model's verdict and its order's state now."""

    at: dt.datetime
    order_pk: int
    order_id: str
    insurer: str
    operation: str
    order_state: OrderState
    order_attempts: int
    error_code: str | None
    error_message: str | None
    http_status: int | None
    outcome: str
    async_eligible: bool | None
    probability: float | None
    category: str | None
    model_version: str | None
    explanation: Any = None  # the verdict's explanation items (docs/contract.md §7), as stored


@dataclass(frozen=True, slots=True)
class Backlog:
    """ASYNC_PROCESSING orders that are due for re-execution now, and how late the oldest one is."""

    due: int
    oldest_due_at: dt.datetime | None


def _hour(value: dt.datetime | str) -> dt.datetime:
    """An hour bucket as an aware UTC datetime (PostgreSQL: naive UTC timestamp; SQLite: 'YYYY-MM-DD HH')."""
    if isinstance(value, str):
        value = dt.datetime.strptime(value, "%Y-%m-%d %H")
    return value.replace(tzinfo=dt.UTC)


def _check_window(since: dt.datetime, until: dt.datetime) -> None:
    if since.tzinfo is None or until.tzinfo is None:
        raise ValueError("window bounds must be timezone-aware")
    if not dt.timedelta(0) < until - since <= MAX_WINDOW:
        raise ValueError(f"a window must be longer than 0 and at most {MAX_WINDOW.days} days")


def _prefix_bounds(prefix: str) -> tuple[str, str]:
    """[prefix, successor) covers every string starting with `prefix` in code-point order."""
    return prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class ConsoleReads:
    """The console's queries, run in the transactions of the OrderStore that holds them (`store.insights`)."""

    def __init__(self, transaction: Callable[[], AbstractContextManager[sa.Connection]]) -> None:
        self._transaction = transaction

    def search_orders(
        self,
        *,
        state: OrderState | None = None,
        insurer: str | None = None,
        operation: str | None = None,
        created_from: dt.datetime | None = None,
        created_to: dt.datetime | None = None,
        order_id_prefix: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[OrderRecord], str | None]:
        """A page of orders (without attempts) and the next page's cursor (None: no more).

        Newest first by (created_at, id); with `order_id_prefix`, in order_id order instead. Time
        bounds: created_from <= created_at < created_to.
        """
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE}, got {limit}")
        query = sa.select(orders).limit(limit + 1)
        if state is not None:
            query = query.where(orders.c.state == OrderState(state).value)
        if insurer:
            query = query.where(orders.c.insurer == insurer)
        if operation:
            query = query.where(orders.c.operation == operation)
        if created_from is not None:
            query = query.where(orders.c.created_at >= created_from)
        if created_to is not None:
            query = query.where(orders.c.created_at < created_to)
        if order_id_prefix:
            low, high = _prefix_bounds(order_id_prefix)
            query = query.where(
                orders.c.order_id >= low,
                orders.c.order_id < high,
                orders.c.order_id.like(_escape_like(order_id_prefix) + "%", escape="\\"),
            ).order_by(orders.c.order_id)
            if cursor is not None:
                query = query.where(orders.c.order_id > decode_cursor(cursor, order_id=True))
        else:
            query = query.order_by(orders.c.created_at.desc(), orders.c.id.desc())
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
        found = [order_from_row(row) for row in rows[:limit]]
        if len(rows) <= limit:
            return found, None
        last = found[-1]
        return found, encode_cursor(last.order_id if order_id_prefix else (last.created_at, last.pk))

    def activity(self, *, since: dt.datetime, until: dt.datetime) -> list[ActivityBucket]:
        """Orders created in [since, until) per (UTC hour, insurer): received, and how many went async."""
        _check_window(since, until)
        with self._transaction() as conn:
            hour: sa.ColumnElement[Any]
            if conn.dialect.name == "postgresql":
                hour = sa.func.date_trunc("hour", sa.func.timezone("UTC", orders.c.created_at))
            else:  # SQLite stores naive UTC text 'YYYY-MM-DD HH:MM:SS.ffffff': its first 13 characters
                hour = sa.func.substr(orders.c.created_at, 1, 13)
            inner = (
                sa.select(hour.label("hour"), orders.c.insurer, sa.case((WENT_ASYNC, 1), else_=0).label("went_async"))
                .where(orders.c.created_at >= since, orders.c.created_at < until)
                .subquery()
            )
            query = sa.select(inner.c.hour, inner.c.insurer, sa.func.count(), sa.func.sum(inner.c.went_async)).group_by(
                inner.c.hour, inner.c.insurer
            )
            rows = conn.execute(query).all()
        buckets = [
            ActivityBucket(_hour(h), insurer, int(received), int(went_async or 0))
            for h, insurer, received, went_async in rows
        ]
        return sorted(buckets, key=lambda b: (b.hour, b.insurer))

    def failure_sample(self, *, since: dt.datetime, until: dt.datetime, orders_limit: int) -> list[FailureObservation]:
        """Failed or unknown-outcome calls made in [since, until), from the `orders_limit` orders with a
        failure that were updated most recently in the window; newest first."""
        _check_window(since, until)
        if not 1 <= orders_limit <= MAX_SAMPLE_ORDERS:
            raise ValueError(f"orders_limit must be between 1 and {MAX_SAMPLE_ORDERS}, got {orders_limit}")
        recent = (
            sa.select(orders.c.id)
            .where(
                orders.c.updated_at >= since,
                orders.c.first_failure_at.is_not(None),
            )
            .order_by(orders.c.updated_at.desc())
            .limit(orders_limit)
            .subquery()
        )
        query = (
            sa.select(
                attempts.c.at,
                attempts.c.order_pk,
                orders.c.order_id,
                orders.c.insurer,
                orders.c.operation,
                orders.c.state.label("order_state"),
                orders.c.attempts.label("order_attempts"),
                attempts.c.error_code,
                attempts.c.error_message,
                attempts.c.http_status,
                attempts.c.outcome,
                attempts.c.async_eligible,
                attempts.c.probability,
                attempts.c.category,
                attempts.c.model_version,
                attempts.c.explanation,
            )
            .select_from(attempts.join(orders, orders.c.id == attempts.c.order_pk))
            .where(
                attempts.c.order_pk.in_(sa.select(recent.c.id)),
                attempts.c.kind == "call",
                attempts.c.outcome.in_(_FAILING),
                attempts.c.at >= since,
                attempts.c.at < until,
            )
            .order_by(attempts.c.at.desc(), attempts.c.id.desc())
        )
        with self._transaction() as conn:
            rows = conn.execute(query).mappings().all()
        return [FailureObservation(**{**row, "order_state": OrderState(row["order_state"])}) for row in rows]

    def backlog(self, *, now: dt.datetime) -> Backlog:
        """ASYNC_PROCESSING orders whose next attempt is due (next_attempt_at <= now), through the due index."""
        due = sa.and_(
            orders.c.state == sa.literal(OrderState.ASYNC_PROCESSING.value, literal_execute=True),
            orders.c.next_attempt_at <= now,
        )
        with self._transaction() as conn:
            count, oldest = conn.execute(
                sa.select(sa.func.count(), sa.func.min(orders.c.next_attempt_at)).where(due)
            ).one()
        if isinstance(oldest, str):  # SQLite hands back aggregates of UTCDateTime columns as text
            oldest = dt.datetime.fromisoformat(oldest)
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=dt.UTC)
        return Backlog(due=int(count), oldest_due_at=oldest)


def iter_hours(since: dt.datetime, until: dt.datetime) -> Iterator[dt.datetime]:
    """Every whole UTC hour that starts in [floor(since), until)."""
    hour = since.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
    while hour < until:
        yield hour
        hour += dt.timedelta(hours=1)
