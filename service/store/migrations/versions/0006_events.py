"""Order events: the transactional outbox of docs/contract.md §8, with each event's delivery state.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03

`events` holds one row per order transition, written in the transition's transaction: the event's
JSON (`body`), on PostgreSQL the writing transaction's id (`txid`, the feed's commit-ordered
position), and its webhook delivery (state, attempts, due time, lease, last answer). Orders
created before this revision have no events (their history stays in `transitions`).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(40), nullable=False),
        sa.Column("order_pk", _ID, sa.ForeignKey("orders.id", name="fk_events_order"), nullable=False),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("to_state", sa.String(20), nullable=False),
        sa.Column("at", _TIME, nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("txid", sa.BigInteger(), nullable=True),
        sa.Column("delivery_state", sa.String(10), nullable=False, server_default="pending"),
        sa.Column("delivery_attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt_at", _TIME, nullable=True),
        sa.Column("retry_since", _TIME, nullable=True),
        sa.Column("lease_owner", sa.String(160), nullable=True),
        sa.Column("lease_until", _TIME, nullable=True),
        sa.Column("delivered_at", _TIME, nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.UniqueConstraint("event_id", name="uq_events_event_id"),
    )
    op.create_index("ix_events_order", "events", ["order_pk", "id"])
    op.create_index(
        "ix_events_undelivered",
        "events",
        ["delivery_state", "next_attempt_at", "id"],
        postgresql_where=sa.text("delivery_state <> 'delivered'"),
    )
    op.create_index("ix_events_txid", "events", ["txid", "id"])


def downgrade() -> None:
    op.drop_index("ix_events_txid", table_name="events")
    op.drop_index("ix_events_undelivered", table_name="events")
    op.drop_index("ix_events_order", table_name="events")
    op.drop_table("events")
