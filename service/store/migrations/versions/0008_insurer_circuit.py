"""The on/off circuit breaker shared by every process: one row per insurer with its latest trip.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04

`insurer_circuit` holds, per insurer, when a process's breaker last opened (`opened_at`), until when
the circuit stays open for every process (`open_until`), and when a successful probe closed it
(`closed_at`), in Unix seconds, with the reason (service/store/insurer_state.py). Like the traffic
counters it is a cache of live state: downgrading drops it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "insurer_circuit",
        sa.Column("insurer", sa.String(128), primary_key=True),
        sa.Column("opened_at", sa.Float(), nullable=False),
        sa.Column("open_until", sa.Float(), nullable=False),
        sa.Column("closed_at", sa.Float(), nullable=True),
        sa.Column("reason", sa.String(200), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("insurer_circuit")
