"""A partly degraded insurer: every order fails twice with a transient error, then succeeds (issue 12).

    .venv/bin/python -m bench.degraded [--orders 1000] [--workers 4] [--guard adaptive breaker]
                                       [--seconds 240] [--pg-url URL] [--workdir DIR]

Per guard (ASYNCGATE_INSURER_GUARD): a fresh PostgreSQL schema; `--orders` orders seeded through
OrderStore after one failed call (ASYNC_PROCESSING, due at once), each scripted at the simulator to
answer its next call "系统繁忙" and the one after that with success; `--workers` `asyncgate worker`
processes with default settings except the retry schedule (0.1–0.5 s, as the issue measured). Every
second the ASYNC_PROCESSING count is read, until it is 0 or `--seconds` pass. Reported: seconds until
every order was final (or how many were still pending), the insurer's calls (its own ledger), calls per
order, and that no order was completed twice.
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    DEFAULT_WORKDIR,
    Section,
    command_line,
    ensure_model,
    now_iso,
    print_section,
    save_section,
    service_env,
)
from bench.process import DEFAULT_PG_URL, pg_schema
from bench.services import INSURER, insurers_file, simulator

SCRIPT = ["insurer_busy", "success"]  # after the seeded failure: fails twice, then succeeds


def seed(db_url: str, count: int) -> None:
    from service.store import NewAttempt, OrderState, OrderStore, create_db_engine, migrate

    engine = create_db_engine(db_url, pool_size=4)
    migrate(engine)
    store = OrderStore(engine)
    run_id = uuid.uuid4().hex[:8]

    def one(i: int) -> None:
        now = dt.datetime.now(dt.UTC)
        order, _ = store.reserve(
            f"deg-{run_id}-{i}",
            INSURER,
            "underwrite",
            {"n": i, "sim": {"script": SCRIPT}},
            f"{i:064d}",
            lease_owner="api:seed",
            lease_s=60,
            now=now,
        )
        failure = NewAttempt(
            kind="call",
            outcome="failure",
            latency_ms=800.0,
            error_message="系统繁忙，请稍后再试",
            http_status=503,
            async_eligible=True,
            probability=0.99,
            category="insurer_busy",
        )
        store.record_attempt(
            order.pk,
            failure,
            new_state=OrderState.ASYNC_PROCESSING,
            next_attempt_at=now,
            lease_owner="api:seed",
            reason="seeded",
            actor="api:seed",
            now=now,
            count_call=True,
        )

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, range(count)))
    engine.dispose()


def run_round(
    workdir: Path,
    registry: Path,
    insurers: Path,
    sim_url: str,
    pg_url: str,
    guard: str,
    orders: int,
    workers: int,
    seconds: float,
) -> list[Any]:
    from service.store import OrderStore, create_db_engine

    calls_before = httpx.get(f"{sim_url}/_sim/ledger", timeout=10).json()["calls"]
    with pg_schema(pg_url) as db_url:
        seed(db_url, orders)
        env = service_env(workdir, registry, db_url, insurers)
        env.update(
            {
                "ASYNCGATE_INSURER_GUARD": guard,
                "ASYNCGATE_RETRY_BASE_S": "0.1",
                "ASYNCGATE_RETRY_MAX_S": "0.5",
                "ASYNCGATE_LOG_LEVEL": "WARNING",
            }
        )
        logs = [(workdir / "logs" / f"degraded-{guard}-{i}.log").open("wb") for i in range(workers)]
        procs = [
            subprocess.Popen([sys.executable, "-m", "service", "worker"], env=env, stdout=log, stderr=subprocess.STDOUT)
            for log in logs
        ]
        engine = create_db_engine(db_url, pool_size=1)
        store = OrderStore(engine)
        start = time.perf_counter()
        pending = orders
        try:
            while time.perf_counter() - start < seconds:
                pending = store.counts_by_state()["ASYNC_PROCESSING"]
                if pending == 0:
                    break
                time.sleep(1.0)
            elapsed = time.perf_counter() - start
            states = store.counts_by_state()
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=30)
            for log in logs:
                log.close()
            engine.dispose()
    ledger = httpx.get(f"{sim_url}/_sim/ledger", timeout=10).json()
    calls = ledger["calls"] - calls_before
    doubled = sum(1 for key, n in ledger["completions"].items() if key.startswith("deg-") and n > 1)
    done = "all final" if pending == 0 else f"{pending} still pending"
    print(f"{guard}: {done} after {elapsed:.0f} s; {calls} calls; states {states}", flush=True)
    return [
        guard,
        orders,
        workers,
        round(elapsed, 1) if pending == 0 else f"> {seconds:.0f}",
        pending,
        states.get("SUCCEEDED", 0),
        calls,
        round(calls / orders, 2),
        doubled,
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--guard", nargs="+", default=["adaptive", "breaker"])
    parser.add_argument("--seconds", type=float, default=240.0)
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    args = parser.parse_args(argv)
    started, began = now_iso(), time.perf_counter()
    registry = ensure_model(args.workdir)
    (args.workdir / "logs").mkdir(parents=True, exist_ok=True)
    rows = []
    with simulator(args.workdir) as sim:
        insurers = insurers_file(args.workdir, sim.port)
        for guard in args.guard:
            rows.append(
                run_round(
                    args.workdir,
                    registry,
                    insurers,
                    f"http://127.0.0.1:{sim.port}",
                    args.pg_url,
                    guard,
                    args.orders,
                    args.workers,
                    args.seconds,
                )
            )
    section = Section(
        name="7-degraded-insurer",
        title="7. A partly degraded insurer: each order fails twice, then succeeds",
        command=command_line("bench.degraded", ["--orders", str(args.orders), "--workers", str(args.workers)]),
        columns=[
            "guard",
            "orders",
            "workers",
            "seconds to all final",
            "pending at the end",
            "SUCCEEDED",
            "insurer calls",
            "calls per order",
            "completed twice",
        ],
        rows=rows,
        goals=[],
        notes=[
            "Default worker settings except the retry schedule (ASYNCGATE_RETRY_BASE_S=0.1, MAX_S=0.5), the "
            "default retry budget (20 re-executions/s per insurer and worker process) included; PostgreSQL.",
            "Each order needs 2 more calls (one busy answer, then success): 2.0 calls per order is the minimum.",
        ],
        started=started,
        seconds=round(time.perf_counter() - began, 1),
    )
    print_section(section)
    save_section(args.workdir, section)


if __name__ == "__main__":
    main()
