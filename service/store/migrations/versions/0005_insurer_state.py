"""Shared insurer state: windowed traffic counters and the fleet's retry budget per insurer.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

`insurer_traffic` has one row per insurer and time bucket (the bucket's start in Unix seconds) with
the requests made, the insurer's accepts and the first calls, added to by every serve and worker
process (service/store/insurer_state.py); `insurer_budget` has one token bucket per insurer from
which every worker takes its retry tokens. Both are caches of live traffic: downgrading drops them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "insurer_traffic",
        sa.Column("insurer", sa.String(128), primary_key=True),
        sa.Column("bucket", sa.BigInteger(), primary_key=True),
        sa.Column("requests", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("accepts", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("first_calls", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.create_table(
        "insurer_budget",
        sa.Column("insurer", sa.String(128), primary_key=True),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("refilled_at", sa.Float(), nullable=False),
        sa.Column("rate_per_s", sa.Float(), nullable=False),
        sa.Column("burst", sa.Integer(), nullable=False),
        sa.Column("granted", sa.BigInteger(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_table("insurer_budget")
    op.drop_table("insurer_traffic")
