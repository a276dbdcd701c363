"""The events outbox (docs/contract.md §8): writing an event with its transition, the feed, and delivery state.

`insert_event` runs on the transition's connection (queries.insert_transition calls it), so an
event commits or rolls back with its transition: a crash or a database restart can delay an event,
never lose one or invent one.

The feed's position. PostgreSQL takes a sequence value before commit, so ids do not arrive in
commit order: a reader paging by `id > last` may pass id 41 while the transaction holding id 40 is
still open, and never see 40. Each event therefore stores its transaction's id (`txid`,
`pg_current_xact_id()`), and the feed hands out only events below the visibility horizon
`pg_snapshot_xmin(pg_current_snapshot())`, the oldest transaction still running: every transaction
below it has finished, so no event can appear below it later. Positions are (txid, id), compared as
a pair; one transaction's events share a txid and appear together. SQLite runs one writer at a time
(BEGIN IMMEDIATE), so ids commit in order there and the position is the id.

Delivery. An event is due when it is `pending`, its `next_attempt_at` has passed, its lease is free
(or expired), and every earlier event of the same order has been delivered: head of line per order,
not globally. `claim_deliveries` leases due events (FOR UPDATE SKIP LOCKED on PostgreSQL, as the
orders' claim) so two processes never send the same event at once; the answer is written back only
while the lease is held.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Final, Literal

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from service.store.errors import InvalidCursor, StoreError
from service.store.tables import events

DeliveryState = Literal["pending", "delivered", "failed"]
MAX_FEED_LIMIT: Final = 1000
_CURSOR_TAG: Final = "ev1"
#: The longest last_error kept (the column's size).
MAX_ERROR_CHARS: Final = 500


class EventNotFound(StoreError):
    """Event {event_id!r} does not exist."""

    def __init__(self, event_id: str) -> None:
        self.event_id = event_id
        super().__init__(event_id=event_id)


class EventPending(StoreError):
    """Event {event_id!r} is already waiting to be delivered."""

    def __init__(self, event_id: str) -> None:
        self.event_id = event_id
        super().__init__(event_id=event_id)


@dataclass(frozen=True, slots=True)
class EventRecord:
    """A stored event with its delivery state (the body is the JSON document as sent)."""

    pk: int
    event_id: str
    order_pk: int
    order_id: str
    to_state: str
    at: dt.datetime
    body: str
    delivery_state: DeliveryState
    delivery_attempts: int
    next_attempt_at: dt.datetime | None
    retry_since: dt.datetime | None
    lease_owner: str | None
    lease_until: dt.datetime | None
    delivered_at: dt.datetime | None
    last_status: int | None
    last_error: str | None

    def age_from(self, now: dt.datetime) -> dt.datetime:
        """Where the maximum delivery age counts from: the event's first unacknowledged try (or its
        last redeliver); `now` for a try that is its first failure. So an event held behind its
        order's failing earlier event, or written before the webhook was configured, still gets the
        whole maximum age of retries."""
        return self.retry_since or now


@dataclass(frozen=True, slots=True)
class DeliverySummary:
    """Events by delivery state, and the oldest undelivered (pending) event's time."""

    counts: dict[str, int]
    oldest_pending_at: dt.datetime | None


def event_from_row(row: RowMapping) -> EventRecord:
    return EventRecord(
        pk=row["id"],
        event_id=row["event_id"],
        order_pk=row["order_pk"],
        order_id=row["order_id"],
        to_state=row["to_state"],
        at=row["at"],
        body=row["body"],
        delivery_state=row["delivery_state"],
        delivery_attempts=row["delivery_attempts"],
        next_attempt_at=row["next_attempt_at"],
        retry_since=row["retry_since"],
        lease_owner=row["lease_owner"],
        lease_until=row["lease_until"],
        delivered_at=row["delivered_at"],
        last_status=row["last_status"],
        last_error=row["last_error"],
    )


def _as_bigint(value: sa.ColumnElement[Any]) -> sa.ColumnElement[int]:
    """xid8 → bigint (through text: PostgreSQL has no direct cast; 64 bits never wrap in practice)."""
    return sa.cast(sa.cast(value, sa.Text), sa.BigInteger)


def txid_expression() -> sa.ColumnElement[int]:
    """PostgreSQL: the writing transaction's id as a bigint, the feed's commit-ordered position."""
    return _as_bigint(sa.func.pg_current_xact_id())


