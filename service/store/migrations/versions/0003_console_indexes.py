"""Indexes for the operations console: orders by state or insurer newest first, and orders by last update.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25

`ix_orders_state_created` and `ix_orders_insurer_created` keep a filtered, newest-first page of
the console's order table a short index range even for rare states; `ix_orders_updated` bounds the
failure analysis to the orders touched in its time window.
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_orders_state_created", "orders", ["state", "created_at", "id"])
    op.create_index("ix_orders_insurer_created", "orders", ["insurer", "created_at", "id"])
    op.create_index("ix_orders_updated", "orders", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_orders_updated", table_name="orders")
    op.drop_index("ix_orders_insurer_created", table_name="orders")
    op.drop_index("ix_orders_state_created", table_name="orders")
