"""Operators' rules in the order database, mixed into OrderStore (SQLAlchemy expressions only).

A rule is written once and never edited. Removing it sets `deleted_at`/`deleted_by` (the row stays,
so an attempt's `rule_id` always names a rule that can be looked up), and every creation and removal
adds a row to `rule_changes`: that is the history, and its largest id is the rule set's version, the
one-row read each process polls to know whether to reload. Hits are added in batches
(`add_rule_hits`, one UPDATE ... SET hits = hits + n per rule), never per classified failure; so are
`overrides`, the hits where the model alone would have decided the other way.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict
from typing import Final

import sqlalchemy as sa

from service.store.errors import RuleNotFound
from service.store.records import NewRule, RuleChange, RuleRecord, rule_from_row
from service.store.tables import rule_changes, rules

MAX_HISTORY: Final = 1000


def _live() -> sa.ColumnElement[bool]:
    return rules.c.deleted_at.is_(None)


def _insert(conn: sa.Connection, rule: NewRule, *, actor: str, now: dt.datetime) -> RuleRecord:
    values = asdict(rule) | {"created_at": now, "created_by": actor, "hits": 0, "overrides": 0}
    row = conn.execute(sa.insert(rules).values(values).returning(*rules.c)).mappings().one()
    conn.execute(sa.insert(rule_changes).values(rule_id=row["id"], action="created", at=now, actor=actor))
    return rule_from_row(row)


def _delete(conn: sa.Connection, rule_id: int, *, actor: str, now: dt.datetime) -> RuleRecord:
    done = conn.execute(
        sa.update(rules)
        .where(rules.c.id == rule_id, _live())
        .values(deleted_at=now, deleted_by=actor)
        .returning(*rules.c)
    ).mappings()
    row = done.one_or_none()
    if row is None:
        raise RuleNotFound(rule_id)
    conn.execute(sa.insert(rule_changes).values(rule_id=rule_id, action="deleted", at=now, actor=actor))
    return rule_from_row(row)


def _version(conn: sa.Connection) -> int:
    return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(rule_changes.c.id), 0))).scalar_one())


class RuleStore:
    """The rules' reads and writes, run in the transactions of the OrderStore that holds them (`store.rules`)."""

    def __init__(self, transaction: Callable[[], AbstractContextManager[sa.Connection]]) -> None:
        self._transaction = transaction

    def add_rule(self, rule: NewRule, *, actor: str, now: dt.datetime) -> RuleRecord:
        """Store a new rule made by `actor`; returns it with its rule_id."""
        with self._transaction() as conn:
            return _insert(conn, rule, actor=actor, now=now)

    def delete_rule(self, rule_id: int, *, actor: str, now: dt.datetime) -> RuleRecord:
        """Remove a live rule (it stays in the history); RuleNotFound when there is no live rule `rule_id`."""
        with self._transaction() as conn:
            return _delete(conn, rule_id, actor=actor, now=now)

    def import_rules(
        self, wanted: Sequence[NewRule], *, actor: str, now: dt.datetime, replace: bool = False
    ) -> tuple[list[RuleRecord], list[RuleRecord], list[RuleRecord]]:
        """Make the live rules contain `wanted`, in one transaction: (added, already live, removed).

        A wanted rule whose content equals a live rule's is kept as it is (so importing an export is a
        no-op); the others are added in order. With `replace`, live rules not in `wanted` are removed.
        """
        with self._transaction() as conn:
            live = [rule_from_row(row) for row in conn.execute(sa.select(rules).where(_live())).mappings()]
            by_content = {rule.content(): rule for rule in live}
            added: list[RuleRecord] = []
            kept: list[RuleRecord] = []
            seen: set[tuple[str | None, ...]] = set()
            for rule in wanted:
                content = rule.content()
                if content in seen:
                    continue
                seen.add(content)
                if content in by_content:
                    kept.append(by_content[content])
                else:
                    added.append(_insert(conn, rule, actor=actor, now=now))
            removed = []
            if replace:
                for existing in live:
                    if existing.content() not in seen:
                        removed.append(_delete(conn, existing.rule_id, actor=actor, now=now))
            return added, kept, removed

    def live_rules(self) -> tuple[int, list[RuleRecord]]:
        """The rule set's version and its live rules (oldest first), read together."""
        with self._transaction() as conn:
            version = _version(conn)
            rows = conn.execute(sa.select(rules).where(_live()).order_by(rules.c.id)).mappings()
            return version, [rule_from_row(row) for row in rows]

    def rules_version(self) -> int:
        """The id of the latest rule change (0 when there has been none): changes whenever the set does."""
        with self._transaction() as conn:
            return _version(conn)

    def get_rule(self, rule_id: int) -> RuleRecord | None:
        """The rule `rule_id`, live or removed, or None."""
        with self._transaction() as conn:
            row = conn.execute(sa.select(rules).where(rules.c.id == rule_id)).mappings().one_or_none()
            return None if row is None else rule_from_row(row)

    def rule_history(self, *, limit: int = MAX_HISTORY) -> list[RuleChange]:
        """The latest `limit` rule changes, newest first, each with the rule it concerns."""
        if not 1 <= limit <= MAX_HISTORY:
            raise ValueError(f"limit must be between 1 and {MAX_HISTORY}, got {limit}")
        statement = (
            sa.select(
                rule_changes.c.id.label("change_id"),
                rule_changes.c.action,
                rule_changes.c.at,
                rule_changes.c.actor,
                *rules.c,
            )
            .select_from(rule_changes.join(rules, rules.c.id == rule_changes.c.rule_id))
            .order_by(rule_changes.c.id.desc())
            .limit(limit)
        )
        with self._transaction() as conn:
            return [
                RuleChange(row["change_id"], row["id"], row["action"], row["at"], row["actor"], rule_from_row(row))
                for row in conn.execute(statement).mappings()
            ]

    def add_rule_hits(self, hits: Mapping[int, tuple[int, int]]) -> None:
        """Add counted (hits, overrides) to their rules in one transaction (removed rules count too: they decided)."""
        counts = {rule_id: n for rule_id, n in hits.items() if n[0] > 0}
        if not counts:
            return
        with self._transaction() as conn:
            for rule_id, (n, overridden) in sorted(counts.items()):  # a fixed order: flushes cannot deadlock
                conn.execute(
                    sa.update(rules)
                    .where(rules.c.id == rule_id)
                    .values(hits=rules.c.hits + n, overrides=rules.c.overrides + overridden)
                )
