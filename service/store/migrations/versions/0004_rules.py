"""Operators' rules: the rules table, its change log, and who decided each attempt's classification.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

`rules` holds every rule ever made (a removed one keeps its row, with `deleted_at`/`deleted_by`),
with how many failures it decided (`hits`) and how many of those the model would have decided the
other way (`overrides`);
`rule_changes` logs each creation and removal with who and when, and its largest id is the version
of the rule set that every process polls. Attempts record `decided_by` ("model" or "rule") and the
deciding `rule_id`; attempts written before this revision have both null (the model decided).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "rules",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("insurer", sa.String(128), nullable=True),
        sa.Column("operation", sa.String(64), nullable=True),
        sa.Column("error_code", sa.String(256), nullable=True),
        sa.Column("message_contains", sa.String(512), nullable=True),
        sa.Column("decision", sa.String(8), nullable=False),
        sa.Column("category", sa.String(64), nullable=True),
        sa.Column("reason", sa.String(1000), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("created_by", sa.String(160), nullable=False),
        sa.Column("deleted_at", _TIME, nullable=True),
        sa.Column("deleted_by", sa.String(160), nullable=True),
        sa.Column("hits", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("overrides", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.create_table(
        "rule_changes",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("rule_id", _ID, sa.ForeignKey("rules.id", name="fk_rule_changes_rule"), nullable=False),
        sa.Column("action", sa.String(8), nullable=False),
        sa.Column("at", _TIME, nullable=False),
        sa.Column("actor", sa.String(160), nullable=False),
    )
    op.create_index("ix_rule_changes_rule_id", "rule_changes", ["rule_id"])
    with op.batch_alter_table("attempts") as batch:
        batch.add_column(sa.Column("decided_by", sa.String(8), nullable=True))
        batch.add_column(sa.Column("rule_id", _ID, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("rule_id")
        batch.drop_column("decided_by")
    op.drop_index("ix_rule_changes_rule_id", table_name="rule_changes")
    op.drop_table("rule_changes")
    op.drop_table("rules")
