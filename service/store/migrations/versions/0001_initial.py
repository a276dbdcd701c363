"""Initial schema: orders (the re-execution schedule), attempts and transitions.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("insurer", sa.String(128), nullable=False),
        sa.Column("operation", sa.String(64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _TIME, nullable=True),
        sa.Column("lease_owner", sa.String(160), nullable=True),
        sa.Column("lease_until", _TIME, nullable=True),
        sa.Column("last_outcome", sa.String(16), nullable=True),
        sa.Column("category", sa.String(64), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("first_failure_at", _TIME, nullable=True),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.UniqueConstraint("order_id", name="uq_orders_order_id"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.create_index(
            "ix_orders_due",
            "orders",
            ["next_attempt_at"],
            postgresql_where=sa.text("state = 'ASYNC_PROCESSING'"),
        )
    else:
        op.create_index("ix_orders_state_due", "orders", ["state", "next_attempt_at"])
    op.create_index("ix_orders_insurer_state", "orders", ["insurer", "state"])
    op.create_index("ix_orders_created", "orders", ["created_at", "id"])

    op.create_table(
        "attempts",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("order_pk", _ID, sa.ForeignKey("orders.id", name="fk_attempts_order"), nullable=False),
        sa.Column("at", _TIME, nullable=False),
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
        sa.Column("explanation", sa.JSON(), nullable=True),
        sa.Column("actor", sa.String(160), nullable=False),
    )
    op.create_index("ix_attempts_order_pk", "attempts", ["order_pk"])

    op.create_table(
        "transitions",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("order_pk", _ID, sa.ForeignKey("orders.id", name="fk_transitions_order"), nullable=False),
        sa.Column("at", _TIME, nullable=False),
        sa.Column("from_state", sa.String(20), nullable=True),
        sa.Column("to_state", sa.String(20), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("actor", sa.String(160), nullable=False),
    )
    op.create_index("ix_transitions_order_pk", "transitions", ["order_pk"])


def downgrade() -> None:
    op.drop_table("transitions")
    op.drop_table("attempts")
    op.drop_table("orders")
