"""Shared insurer state in the order database (SQLAlchemy expressions only): traffic counters and the
fleet's retry budget, one figure per insurer for every serve and worker process (docs/architecture.md,
"Shared insurer state").

- `push_traffic(deltas, since)`: one transaction that adds each process's counts since its last
  sync to the (insurer, bucket) rows — `INSERT ... ON CONFLICT (insurer, bucket) DO UPDATE SET
  requests = requests + excluded.requests, ...` on both SQLite and PostgreSQL, rows in key order so
  concurrent pushes never deadlock — and reads back the fleet totals of the buckets from `since` on
  (one grouped SELECT). Buckets older than `prune_before` are deleted in the same transaction.
- `take_tokens(insurer, want, give_back, rate, burst, now)`: one transaction on the insurer's
  `insurer_budget` row: create it full if missing (`ON CONFLICT DO NOTHING`), lock it
  (`SELECT ... FOR UPDATE` on PostgreSQL; SQLite's BEGIN IMMEDIATE already serialises writers),
  refill it at `rate` since `refilled_at` up to `burst`, add back what the caller returns, grant
  min(want, whole tokens available) and write the rest back. Every token any process ever uses went
  through this row, so the fleet never takes more than burst + rate x time.

- `push_circuit(trips, closes)`: the on/off breaker's changes (guard "breaker"), one transaction: a
  trip upserts the insurer's `insurer_circuit` row when it keeps the circuit open longer than the row
  does and began after the row's last close (`ON CONFLICT DO UPDATE ... WHERE excluded.open_until >
  open_until AND (closed_at IS NULL OR excluded.opened_at > closed_at)`: a trip that reaches the
  database after the probe that ended it reopens nothing); a close (a probe that
  succeeded at `at`) ends the trip opened at or before `at` (`closed_at = at`, and `open_until` no
  later than `at`), never a later one; the processes whose circuit that trip opened close theirs, even
  those whose cooldown had passed and which would otherwise probe too. Then every row is read back,
  and each process applies what another one decided.

Times are Unix seconds from the caller's wall clock (processes on one database must agree on the
time within a bucket; NTP does that). Database outages surface as StoreUnavailable, as in OrderStore.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.dialects import postgresql, sqlite

from service.store.errors import StoreUnavailable
from service.store.tables import insurer_budget, insurer_circuit, insurer_traffic

_UNAVAILABLE = (exc.OperationalError, exc.InterfaceError, exc.TimeoutError)


@dataclass(frozen=True)
class Traffic:
    """Counts of one insurer (one bucket's delta, or the fleet's totals over a window)."""

    requests: int = 0
    accepts: int = 0
    first_calls: int = 0

    def __add__(self, other: Traffic) -> Traffic:
        return Traffic(
            self.requests + other.requests, self.accepts + other.accepts, self.first_calls + other.first_calls
        )

    def __bool__(self) -> bool:
        return bool(self.requests or self.accepts or self.first_calls)


@dataclass(frozen=True)
class Grant:
    """What `take_tokens` gave: whole tokens granted, and the bucket's row after it."""

    granted: int
    tokens_left: float
    rate_per_s: float
    granted_total: int
    wait_s: float  # until the bucket holds its next whole token (0 when it holds one now)


@dataclass(frozen=True)
class CircuitTrip:
    """A process's breaker opened at `opened_at` for every process until `open_until`."""

    insurer: str
    opened_at: float
    open_until: float
    reason: str


@dataclass(frozen=True)
class CircuitClose:
    """A probe to `insurer` succeeded at `at`: the trip opened before it is over."""

    insurer: str
    at: float


@dataclass(frozen=True)
class CircuitRow:
    """An insurer's latest trip as stored (`closed_at`: when a probe closed it, or None)."""

    insurer: str
    opened_at: float
    open_until: float
    closed_at: float | None
    reason: str


@dataclass(frozen=True)
class BudgetRow:
    insurer: str
    tokens: float
    refilled_at: float
    rate_per_s: float
    burst: int
    granted: int


