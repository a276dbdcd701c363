"""Console page times with a million orders: bulk-fill a store, serve it with real uvicorn, time each page.

    .venv/bin/python bench/console_bench.py [--db-url URL] [--orders 1000000] [--days 14] [--repeat 7]

Fills an SQLite file (default, under a temp folder) or the PostgreSQL database named by --db-url
(`postgresql://...`: a fresh schema `console_bench` there, dropped at the end unless --keep) with
`--orders` orders spread evenly over the last `--days` days, in the shape real traffic leaves: ~80%
synchronous successes, the rest failures kept async (succeeded later, still pending, DEAD), final
failures and retries that failed definitively, each with its attempts and transitions. Then it
starts `python -m service serve` on it (a toy model, API keys unset) and requests every console page
`--repeat` times after a first (cold) request, printing the first, the median and the slowest
round trip.
`--reuse-sqlite FILE` skips the fill and serves an SQLite file a previous `--keep` run left.

The server runs with ASYNCGATE_DRIFT_CALIBRATION_WINDOW_S=3600: the learning loop's drift monitor
recomputes its live calibration from the store when the app starts (through its Prometheus
collector), which with the default 7-day window reads every first failure of the week (about a
minute with a million orders on SQLite). That cost is the drift monitor's, not the console's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from model.artifact import save_artifact
from model.registry import activate
from service.store import create_db_engine, migrate
from service.store.tables import attempts, orders, transitions
from tests.factories import toy_classifier
from tests.integration.conftest import child_env, free_port, start_process

INSURERS = ("acme", "beta", "gamma", "delta", "epsilon", "zeta")
OPERATIONS = ("underwrite", "pay", "issue_policy", "query", "cancel")
#: (weight, story): what happened to an order; the failure templates each story uses are below.
STORIES = ((80, "ok"), (8, "later"), (2, "pending"), (5, "final"), (3, "dead"), (2, "retry_final"))
FAILURES = {
    "busy": ("E1001", "系统繁忙，请稍后再试 (流水号 {n})", 503, 0.93, "insurer_busy"),
    "timeout": (None, "ReadTimeout: timed out after 2000 ms (order {order_id})", None, 0.97, "timeout"),
    "gateway": (None, "<html><h1>502 Bad Gateway</h1> nginx/1.{n}</html>", 502, 0.9, "gateway_pages"),
    "final": ("E2001", "身份证号码格式不正确: 1101011990{n}", 200, 0.04, "validation"),
    "declined": ("UW-17", "Underwriting declined: applicant age {n} out of range", 200, 0.06, "underwriting_decline"),
}
EXPLAIN = [{"feature": "msg: 繁忙", "weight": 1.4}, {"feature": "status=503", "weight": 0.6}]
CHUNK = 20_000


def _attempt(pk: int, at: dt.datetime, outcome: str, kind: str = "call", **failure: Any) -> dict[str, Any]:
    row = {"order_pk": pk, "at": at, "kind": kind, "outcome": outcome, "latency_ms": 120.0, "actor": "bench"}
    row.update(dict.fromkeys(("error_code", "error_message", "http_status", "async_eligible"), None))
    row.update(dict.fromkeys(("probability", "category", "model_version", "explanation"), None))
    row.update(failure)
    return row


def _failure(pk: int, at: dt.datetime, name: str, order_id: str, rng: random.Random) -> dict[str, Any]:
    code, message, status, p, category = FAILURES[name]
    return _attempt(
        pk,
        at,
        "failure" if status is not None else "unknown",
        error_code=code,
        error_message=message.format(n=rng.randrange(10**6, 10**7), order_id=order_id),
        http_status=status,
        async_eligible=p >= 0.35,
        probability=p,
        category=category,
        model_version="bench",
        explanation=EXPLAIN,
    )


def generate(n_orders: int, days: float, now: dt.datetime, seed: int = 1) -> Iterator[tuple[list[Any], ...]]:
    """Chunks of (orders, attempts, transitions) rows; order ids B0000000001..., pk = position."""
    rng = random.Random(seed)
    weights = [w for w, _ in STORIES]
    names = [s for _, s in STORIES]
    span = dt.timedelta(days=days)
    for start in range(0, n_orders, CHUNK):
        o_rows, a_rows, t_rows = [], [], []
        for pk in range(start + 1, min(n_orders, start + CHUNK) + 1):
            created = now - span + span * (pk / n_orders)
            story = rng.choices(names, weights)[0]
            order_id = f"B{pk:010d}"
            tick = created + dt.timedelta(seconds=1)
            later = created + dt.timedelta(minutes=5)
            state, calls, first_failure, due = "SUCCEEDED", 1, None, None
            t_rows.append({"order_pk": pk, "at": created, "from_state": None, "to_state": "ASYNC_PROCESSING"})
            if story == "ok":
                a_rows.append(_attempt(pk, tick, "success"))
            elif story in ("later", "pending"):
                a_rows.append(_failure(pk, tick, rng.choice(("busy", "timeout", "gateway")), order_id, rng))
                first_failure = tick
                if story == "later":
                    a_rows.append(_attempt(pk, later, "success"))
                    calls = 2
                else:
                    state, due = "ASYNC_PROCESSING", later
            elif story == "final":
                a_rows.append(_failure(pk, tick, rng.choice(("final", "declined")), order_id, rng))
                state, first_failure = "FAILED", tick
            elif story == "dead":
                for k in range(3):
                    a_rows.append(_failure(pk, tick + dt.timedelta(minutes=k), "timeout", order_id, rng))
                state, calls, first_failure = "DEAD", 3, tick
            else:
                a_rows.append(_failure(pk, tick, "busy", order_id, rng))
                a_rows.append(_failure(pk, later, "declined", order_id, rng))
                state, calls, first_failure = "FAILED", 2, tick
            updated = later if calls > 1 or state == "ASYNC_PROCESSING" else tick
            if state != "ASYNC_PROCESSING":
                t_rows.append({"order_pk": pk, "at": updated, "from_state": "ASYNC_PROCESSING", "to_state": state})
            o_rows.append(
                {
                    "id": pk,
                    "order_id": order_id,
                    "insurer": INSURERS[pk % len(INSURERS)],
                    "operation": OPERATIONS[(pk // 7) % len(OPERATIONS)],
                    "payload": {"premium": pk % 997},
                    "request_hash": "0" * 64,
                    "state": state,
                    "attempts": calls,
                    "next_attempt_at": due,
                    "lease_owner": None,
                    "lease_until": None,
                    "last_outcome": "success" if state == "SUCCEEDED" else "failure",
                    "category": None if first_failure is None else a_rows[-1]["category"],
                    "result": None,
                    "first_failure_at": first_failure,
                    "created_at": created,
                    "updated_at": updated,
                }
            )
        for row in t_rows:
            row.update(reason="bench", actor="bench")
        yield o_rows, a_rows, t_rows


def fill(engine: sa.Engine, n_orders: int, days: float, now: dt.datetime) -> dict[str, int]:
    counts = {"orders": 0, "attempts": 0, "transitions": 0}
    for o_rows, a_rows, t_rows in generate(n_orders, days, now):
        with engine.begin() as conn:
            conn.execute(sa.insert(orders), o_rows)
            conn.execute(sa.insert(attempts), a_rows)
            conn.execute(sa.insert(transitions), t_rows)
        counts["orders"] += len(o_rows)
        counts["attempts"] += len(a_rows)
        counts["transitions"] += len(t_rows)
        print(f"\r  {counts['orders']:,} orders", end="", flush=True)
    print()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.setval(sa.func.pg_get_serial_sequence("orders", "id"), n_orders)))
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    return counts


def pages(now: dt.datetime) -> list[tuple[str, str]]:
    start = (now - dt.timedelta(hours=30)).strftime("%Y-%m-%dT%H:%M")
    end = (now - dt.timedelta(hours=6)).strftime("%Y-%m-%dT%H:%M")
    return [
        ("overview (24 h)", "/console/"),
        ("overview (7 days)", "/console/?hours=168"),
        ("orders, newest", "/console/orders"),
        ("orders, DEAD", "/console/orders?state=DEAD"),
        ("orders, FAILED + insurer", "/console/orders?state=FAILED&insurer=gamma"),
        ("orders, insurer + operation", "/console/orders?insurer=beta&operation=pay"),
        ("orders, time range", f"/console/orders?from={start}&to={end}"),
        ("orders, id prefix", "/console/orders?q=B00004242"),
        ("orders, page 2 (cursor)", "NEXT"),
        ("one order (DEAD, timeline)", "ORDER"),
        ("failures (24 h)", "/console/failures"),
        ("failures (7 days)", "/console/failures?hours=168"),
        ("model (7-day calibration)", "/console/model"),
    ]


def time_pages(url: str, now: dt.datetime, repeat: int) -> list[tuple[str, float, float, float, int]]:
    results = []
    with httpx.Client(base_url=url, timeout=60.0, trust_env=False) as client:
        first = client.get("/console/orders").text
        cursor = first.split('id="next-page"')[0].rsplit('href="', 1)[1].split('"')[0].replace("&amp;", "&")
        dead = client.get("/console/orders?state=DEAD").text.split('data-order="', 1)[1].split('"')[0]
        for label, path in pages(now):
            path = {"NEXT": f"/console/orders{cursor}", "ORDER": f"/console/orders/{dead}"}.get(path, path)
            started = time.perf_counter()
            client.get(path).raise_for_status()  # the first request: cold caches (console and database)
            first_ms = (time.perf_counter() - started) * 1000
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                response = client.get(path)
                times.append((time.perf_counter() - started) * 1000)
                response.raise_for_status()
            results.append((label, first_ms, statistics.median(times), max(times), len(response.content)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db-url", default=None, help="postgresql://... (default: a new SQLite file)")
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=14.0)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the filled database")
    parser.add_argument("--reuse-sqlite", type=Path, default=None, help="serve this filled SQLite file")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="console-bench-"))
    db_url, admin, schema = args.db_url or f"sqlite:///{work}/bench.db", None, "console_bench"
    if args.reuse_sqlite is not None:
        db_url = f"sqlite:///{args.reuse_sqlite}"
    if db_url.startswith("postgres"):
        admin = sa.create_engine(
            db_url.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
        )
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        db_url += ("&" if "?" in db_url else "?") + f"options=-csearch_path%3D{schema}"
    print(f"# console benchmark — {platform.machine()}, python {platform.python_version()}, {db_url.split(':')[0]}")
    engine = create_db_engine(db_url)
    migrate(engine)
    now = dt.datetime.now(dt.UTC)
    if args.reuse_sqlite is None:
        started = time.perf_counter()
        counts = fill(engine, args.orders, args.days, now)
        print(f"filled {counts} in {time.perf_counter() - started:.0f} s ({args.orders / args.days:,.0f} orders/day)")
    else:
        with engine.connect() as conn:
            newest = conn.execute(sa.select(sa.func.max(orders.c.created_at))).scalar_one()
        now = dt.datetime.fromisoformat(str(newest)).replace(tzinfo=dt.UTC)
    engine.dispose()
    registry = work / "models"
    save_artifact(toy_classifier(), registry, version="bench-toy", data={"rows": 3000})
    activate(registry, "bench-toy")
    port = free_port()
    argv = [sys.executable, "-m", "service", "serve", "--port", str(port), "--db-url", db_url]
    argv += ["--model-dir", str(registry)]
    env = child_env({"ASYNCGATE_DRIFT_CALIBRATION_WINDOW_S": "3600"})
    server = start_process(argv, port=port, log_path=work / "serve.log", env=env)
    try:
        results = time_pages(server.url, now, args.repeat)
    finally:
        server.stop()
    print("\n| page | first ms | median ms | slowest ms | bytes |\n|---|---:|---:|---:|---:|")
    for label, first, median, slowest, size in results:
        print(f"| {label} | {first:.0f} | {median:.0f} | {slowest:.0f} | {size:,} |")
    if admin is not None and not args.keep:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    print(f"\n(database kept at {db_url})" if args.keep else "")


if __name__ == "__main__":
    main()
