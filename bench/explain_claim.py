"""EXPLAIN (ANALYZE, BUFFERS) of the worker's claim query on PostgreSQL with 10 million orders.

    .venv/bin/python -m bench.explain_claim [--db-url postgresql://postgres@127.0.0.1:5432/test]
                                               [--rows 10000000] [--async-share 0.01] [--batch 100]

Creates a throwaway schema in the given database, migrates it (the real tables and indexes),
fills `orders` with one fast `INSERT ... SELECT generate_series` (most orders settled, a share
in ASYNC_PROCESSING with due times spread over a day around now, some of those leased), runs
ANALYZE, then the exact statement `OrderStore.claim_due` issues, prefixed with EXPLAIN (ANALYZE,
BUFFERS), inside a transaction that is rolled back. Prints the timings and both plans (cold and
warm) as Markdown for docs/architecture.md, and drops the schema at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from service.store import create_db_engine, migrate
from service.store.queries import claim_statement

FILL_SQL = """
INSERT INTO orders (order_id, insurer, operation, payload, request_hash, state, attempts,
                    next_attempt_at, lease_owner, lease_until, last_outcome, category,
                    first_failure_at, created_at, updated_at)
SELECT 'B' || lpad(g::text, 12, '0'),
       'insurer-' || (g % 40),
       (ARRAY['underwrite', 'pay', 'issue_policy'])[1 + g % 3],
       '{"premium": 1200, "product": "term-life-20"}'::json,
       md5(g::text) || md5((g + 1)::text),
       CASE WHEN g % 10000 < :async_per_10k THEN 'ASYNC_PROCESSING'
            WHEN g % 50 = 0 THEN 'FAILED'
            WHEN g % 997 = 0 THEN 'DEAD'
            ELSE 'SUCCEEDED' END,
       1 + g % 3,
       CASE WHEN g % 10000 < :async_per_10k
            THEN :now - make_interval(secs => 43200) + make_interval(secs => (g * 7919) % 86400)
            ELSE NULL END,
       CASE WHEN g % 10000 < :async_per_10k AND g % 7 = 0 THEN 'worker:other' ELSE NULL END,
       CASE WHEN g % 10000 < :async_per_10k AND g % 7 = 0 THEN :now + make_interval(secs => 60) ELSE NULL END,
       'failure',
       'insurer_busy',
       :now - make_interval(secs => g % 2592000),
       :now - make_interval(secs => g % 2592000),
       :now - make_interval(secs => g % 2592000)
FROM generate_series(1::bigint, :rows) AS g
"""


def explain(engine: sa.Engine, *, batch: int, now: dt.datetime) -> tuple[list[str], float]:
    """The claim statement's plan with ANALYZE and BUFFERS, executed and rolled back; (plan lines, seconds)."""
    statement = claim_statement("worker:explain", batch=batch, lease_until=now + dt.timedelta(seconds=60), now=now)

    def prefix(_conn: Any, _cursor: Any, sql: str, params: Any, _context: Any, _many: bool) -> tuple[str, Any]:
        return "EXPLAIN (ANALYZE, BUFFERS) " + sql, params

    with engine.connect() as conn:
        transaction = conn.begin()
        event.listen(conn, "before_cursor_execute", prefix, retval=True)
        try:
            started = time.perf_counter()
            result = conn.execute(statement)
            lines = [str(row[0]) for row in result.cursor.fetchall()]
            return lines, time.perf_counter() - started
        finally:
            event.remove(conn, "before_cursor_execute", prefix)
            transaction.rollback()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--async-share", type=float, default=0.01, help="share of orders in ASYNC_PROCESSING")
    parser.add_argument("--batch", type=int, default=100, help="the worker's claim batch")
    args = parser.parse_args()

    schema = f"explain_{uuid.uuid4().hex[:10]}"
    admin = create_db_engine(args.db_url, pool_size=1, max_overflow=0)
    sep = "&" if "?" in args.db_url else "?"
    engine = create_db_engine(f"{args.db_url}{sep}options=-csearch_path%3D{schema}", pool_size=2, max_overflow=0)
    now = dt.datetime.now(dt.UTC)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        migrate(engine)
        started = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(
                sa.text(FILL_SQL),
                {"rows": args.rows, "async_per_10k": round(args.async_share * 10_000), "now": now},
            )
        fill_s = time.perf_counter() - started
        started = time.perf_counter()
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE orders"))
        analyze_s = time.perf_counter() - started
        with engine.connect() as conn:
            counts: dict[str, int] = dict(
                conn.execute(sa.text("SELECT state, count(*) FROM orders GROUP BY state")).all()
            )
            due = conn.execute(
                sa.text(
                    "SELECT count(*) FROM orders WHERE state = 'ASYNC_PROCESSING' AND next_attempt_at <= :now "
                    "AND (lease_until IS NULL OR lease_until < :now)"
                ),
                {"now": now},
            ).scalar_one()
            sizes = conn.execute(
                sa.text(
                    "SELECT c.relname, pg_size_pretty(pg_relation_size(c.oid)) FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = :schema "
                    "AND c.relkind IN ('r', 'i') AND c.relname LIKE ANY (ARRAY['orders', '%orders%']) ORDER BY 1"
                ),
                {"schema": schema},
            ).all()
        cold, cold_s = explain(engine, batch=args.batch, now=now)
        warm, warm_s = explain(engine, batch=args.batch, now=now)
        print(f"rows: {args.rows:,}  by state: {counts}  due now: {due:,}")
        print(f"fill: {fill_s:.1f} s, vacuum analyze: {analyze_s:.1f} s")
        print("relation sizes: " + ", ".join(f"{name} {size}" for name, size in sizes))
        print(f"\n#### cold ({cold_s * 1000:.1f} ms round trip)\n\n```\n" + "\n".join(cold) + "\n```")
        print(f"\n#### warm ({warm_s * 1000:.1f} ms round trip)\n\n```\n" + "\n".join(warm) + "\n```")
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


if __name__ == "__main__":
    main()