class InsurerStateStore:
    """The shared insurer state's reads and writes on one Engine (thread-safe, like OrderStore)."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._dialect = engine.dialect.name

    @contextmanager
    def _transaction(self) -> Iterator[sa.Connection]:
        try:
            with self._engine.begin() as connection:
                yield connection
        except _UNAVAILABLE as error:
            cause = getattr(error, "orig", None) or error
            reason = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
            raise StoreUnavailable(reason) from error

    def _insert(self, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
        return postgresql.insert(table) if self._dialect == "postgresql" else sqlite.insert(table)

    def push_traffic(
        self, deltas: Mapping[tuple[str, int], Traffic], *, since: int, prune_before: int | None = None
    ) -> dict[str, Traffic]:
        """Add `deltas` ((insurer, bucket start) → counts) and return the fleet totals per insurer over
        the buckets starting at `since` or later; delete buckets older than `prune_before`."""
        t = insurer_traffic
        rows = [
            {"insurer": insurer, "bucket": bucket, **vars(counts)}
            for (insurer, bucket), counts in sorted(deltas.items())
            if counts
        ]
        with self._transaction() as conn:
            if rows:
                insert = self._insert(t).values(rows)
                excluded = insert.excluded
                conn.execute(
                    insert.on_conflict_do_update(
                        index_elements=[t.c.insurer, t.c.bucket],
                        set_={
                            "requests": t.c.requests + excluded.requests,
                            "accepts": t.c.accepts + excluded.accepts,
                            "first_calls": t.c.first_calls + excluded.first_calls,
                        },
                    )
                )
            if prune_before is not None:
                conn.execute(sa.delete(t).where(t.c.bucket < prune_before))
            totals = conn.execute(
                sa.select(
                    t.c.insurer,
                    sa.func.sum(t.c.requests),
                    sa.func.sum(t.c.accepts),
                    sa.func.sum(t.c.first_calls),
                )
                .where(t.c.bucket >= since)
                .group_by(t.c.insurer)
            ).all()
        return {insurer: Traffic(int(r or 0), int(a or 0), int(f or 0)) for insurer, r, a, f in totals}

    def push_circuit(self, trips: Sequence[CircuitTrip], closes: Sequence[CircuitClose]) -> dict[str, CircuitRow]:
        """Write this process's breaker trips and closes and return every insurer's row. The conditions
        make the order of arrival immaterial, within one push or across processes: a trip is taken
        when it keeps the circuit open longer and began after the row's last close; a close ends only
        a trip opened at or before it."""
        c = insurer_circuit
        insurers = sorted({t.insurer for t in trips} | {k.insurer for k in closes})
        with self._transaction() as conn:
            for insurer in insurers:  # rows locked in key order: concurrent pushes never deadlock
                for trip in sorted((t for t in trips if t.insurer == insurer), key=lambda t: t.opened_at):
                    insert = self._insert(c).values(
                        insurer=insurer,
                        opened_at=trip.opened_at,
                        open_until=trip.open_until,
                        closed_at=None,
                        reason=trip.reason[:200],
                    )
                    excluded = insert.excluded
                    conn.execute(
                        insert.on_conflict_do_update(
                            index_elements=[c.c.insurer],
                            set_={
                                "opened_at": excluded.opened_at,
                                "open_until": excluded.open_until,
                                "closed_at": None,
                                "reason": excluded.reason,
                            },
                            where=sa.and_(
                                excluded.open_until > c.c.open_until,
                                sa.or_(c.c.closed_at.is_(None), excluded.opened_at > c.c.closed_at),
                            ),
                        )
                    )
                for close in sorted((k for k in closes if k.insurer == insurer), key=lambda k: k.at):
                    conn.execute(
                        sa.update(c)
                        .where(
                            c.c.insurer == insurer,
                            c.c.opened_at <= close.at,
                            sa.or_(c.c.closed_at.is_(None), c.c.closed_at < close.at),
                        )
                        .values(
                            open_until=sa.case((c.c.open_until > close.at, close.at), else_=c.c.open_until),
                            closed_at=close.at,
                        )
                    )
            rows = conn.execute(sa.select(c)).mappings().all()
        return {
            row["insurer"]: CircuitRow(
                row["insurer"],
                float(row["opened_at"]),
                float(row["open_until"]),
                None if row["closed_at"] is None else float(row["closed_at"]),
                row["reason"],
            )
            for row in rows
        }

    def take_tokens(
        self, insurer: str, *, want: int, give_back: int = 0, rate_per_s: float, burst: int, now: float
    ) -> Grant:
        """Take up to `want` whole tokens from the insurer's fleet bucket (after returning `give_back`
        unused ones); the bucket refills at `rate_per_s` up to `burst`."""
        b = insurer_budget
        with self._transaction() as conn:
            conn.execute(
                self._insert(b)
                .values(
                    insurer=insurer, tokens=float(burst), refilled_at=now, rate_per_s=rate_per_s, burst=burst, granted=0
                )
                .on_conflict_do_nothing(index_elements=[b.c.insurer])
            )
            locked = sa.select(b.c.tokens, b.c.refilled_at, b.c.granted).where(b.c.insurer == insurer)
            row = conn.execute(locked.with_for_update()).mappings().one()
            elapsed = max(0.0, now - float(row["refilled_at"]))
            available = min(float(burst), float(row["tokens"]) + elapsed * rate_per_s + give_back)
            granted = max(0, min(want, math.floor(available + 1e-9)))
            left = available - granted
            total = int(row["granted"]) + granted - give_back
            conn.execute(
                sa.update(b)
                .where(b.c.insurer == insurer)
                .values(
                    tokens=left,
                    refilled_at=max(now, float(row["refilled_at"])),
                    rate_per_s=rate_per_s,
                    burst=burst,
                    granted=total,
                )
            )
        wait = 0.0 if left >= 1.0 else ((1.0 - left) / rate_per_s if rate_per_s > 0 else math.inf)
        return Grant(granted, left, rate_per_s, total, wait)

    def budgets(self) -> dict[str, BudgetRow]:
        """Every insurer's fleet bucket as stored (tokens as of its last refill)."""
        b = insurer_budget
        with self._transaction() as conn:
            rows = conn.execute(sa.select(b)).mappings().all()
        return {
            row["insurer"]: BudgetRow(
                row["insurer"],
                float(row["tokens"]),
                float(row["refilled_at"]),
                float(row["rate_per_s"]),
                int(row["burst"]),
                int(row["granted"]),
            )
            for row in rows
        }
