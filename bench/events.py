"""Order events (docs/contract.md §8): webhook delivery rate, and what writing the event costs /process's writes.

    .venv/bin/python -m bench.events [--events 20000] [--processes 1 --processes 2] [--db postgresql --db sqlite]
                                     [--orders 3000] [--rounds 3] [--pg-url URL] [--doc docs/benchmarks.md]

Delivery: `--events` events (4 per order) are written to a fresh database, then `--processes` child
processes (`python -m bench.events deliver`, each running the service's own Deliverer, as `serve`
and `worker` do, concurrency 32) deliver them to a local receiver (`python -m bench.events receive`:
uvicorn with a bare ASGI app answering 204, checking every 50th signature with the standardwebhooks
library). The rate is the events delivered divided by the time from the first acknowledgement to the
last (`delivered_at` in the store), so process start-up is not counted; afterwards every order's
events must have been acknowledged in order.

Writing cost: the two write transactions of a successful /process (reserve, then record the
insurer's success: each writes a transition and now its event), from 8 threads on fresh orders,
with the event insert and with it replaced by nothing, alternating for `--rounds` rounds; the
figure is the median orders/s of each. /process also makes the insurer call and scores the
failure, so the share of /process's cost is at most the share measured here.

With `--doc`, the results replace the section between the markers below in that file (added at its
end when missing). PostgreSQL runs in throwaway schemas of `--pg-url`.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import itertools
import os
import platform
import random
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

BEGIN = "<!-- events:begin (bench/events.py writes this section) -->"
END = "<!-- events:end -->"
EVENTS_PER_ORDER = 4
STATES = ("ASYNC_PROCESSING", "FAILED", "ASYNC_PROCESSING", "SUCCEEDED")


# -- the child processes -------------------------------------------------------------------------------


def receive(port: int, secret: str) -> None:
    """A bare, fast receiver: 204 to every POST, every 50th signature verified (failures counted)."""
    import uvicorn
    from standardwebhooks.webhooks import Webhook, WebhookVerificationError

    webhook = Webhook(secret)
    stats = {"received": 0, "verified": 0, "bad": 0}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["method"] == "GET":
            payload = repr(stats).encode()
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(payload))]}
            )
            await send({"type": "http.response.body", "body": payload})
            return
        stats["received"] += 1
        if stats["received"] % 50 == 1:
            headers = {k.decode(): v.decode() for k, v in scope["headers"]}
            try:
                webhook.verify(body, headers)
                stats["verified"] += 1
            except WebhookVerificationError:
                stats["bad"] += 1
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def deliver(db_url: str, url: str, secret: str) -> None:
    """The service's Deliverer on `db_url` until SIGTERM."""
    import anyio

    from service.events.backoff import DeliveryBackoff
    from service.events.delivery import Deliverer, new_owner
    from service.events.signing import Signer
    from service.metrics import Metrics
    from service.store import OrderStore, create_db_engine

    async def main() -> None:
        engine = create_db_engine(db_url, pool_size=4, max_overflow=4)
        store = OrderStore(engine)
        deliverer = Deliverer(
            store.events,
            Signer.from_secret(secret),
            DeliveryBackoff(base_s=0.5, max_s=5, max_age_s=3600),
            Metrics(),
            url=url,
            owner=new_owner(),
            lease_s=60,
            batch=100,
            concurrency=16,
            timeout_s=10,
            poll_s=0.1,
        )
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(deliverer.run)
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    tasks.cancel_scope.cancel()
                    break
        engine.dispose()

    anyio.run(main)


# -- databases ---------------------------------------------------------------------------------------------


