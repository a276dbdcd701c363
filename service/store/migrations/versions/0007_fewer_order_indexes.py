"""Fewer order indexes on the durable path: every state change rewrites each index of `orders`.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04

An order's state update changes indexed columns (`state`, `updated_at`), so PostgreSQL cannot make
it a HOT update: each update adds an entry to every index whose predicate the new row meets.
`ix_orders_insurer_state` served no query (an insurer's pages read `ix_orders_insurer_created`);
`ix_orders_updated` served only the failure analysis, which reads orders that have failed at least
once, so it becomes `ix_orders_failed_updated`, partial on `first_failure_at IS NOT NULL`: an order
that succeeds at its first call (most of them) enters neither.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_FAILED = sa.text("first_failure_at IS NOT NULL")


def upgrade() -> None:
    op.drop_index("ix_orders_insurer_state", table_name="orders")
    op.drop_index("ix_orders_updated", table_name="orders")
    op.create_index(
        "ix_orders_failed_updated", "orders", ["updated_at"], postgresql_where=_FAILED, sqlite_where=_FAILED
    )


def downgrade() -> None:
    op.drop_index("ix_orders_failed_updated", table_name="orders")
    op.create_index("ix_orders_updated", "orders", ["updated_at"])
    op.create_index("ix_orders_insurer_state", "orders", ["insurer", "state"])