def insert_values(
    conn: sa.Connection, *, event_id: str, order_pk: int, order_id: str, to_state: str, body: str, now: dt.datetime
) -> dict[str, Any]:
    """The event row's values: due for delivery at once; on PostgreSQL the writing transaction's id."""
    values: dict[str, Any] = {
        "event_id": event_id,
        "order_pk": order_pk,
        "order_id": order_id,
        "to_state": to_state,
        "at": now,
        "body": body,
        "next_attempt_at": now,
    }
    if conn.dialect.name == "postgresql":
        values["txid"] = txid_expression()
    return values


def insert_event(
    conn: sa.Connection, *, event_id: str, order_pk: int, order_id: str, to_state: str, body: str, now: dt.datetime
) -> None:
    """Add the event row on the transition's connection (same transaction)."""
    values = insert_values(
        conn, event_id=event_id, order_pk=order_pk, order_id=order_id, to_state=to_state, body=body, now=now
    )
    conn.execute(sa.insert(events).values(values))


# -- the feed's cursor ------------------------------------------------------------------------------


#: The largest txid and event id a cursor can name (PostgreSQL BIGINT, SQLite INTEGER).
_POSITION_MAX: Final = 2**63 - 1


def encode_position(txid: int, pk: int) -> str:
    """The opaque cursor just past the event at (txid, pk): "ev1|txid|pk", base64url, unpadded."""
    return base64.urlsafe_b64encode(f"{_CURSOR_TAG}|{txid}|{pk}".encode()).decode("ascii").rstrip("=")


def decode_position(cursor: str) -> tuple[int, int]:
    """(txid, pk) from a cursor made by `encode_position`; InvalidCursor for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        tag, txid_text, pk_text = raw.split("|")
        if tag != _CURSOR_TAG or not txid_text.isdigit() or not pk_text.isdigit():
            raise ValueError("not an events cursor")
        txid, pk = int(txid_text), int(pk_text)
        if txid > _POSITION_MAX or pk > _POSITION_MAX:  # a BIGINT holds neither: no event is there
            raise ValueError("not an events cursor")
        return txid, pk
    except (binascii.Error, UnicodeDecodeError, ValueError) as error:
        raise InvalidCursor(cursor) from error


START: Final = encode_position(0, 0)


# -- statements ---------------------------------------------------------------------------------------


def feed_statement(dialect: str, *, after: tuple[int, int], limit: int) -> sa.Select[Any]:
    """Up to `limit` events past `after`, oldest first by position; on PostgreSQL only those below
    the visibility horizon of this statement's own snapshot."""
    txid, pk = after
    if dialect == "postgresql":
        horizon = _as_bigint(sa.func.pg_snapshot_xmin(sa.func.pg_current_snapshot()))
        return (
            sa.select(events.c.txid, events.c.id, events.c.body)
            .where(sa.tuple_(events.c.txid, events.c.id) > sa.tuple_(sa.literal(txid), sa.literal(pk)))
            .where(events.c.txid < horizon)
            .order_by(events.c.txid, events.c.id)
            .limit(limit)
        )
    return (
        sa.select(sa.literal(0).label("txid"), events.c.id, events.c.body)
        .where(events.c.id > pk)
        .order_by(events.c.id)
        .limit(limit)
    )