@contextmanager
def database(kind: str, pg_url: str) -> Iterator[str]:
    """A fresh, migrated database: a throwaway PostgreSQL schema or an SQLite file."""
    from service.store import create_db_engine, migrate

    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="asyncgate-events-") as folder:
            url = f"sqlite:///{folder}/events.db"
            engine = create_db_engine(url)
            migrate(engine)
            engine.dispose()
            yield url
        return
    schema = f"bench_events_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = f"{pg_url}{'&' if '?' in pg_url else '?'}options=-csearch_path%3D{schema}"
    try:
        engine = create_db_engine(url)
        migrate(engine)
        engine.dispose()
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def seed_events(db_url: str, count: int) -> None:
    """`count` pending events, EVENTS_PER_ORDER per order, written in bulk (the documents as the service makes them)."""
    from service.events.payload import encode_document, event_document, new_event_id
    from service.store import create_db_engine
    from service.store.tables import events, orders

    engine = create_db_engine(db_url)
    now = dt.datetime.now(dt.UTC)
    n_orders = count // EVENTS_PER_ORDER
    with engine.begin() as conn:
        conn.execute(
            sa.insert(orders),
            [
                {
                    "order_id": f"EV{i:07d}",
                    "insurer": "bench",
                    "operation": "underwrite",
                    "payload": {"i": i},
                    "request_hash": "h",
                    "state": "SUCCEEDED",
                    "attempts": 2,
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(n_orders)
            ],
        )
        pks = dict(conn.execute(sa.select(orders.c.order_id, orders.c.id)).all())
        rows = []
        for step, state in enumerate(STATES):  # an order's events in order: step by step over all orders
            for i in range(n_orders):
                order_id = f"EV{i:07d}"
                event_id = new_event_id(now)
                document = event_document(
                    event_id=event_id,
                    order_id=order_id,
                    insurer="bench",
                    operation="underwrite",
                    from_state=None if step == 0 else STATES[step - 1],
                    to_state=state,
                    attempts=step,
                    result={"policy_no": f"POL-{i}"},
                    failure=None,
                    at=now,
                )
                rows.append(
                    {
                        "event_id": event_id,
                        "order_pk": pks[order_id],
                        "order_id": order_id,
                        "to_state": state,
                        "at": now,
                        "body": encode_document(document),
                        "next_attempt_at": now,
                    }
                )
        for start in range(0, len(rows), 5000):
            conn.execute(sa.insert(events), rows[start : start + 5000])
    with engine.begin() as conn:  # what autovacuum would have done by then: the planner's row counts
        conn.exec_driver_sql("ANALYZE events" if engine.dialect.name == "postgresql" else "ANALYZE")
    engine.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1, trust_env=False)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def delivery_run(kind: str, pg_url: str, events_n: int, processes: int) -> dict[str, Any]:
    from service.store.tables import events

    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    with database(kind, pg_url) as db_url:
        seed_events(db_url, events_n)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCGATE_")}
        me = [sys.executable, "-m", "bench.events"]
        receiver = subprocess.Popen([*me, "receive", "--port", str(port), "--secret", secret], env=env)
        children = []
        try:
            wait_http(f"http://127.0.0.1:{port}/")
            children = [
                subprocess.Popen(
                    [*me, "deliver", "--db-url", db_url, "--url", f"http://127.0.0.1:{port}/hook", "--secret", secret],
                    env=env,
                )
                for _ in range(processes)
            ]
            engine = sa.create_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1))
            delivered = sa.select(sa.func.count()).select_from(events).where(events.c.delivery_state == "delivered")
            deadline = time.monotonic() + 600
            with engine.connect() as conn:
                while conn.execute(delivered).scalar_one() < events_n:
                    conn.rollback()
                    if time.monotonic() > deadline:
                        raise RuntimeError("delivery did not finish in 600 s")
                    time.sleep(0.2)
            stats = httpx.get(f"http://127.0.0.1:{port}/", trust_env=False).text
            with engine.connect() as conn:
                first, last = conn.execute(
                    sa.select(sa.func.min(events.c.delivered_at), sa.func.max(events.c.delivered_at))
                ).one()
                rows = conn.execute(
                    sa.select(events.c.order_pk, events.c.id, events.c.delivered_at).order_by(
                        events.c.order_pk, events.c.id
                    )
                ).all()
            engine.dispose()
            first, last = _time(first), _time(last)
            in_order = all(
                a.order_pk != b.order_pk or _time(a.delivered_at) <= _time(b.delivered_at)
                for a, b in itertools.pairwise(rows)
            )
            seconds = (last - first).total_seconds()
            return {
                "db": kind,
                "processes": processes,
                "events": events_n,
                "seconds": round(seconds, 2),
                "rate": round((events_n - 1) / seconds) if seconds > 0 else None,
                "in_order": in_order,
                "receiver": stats,
            }
        finally:
            for child in [*children, receiver]:
                child.send_signal(signal.SIGTERM)
            for child in [*children, receiver]:
                try:
                    child.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    child.kill()


