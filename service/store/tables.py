"""The order store's schema: orders (the schedule itself), attempts, transitions and operators' rules, all times UTC.

The orders table is the job queue: a row in ASYNC_PROCESSING whose `next_attempt_at` has passed and
whose lease is free is due for re-execution. `UTCDateTime` makes every time column read and write
timezone-aware UTC datetimes on both dialects (SQLite stores naive UTC text, which then compares
correctly as text). The Alembic revisions under `migrations/` create exactly these tables; a test
compares the two.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.engine import Dialect


class OrderState(StrEnum):
    """The states of docs/contract.md §2."""

    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    ASYNC_PROCESSING = "ASYNC_PROCESSING"
    DEAD = "DEAD"


class UTCDateTime(sa.types.TypeDecorator[dt.datetime]):
    """A timezone-aware datetime stored as UTC; naive datetimes are refused on write."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} given; the store only takes aware UTC times")
        utc = value.astimezone(dt.UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


#: BIGINT keys on PostgreSQL; INTEGER on SQLite, where only INTEGER PRIMARY KEY autoincrements.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
#: JSON that maps Python None to SQL NULL (not the JSON literal null).
NullableJSON = sa.JSON(none_as_null=True)

metadata = sa.MetaData()

orders = sa.Table(
    "orders",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("order_id", sa.String(64), nullable=False),
    sa.Column("insurer", sa.String(128), nullable=False),
    sa.Column("operation", sa.String(64), nullable=False),
    sa.Column("payload", sa.JSON(), nullable=False),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("next_attempt_at", UTCDateTime(), nullable=True),
    sa.Column("lease_owner", sa.String(160), nullable=True),
    sa.Column("lease_until", UTCDateTime(), nullable=True),
    sa.Column("last_outcome", sa.String(16), nullable=True),
    sa.Column("category", sa.String(64), nullable=True),
    sa.Column("result", NullableJSON, nullable=True),
    sa.Column("first_failure_at", UTCDateTime(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("order_id", name="uq_orders_order_id"),
)

# The claim query's index. PostgreSQL: partial, so it holds only the (few) orders waiting for
# re-execution. SQLite: composite on (state, next_attempt_at), which its planner uses without
# having to prove a partial-index predicate.
sa.Index(
    "ix_orders_due",
    orders.c.next_attempt_at,
    postgresql_where=orders.c.state == OrderState.ASYNC_PROCESSING.value,
).ddl_if(dialect="postgresql")
sa.Index("ix_orders_state_due", orders.c.state, orders.c.next_attempt_at).ddl_if(dialect="sqlite")
sa.Index("ix_orders_created", orders.c.created_at, orders.c.id)
# The operations console (migration 0003): filtered newest-first pages and the failure window. Every
# state change writes an entry in each index whose predicate the new row meets (no HOT update: `state`
# and `updated_at` are indexed), so the failure window's index holds only orders that failed once
# (migration 0007).
sa.Index("ix_orders_state_created", orders.c.state, orders.c.created_at, orders.c.id)
sa.Index("ix_orders_insurer_created", orders.c.insurer, orders.c.created_at, orders.c.id)
sa.Index(
    "ix_orders_failed_updated",
    orders.c.updated_at,
    postgresql_where=orders.c.first_failure_at.is_not(None),
    sqlite_where=orders.c.first_failure_at.is_not(None),
)

attempts = sa.Table(
    "attempts",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("order_pk", BigId, sa.ForeignKey("orders.id", name="fk_attempts_order"), nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("latency_ms", sa.Float(), nullable=True),
    sa.Column("error_code", sa.Text(), nullable=True),
    sa.Column("error_message", sa.Text(), nullable=True),
    sa.Column("http_status", sa.Integer(), nullable=True),
    sa.Column("async_eligible", sa.Boolean(), nullable=True),
    sa.Column("probability", sa.Float(), nullable=True),
    sa.Column("category", sa.String(64), nullable=True),
    sa.Column("model_version", sa.String(128), nullable=True),
    sa.Column("explanation", NullableJSON, nullable=True),
    sa.Column("actor", sa.String(160), nullable=False),
    # True when a failure the model called final was sent async to learn its outcome (exploration)
    sa.Column("exploration", sa.Boolean(), nullable=True),
    # who decided the classification (migration 0004): "model" or "rule", and the rule's id
    sa.Column("decided_by", sa.String(8), nullable=True),
    sa.Column("rule_id", BigId, nullable=True),
    sa.Index("ix_attempts_order_pk", "order_pk"),
)

transitions = sa.Table(
    "transitions",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("order_pk", BigId, sa.ForeignKey("orders.id", name="fk_transitions_order"), nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("from_state", sa.String(20), nullable=True),
    sa.Column("to_state", sa.String(20), nullable=False),
    sa.Column("reason", sa.String(200), nullable=False),
    sa.Column("actor", sa.String(160), nullable=False),
    sa.Index("ix_transitions_order_pk", "order_pk"),
)

# Operators' rules (migration 0004, service/rules.py): a rule is never edited; removing one sets
# `deleted_at`/`deleted_by`, and every creation and removal is a row of `rule_changes`, whose largest
# id is the rule set's version (the cheap check each process polls). `hits` and `overrides`
# grow by periodic flushes (service/rules.py).
rules = sa.Table(
    "rules",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("insurer", sa.String(128), nullable=True),
    sa.Column("operation", sa.String(64), nullable=True),
    sa.Column("error_code", sa.String(256), nullable=True),
    sa.Column("message_contains", sa.String(512), nullable=True),
    sa.Column("decision", sa.String(8), nullable=False),
    sa.Column("category", sa.String(64), nullable=True),
    sa.Column("reason", sa.String(1000), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("created_by", sa.String(160), nullable=False),
    sa.Column("deleted_at", UTCDateTime(), nullable=True),
    sa.Column("deleted_by", sa.String(160), nullable=True),
    sa.Column("hits", sa.BigInteger(), nullable=False, server_default="0"),
    # of those hits, how many the model alone would have decided the other way
    sa.Column("overrides", sa.BigInteger(), nullable=False, server_default="0"),
)

rule_changes = sa.Table(
    "rule_changes",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("rule_id", BigId, sa.ForeignKey("rules.id", name="fk_rule_changes_rule"), nullable=False),
    sa.Column("action", sa.String(8), nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("actor", sa.String(160), nullable=False),
    sa.Index("ix_rule_changes_rule_id", "rule_id"),
)

# Shared insurer state (migration 0005, service/store/insurer_state.py): what every serve and worker
# process on this database knows together about an insurer. `insurer_traffic` holds windowed counters,
# one row per insurer and time bucket (`bucket`: the bucket's start, whole seconds of the Unix epoch),
# to which each process adds its counts since its last sync (UPSERT ... SET n = n + excluded.n): calls
# and queries made (`requests`), the insurer's accepts, and first calls (/process: the insurer's normal
# traffic). Old buckets slide out of the window and are deleted, so a dead process's share expires
# with them. `insurer_budget` is the fleet's retry budget per insurer: one token bucket (`tokens`,
# refilled at `rate_per_s` since `refilled_at`, Unix seconds), from which processes take tokens in
# chunks under a row lock; `granted` is the net number of tokens taken since the row was made.
insurer_traffic = sa.Table(
    "insurer_traffic",
    metadata,
    sa.Column("insurer", sa.String(128), primary_key=True),
    sa.Column("bucket", sa.BigInteger(), primary_key=True),
    sa.Column("requests", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("accepts", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("first_calls", sa.BigInteger(), nullable=False, server_default="0"),
)

insurer_budget = sa.Table(
    "insurer_budget",
    metadata,
    sa.Column("insurer", sa.String(128), primary_key=True),
    sa.Column("tokens", sa.Float(), nullable=False),
    sa.Column("refilled_at", sa.Float(), nullable=False),
    sa.Column("rate_per_s", sa.Float(), nullable=False),
    sa.Column("burst", sa.Integer(), nullable=False),
    sa.Column("granted", sa.BigInteger(), nullable=False, server_default="0"),
)

# The on/off circuit breaker's trips (insurer_guard "breaker", migration 0008): one row per insurer,
# the latest trip of any process. A process whose breaker opens writes when it opened and until when
# the circuit stays open (Unix seconds); every process reading the row opens its own breaker until
# then. A probe that succeeds anywhere closes it: `closed_at` ends the trip (open_until set to it), and
# every process whose breaker opened before that closes too.
insurer_circuit = sa.Table(
    "insurer_circuit",
    metadata,
    sa.Column("insurer", sa.String(128), primary_key=True),
    sa.Column("opened_at", sa.Float(), nullable=False),
    sa.Column("open_until", sa.Float(), nullable=False),
    sa.Column("closed_at", sa.Float(), nullable=True),
    sa.Column("reason", sa.String(200), nullable=False),
)

# Order events (migration 0006, docs/contract.md §8): the transactional outbox. One row per
# transition, inserted by the transition's own statement (service/store/steps.py;
# queries.insert_transition for requeues) and so committed or lost with it. `body` is the event's
# JSON exactly as the feed serves it and the webhook signs it. `txid` (PostgreSQL only, the writing
# transaction's pg_current_xact_id()) is the feed's commit-ordered position with `id`
# (service/store/events.py); SQLite, one writer at a time, orders by `id` alone. The delivery
# columns: `delivery_state` pending → delivered, or failed after the maximum age; `next_attempt_at`
# (null: due at once), a lease like the orders', and what the last try got.
events = sa.Table(
    "events",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(40), nullable=False),
    sa.Column("order_pk", BigId, sa.ForeignKey("orders.id", name="fk_events_order"), nullable=False),
    sa.Column("order_id", sa.String(64), nullable=False),
    sa.Column("to_state", sa.String(20), nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("body", sa.Text(), nullable=False),
    sa.Column("txid", sa.BigInteger(), nullable=True),
    sa.Column("delivery_state", sa.String(10), nullable=False, server_default="pending"),
    sa.Column("delivery_attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UTCDateTime(), nullable=True),
    sa.Column("retry_since", UTCDateTime(), nullable=True),  # the maximum age counts from here (redeliver), else `at`
    sa.Column("lease_owner", sa.String(160), nullable=True),
    sa.Column("lease_until", UTCDateTime(), nullable=True),
    sa.Column("delivered_at", UTCDateTime(), nullable=True),
    sa.Column("last_status", sa.Integer(), nullable=True),
    sa.Column("last_error", sa.String(500), nullable=True),
    sa.UniqueConstraint("event_id", name="uq_events_event_id"),
)
# the feed's order on PostgreSQL (on SQLite, where txid is null, it goes unused); an order's events in
# order (head of line, the timeline)
sa.Index("ix_events_txid", events.c.txid, events.c.id)
sa.Index("ix_events_order", events.c.order_pk, events.c.id)
# the delivery claim and the console's counts: only undelivered events on PostgreSQL (a partial index
# that `delivery_state = 'pending'` implies), all of them on SQLite, where the predicate is not rendered
sa.Index(
    "ix_events_undelivered",
    events.c.delivery_state,
    events.c.next_attempt_at,
    events.c.id,  # the claim's order: read in index order, it stops at its LIMIT
    postgresql_where=events.c.delivery_state != "delivered",
)