def claim_statement(owner: str, *, batch: int, lease_until: dt.datetime, now: dt.datetime) -> sa.Update:
    """Lease up to `batch` due events to `owner` (oldest due first), returning them.

    Due: pending, next_attempt_at passed, lease free or expired, and no earlier event of the same
    order undelivered (head of line per order). FOR UPDATE SKIP LOCKED in a materialized CTE on
    PostgreSQL, so concurrent claimers pass over each other's rows; on SQLite BEGIN IMMEDIATE
    serialises them. 'pending' is a literal so that PostgreSQL matches the partial index.
    """
    earlier = events.alias("earlier")
    blocked = (
        sa.select(earlier.c.id)
        .where(
            earlier.c.order_pk == events.c.order_pk,
            earlier.c.id < events.c.id,
            earlier.c.delivery_state != sa.literal("delivered", literal_execute=True),
        )
        .exists()
    )
    due = (
        sa.select(events.c.id)
        .where(
            events.c.delivery_state == sa.literal("pending", literal_execute=True),
            events.c.next_attempt_at <= now,
            sa.or_(events.c.lease_until.is_(None), events.c.lease_until < now),
            ~blocked,
        )
        .order_by(events.c.next_attempt_at, events.c.id)
        .limit(batch)
        .with_for_update(skip_locked=True, of=events)
        .cte("due_events")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    return (
        sa.update(events)
        .where(events.c.id.in_(sa.select(due.c.id)))
        .values(lease_owner=owner, lease_until=lease_until)
        .returning(*events.c)
    )


def _clip(text: str | None) -> str | None:
    if text is None:
        return None
    clean = text.replace("\x00", "\ufffd")
    return clean if len(clean) <= MAX_ERROR_CHARS else clean[: MAX_ERROR_CHARS - 1] + "…"


Transaction = Callable[[], AbstractContextManager[sa.Connection]]


class EventStore:
    """The events' reads and delivery writes, each in its own transaction (OrderStore's, so a database
    outage is StoreUnavailable). `OrderStore.events` is one."""

    def __init__(self, transaction: Transaction, dialect: str) -> None:
        self._transaction = transaction
        self._dialect = dialect

    # -- the feed -----------------------------------------------------------------------------------

    def feed(self, *, after: str | None, limit: int) -> tuple[list[str], str]:
        """The bodies of up to `limit` events past the cursor `after` (None: from the first), oldest
        first, and the cursor to pass next time (the same position when there is nothing new)."""
        if not 1 <= limit <= MAX_FEED_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_FEED_LIMIT}, got {limit}")
        position = decode_position(after) if after is not None else (0, 0)
        with self._transaction() as conn:
            rows = conn.execute(feed_statement(self._dialect, after=position, limit=limit)).all()
        if not rows:
            return [], encode_position(*position)
        last = rows[-1]
        return [row.body for row in rows], encode_position(int(last.txid), int(last.id))

    # -- delivery -----------------------------------------------------------------------------------

    def claim_deliveries(self, owner: str, *, batch: int, lease_s: float, now: dt.datetime) -> list[EventRecord]:
        """Lease up to `batch` due events to `owner` until now+lease_s (see `claim_statement`)."""
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        statement = claim_statement(owner, batch=batch, lease_until=now + dt.timedelta(seconds=lease_s), now=now)
        with self._transaction() as conn:
            rows = conn.execute(statement).mappings().all()
        return sorted((event_from_row(row) for row in rows), key=lambda e: e.pk)

    def acknowledge(self, owner: str, acks: Iterable[tuple[int, int]], *, now: dt.datetime) -> int:
        """Mark events (pk, HTTP status) delivered, releasing `owner`'s lease; those whose lease is no
        longer held are left alone. Returns how many were marked."""
        by_status: dict[int, list[int]] = {}
        for pk, status in acks:
            by_status.setdefault(status, []).append(pk)
        if not by_status:
            return 0
        marked = 0
        with self._transaction() as conn:
            for status, pks in by_status.items():
                done = conn.execute(
                    sa.update(events)
                    .where(events.c.id.in_(pks), events.c.lease_owner == owner)
                    .values(
                        delivery_state="delivered",
                        delivery_attempts=events.c.delivery_attempts + 1,
                        delivered_at=now,
                        lease_owner=None,
                        lease_until=None,
                        last_status=status,
                        last_error=None,
                    )
                )
                marked += done.rowcount
        return marked

    def delivery_failed(
        self,
        owner: str,
        pk: int,
        *,
        status: int | None,
        error: str,
        next_attempt_at: dt.datetime | None,
        retry_since: dt.datetime,
    ) -> bool:
        """Record an unacknowledged try: due again at `next_attempt_at`, or `failed` when it is None
        (the maximum age, counted from `retry_since`, is spent: EventRecord.age_from). False, writing
        nothing, if `owner` no longer holds the lease.

        The order's later pending events are moved with it: due no earlier than it (retry), or not
        due at all (failed; `redeliver` makes them due again). They could not be sent before it
        anyway (head of line); this keeps the claim from reading through them while it waits."""
        values: dict[str, Any] = {
            "delivery_attempts": events.c.delivery_attempts + 1,
            "lease_owner": None,
            "lease_until": None,
            "last_status": status,
            "last_error": _clip(error),
            "retry_since": retry_since,
        }
        if next_attempt_at is None:
            values["delivery_state"] = "failed"
        else:
            values["next_attempt_at"] = next_attempt_at
        with self._transaction() as conn:
            row = conn.execute(
                sa.update(events)
                .where(events.c.id == pk, events.c.lease_owner == owner)
                .values(values)
                .returning(events.c.order_pk)
            ).one_or_none()
            if row is None:
                return False
            later = sa.and_(
                events.c.order_pk == row.order_pk,
                events.c.id > pk,
                events.c.delivery_state == sa.literal("pending", literal_execute=True),
            )
            if next_attempt_at is None:
                conn.execute(sa.update(events).where(later).values(next_attempt_at=None))
            else:
                conn.execute(
                    sa.update(events)
                    .where(later, events.c.next_attempt_at < next_attempt_at)
                    .values(next_attempt_at=next_attempt_at)
                )
        return True

    def release_deliveries(self, owner: str, pks: Sequence[int]) -> int:
        """Give back leased events untried (shutdown), due as they were."""
        if not pks:
            return 0
        with self._transaction() as conn:
            done = conn.execute(
                sa.update(events)
                .where(events.c.id.in_(list(pks)), events.c.lease_owner == owner)
                .values(lease_owner=None, lease_until=None)
            )
        return done.rowcount

    def redeliver(self, event_id: str, *, now: dt.datetime) -> EventRecord:
        """A failed (or delivered) event back to pending, due now, with a fresh maximum age;
        EventNotFound, or EventPending when it is still waiting for delivery."""
        with self._transaction() as conn:
            row = (
                conn.execute(sa.select(events).where(events.c.event_id == event_id).with_for_update())
                .mappings()
                .one_or_none()
            )
            if row is None:
                raise EventNotFound(event_id)
            if row["delivery_state"] == "pending":
                raise EventPending(event_id)
            updated = (
                conn.execute(
                    sa.update(events)
                    .where(events.c.id == row["id"])
                    .values(
                        delivery_state="pending",
                        delivery_attempts=0,
                        next_attempt_at=now,
                        retry_since=now,
                        lease_owner=None,
                        lease_until=None,
                        delivered_at=None,
                    )
                    .returning(*events.c)
                )
                .mappings()
                .one()
            )
            conn.execute(  # the order's later events, held back while this one had failed
                sa.update(events)
                .where(
                    events.c.order_pk == row["order_pk"],
                    events.c.id > row["id"],
                    events.c.delivery_state == sa.literal("pending", literal_execute=True),
                    events.c.next_attempt_at.is_(None),
                )
                .values(next_attempt_at=now)
            )
        return event_from_row(updated)

    # -- reading ------------------------------------------------------------------------------------

    def get(self, event_id: str) -> EventRecord | None:
        with self._transaction() as conn:
            row = conn.execute(sa.select(events).where(events.c.event_id == event_id)).mappings().one_or_none()
        return None if row is None else event_from_row(row)

    def of_order(self, order_pk: int) -> list[EventRecord]:
        """The order's events, oldest first."""
        with self._transaction() as conn:
            rows = conn.execute(sa.select(events).where(events.c.order_pk == order_pk).order_by(events.c.id)).mappings()
            return [event_from_row(row) for row in rows]

    def failed(self, *, limit: int = 100) -> list[EventRecord]:
        """Events whose delivery failed (maximum age spent), newest first."""
        with self._transaction() as conn:
            rows = conn.execute(
                sa.select(events)
                .where(events.c.delivery_state == sa.literal("failed", literal_execute=True))
                .order_by(events.c.id.desc())
                .limit(limit)
            ).mappings()
            return [event_from_row(row) for row in rows]

    def recent(self, *, limit: int = 50) -> list[EventRecord]:
        """The latest events, newest first, with their delivery state."""
        with self._transaction() as conn:
            rows = conn.execute(sa.select(events).order_by(events.c.id.desc()).limit(limit)).mappings()
            return [event_from_row(row) for row in rows]

    def summary(self) -> DeliverySummary:
        """Undelivered events by state (pending, failed; from the partial index) plus the total, and
        the oldest pending event's time."""
        undelivered = events.c.delivery_state != sa.literal("delivered", literal_execute=True)
        with self._transaction() as conn:
            rows = conn.execute(
                sa.select(events.c.delivery_state, sa.func.count()).where(undelivered).group_by(events.c.delivery_state)
            ).all()
            oldest = conn.execute(
                sa.select(sa.func.min(events.c.at)).where(
                    events.c.delivery_state == sa.literal("pending", literal_execute=True)
                )
            ).scalar_one()
        counts = {"pending": 0, "failed": 0}
        counts.update((state, number) for state, number in rows)
        if oldest is not None and oldest.tzinfo is None:  # SQLite's aggregate loses the column type
            oldest = oldest.replace(tzinfo=dt.UTC)
        return DeliverySummary(counts, oldest)