def _time(value: Any) -> dt.datetime:
    """A datetime from the store (SQLite's aggregates come back as text), aware UTC."""
    moment = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


# -- writing cost ---------------------------------------------------------------------------------------------


def write_cost(kind: str, pg_url: str, orders_n: int, rounds: int) -> dict[str, Any]:
    """Orders/s of reserve + record_attempt(SUCCEEDED) from 8 threads, with and without the event insert."""
    from service.store import NewAttempt, OrderState, OrderStore, create_db_engine, queries

    original = queries.insert_event
    threads = 8
    results: dict[str, list[float]] = {"with events": [], "without events": []}
    with database(kind, pg_url) as db_url:
        engine = create_db_engine(db_url, pool_size=threads, max_overflow=0)
        store = OrderStore(engine)

        def one_run(label: str, tag: str) -> float:
            queries.insert_event = original if label == "with events" else (lambda conn, **values: None)  # type: ignore[assignment]
            per_thread = orders_n // threads

            def work(t: int) -> None:
                for i in range(per_thread):
                    now = dt.datetime.now(dt.UTC)
                    order_id = f"{tag}-{t}-{i}"
                    order, _ = store.reserve(
                        order_id, "bench", "underwrite", {"i": i}, "h" * 64, lease_owner="api", lease_s=30, now=now
                    )
                    store.record_attempt(
                        order.pk,
                        NewAttempt(kind="call", outcome="success", latency_ms=5.0),
                        new_state=OrderState.SUCCEEDED,
                        next_attempt_at=None,
                        lease_owner="api",
                        reason="insurer succeeded",
                        actor="api",
                        result={"policy_no": order_id},
                        now=now,
                        count_call=True,
                    )

            pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
            started = time.perf_counter()
            for thread in pool:
                thread.start()
            for thread in pool:
                thread.join()
            return per_thread * threads / (time.perf_counter() - started)

        try:
            one_run("with events", "warm")
            for r in range(rounds):
                order = ["with events", "without events"] if r % 2 == 0 else ["without events", "with events"]
                for label in order:
                    results[label].append(one_run(label, f"r{r}-{'with' if label == 'with events' else 'without'}"))
        finally:
            queries.insert_event = original
            engine.dispose()
    with_events = statistics.median(results["with events"])
    without = statistics.median(results["without events"])
    return {
        "db": kind,
        "orders": orders_n,
        "rounds": rounds,
        "with": round(with_events),
        "without": round(without),
        "all_with": [round(x) for x in results["with events"]],
        "all_without": [round(x) for x in results["without events"]],
        "cost_pct": round(100 * (without / with_events - 1), 1),
    }


# -- report ---------------------------------------------------------------------------------------------------


def section(deliveries: list[dict[str, Any]], costs: list[dict[str, Any]], command: str, took_s: float) -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    cpus = os.cpu_count()
    lines = [
        BEGIN,
        "## Order events: delivery rate and the cost of writing them (issue 13: `bench/events.py`)",
        "",
        f"`{command}` — run {stamp}, took {took_s:.0f} s, {platform.python_version()}, {cpus} cores "
        "(shared with the database, the receiver and, at the time, other engineers' work).",
        "",
        "Webhook delivery to a local receiver (uvicorn, bare ASGI app, 204), events 4 per order, each process",
        "the service's own Deliverer (concurrency 16, claims of up to 100); rate = events / (last − first ack):",
        "",
        "| database | processes | events | seconds | events/s | in order per order | receiver |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for d in deliveries:
        lines.append(
            f"| {d['db']} | {d['processes']} | {d['events']:,} | {d['seconds']} | {d['rate']:,} | "
            f"{'yes' if d['in_order'] else '**no**'} | `{d['receiver']}` |"
        )
    lines += [
        "",
        "The two write transactions of a successful /process (reserve; record the success), 8 threads, fresh",
        "orders, with the event insert and without it (median of the rounds, alternating):",
        "",
        "| database | orders per round | rounds | with events (orders/s) | without (orders/s) | cost of the events "
        "| every round, with / without |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in costs:
        lines.append(
            f"| {c['db']} | {c['orders']:,} | {c['rounds']} | {c['with']:,} | {c['without']:,} | {c['cost_pct']}% | "
            f"{c['all_with']} / {c['all_without']} |"
        )
    goals = []
    for d in deliveries:
        if d["processes"] == 2 and d["rate"] is not None:
            met = "met" if d["rate"] >= 500 else "**missed**"
            goals.append(
                f"- Goal: delivery ≥ 500 events/s with two processes ({d['db']}) — measured {d['rate']:,}/s: {met}"
            )
    for c in costs:
        spread = max(max(v) / min(v) for v in (c["all_with"], c["all_without"]) if min(v) > 0)
        met = "met" if c["cost_pct"] <= 10 else "**missed**"
        if spread > 1.5:  # the rounds differ more than any effect of one insert: say so rather than claim it
            met = f"**inconclusive** (rounds differ up to {spread:.1f}x: the machine was busy)"
        goals.append(
            f"- Goal: writing the event adds ≤ 10% to /process ({c['db']}) — measured {c['cost_pct']}% of the store's "
            f"writes alone, an upper bound on the share of /process (which also calls the insurer and scores): {met}"
        )
    lines += ["", *goals, END]
    return "\n".join(lines) + "\n"


def write_doc(path: Path, text: str) -> None:
    current = path.read_text(encoding="utf-8") if path.exists() else ""
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END) + r"\n?", re.S)
    updated = pattern.sub(lambda _: text, current) if pattern.search(current) else current.rstrip("\n") + "\n\n" + text
    path.write_text(updated, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    r = sub.add_parser("receive")
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--secret", required=True)
    d = sub.add_parser("deliver")
    d.add_argument("--db-url", required=True)
    d.add_argument("--url", required=True)
    d.add_argument("--secret", required=True)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--processes", type=int, action="append")
    parser.add_argument("--db", action="append", choices=("postgresql", "sqlite"))
    parser.add_argument("--orders", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--doc", type=Path)
    args = parser.parse_args()
    if args.command == "receive":
        receive(args.port, args.secret)
        return
    if args.command == "deliver":
        deliver(args.db_url, args.url, args.secret)
        return
    random.seed(0)
    started = time.monotonic()
    dbs = args.db or ["postgresql", "sqlite"]
    deliveries = []
    for kind in dbs:
        for processes in args.processes or [1, 2]:
            result = delivery_run(kind, args.pg_url, args.events, processes)
            print(result, flush=True)
            deliveries.append(result)
    costs = []
    for kind in dbs:
        result = write_cost(kind, args.pg_url, args.orders, args.rounds)
        print(result, flush=True)
        costs.append(result)
    command = "python -m bench.events " + " ".join(sys.argv[1:])
    text = section(deliveries, costs, command.strip(), time.monotonic() - started)
    print(text)
    if args.doc:
        write_doc(args.doc, text)


if __name__ == "__main__":
    main()
