"""A partly degraded insurer: every order fails twice with a transient error, then succeeds (issue 12).

    .venv/bin/python -m bench.degraded [--orders 1000] [--round GUARD:STATE:SERVES:WORKERS ...]
                                       [--no-kill] [--seconds 240] [--pg-url URL] [--workdir DIR]

Per round: a fresh PostgreSQL schema; `--orders` orders seeded through OrderStore after one failed
call (ASYNC_PROCESSING, due at once), each scripted at the simulator to answer its next call "系统繁忙"
and the one after that with success; SERVES `asyncgate serve` and WORKERS `asyncgate worker` processes
with default settings except the retry schedule (0.1–0.5 s, as the issue measured), the guard
(ASYNCGATE_INSURER_GUARD) and STATE: `shared` (the default: one throttle figure and one retry budget
per insurer for all processes, through the database) or `local` (each process its own, as before).
With several workers one is SIGKILLed when 40% of the orders are final (unless --no-kill). Every
half second the ASYNC_PROCESSING count and the insurer's calls are read, until no order is pending or
`--seconds` pass. Reported: seconds until every order was final (or how many were still pending), the
insurer's calls (its own ledger), calls per order, the mean and the worst 5-second call rate against
the fleet's budget, and that no order was completed twice.
"""

from __future__ import annotations

import argparse
import datetime as dt
import signal
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
    free_port,
    now_iso,
    print_section,
    save_section,
    service_env,
    start_server,
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


def worst_rate(samples: list[tuple[float, int]], window_s: float) -> float:
    """The highest calls per second over any stretch of at least `window_s` between two samples."""
    worst = 0.0
    for i, (t0, c0) in enumerate(samples):
        for t1, c1 in samples[i + 1 :]:
            if t1 - t0 >= window_s:
                worst = max(worst, (c1 - c0) / (t1 - t0))
                break  # the shortest stretch from t0 is the most telling
    return worst


def run_round(
    workdir: Path,
    registry: Path,
    insurers: Path,
    sim_url: str,
    pg_url: str,
    guard: str,
    shared: bool,
    orders: int,
    serves: int,
    workers: int,
    seconds: float,
    kill: bool,
) -> list[Any]:
    from service.config import Settings
    from service.store import OrderStore, create_db_engine

    defaults = Settings()
    calls_before = httpx.get(f"{sim_url}/_sim/ledger", timeout=10).json()["calls"]
    label = f"{guard}-{'shared' if shared else 'local'}-{serves}s{workers}w"
    with pg_schema(pg_url) as db_url:
        seed(db_url, orders)
        env = service_env(workdir, registry, db_url, insurers)
        env.update(
            {
                "ASYNCGATE_INSURER_GUARD": guard,
                "ASYNCGATE_SHARED_STATE": "true" if shared else "false",
                "ASYNCGATE_RETRY_BASE_S": "0.1",
                "ASYNCGATE_RETRY_MAX_S": "0.5",
                "ASYNCGATE_LOG_LEVEL": "WARNING",
            }
        )
        servers = []
        for _ in range(serves):
            port = free_port()
            argv = [sys.executable, "-m", "service", "serve", "--port", str(port)]
            log_path = workdir / "logs" / f"degraded-{label}-serve-{port}.log"
            servers.append(start_server(argv, port=port, log=log_path, ready_path="/readyz", env=env))
        logs = [(workdir / "logs" / f"degraded-{label}-{i}.log").open("wb") for i in range(workers)]
        procs = [
            subprocess.Popen([sys.executable, "-m", "service", "worker"], env=env, stdout=log, stderr=subprocess.STDOUT)
            for log in logs
        ]
        engine = create_db_engine(db_url, pool_size=1)
        store = OrderStore(engine)
        start = time.perf_counter()
        pending = orders
        samples: list[tuple[float, int]] = []
        killed_at = None
        try:
            while time.perf_counter() - start < seconds:
                now = time.perf_counter()
                seen = httpx.get(f"{sim_url}/_sim/ledger", timeout=10).json()["calls"] - calls_before
                samples.append(((now + time.perf_counter()) / 2, seen))  # the ledger's time: mid-request
                pending = store.counts_by_state()["ASYNC_PROCESSING"]
                if pending == 0:
                    break
                if kill and killed_at is None and workers > 1 and pending <= orders * 0.6:
                    procs[0].send_signal(signal.SIGKILL)  # midway: its leased orders come back after the lease
                    procs[0].wait(timeout=10)
                    killed_at = now - start
                time.sleep(0.5)
            elapsed = time.perf_counter() - start
            states = store.counts_by_state()
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
            for proc in procs:
                proc.wait(timeout=30)
            for log in logs:
                log.close()
            for server in servers:
                server.stop()
            engine.dispose()
    ledger = httpx.get(f"{sim_url}/_sim/ledger", timeout=10).json()
    calls = ledger["calls"] - calls_before
    doubled = sum(1 for key, n in ledger["completions"].items() if key.startswith("deg-") and n > 1)
    # what the fleet is allowed (seeded orders: no first calls, so the floor)
    budget = defaults.retry_rate_per_s * (1 if shared else workers)
    mean = calls / elapsed
    worst = worst_rate(samples, 5.0)
    done = "all final" if pending == 0 else f"{pending} still pending"
    print(
        f"{label}: {done} after {elapsed:.0f} s; {calls} calls ({mean:.1f}/s, worst 5 s {worst:.1f}/s, fleet budget "
        f"{budget:g}/s); killed a worker at {killed_at}; states {states}",
        flush=True,
    )
    return [
        guard,
        "fleet" if shared else "per process",
        f"{serves} + {workers}",
        "yes" if killed_at is not None else "no",
        orders,
        round(elapsed, 1) if pending == 0 else f"> {seconds:.0f}",
        pending,
        states.get("SUCCEEDED", 0),
        calls,
        round(calls / orders, 2),
        round(mean, 1),
        round(worst, 1),
        budget,
        doubled,
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument(
        "--round",
        dest="rounds",
        action="append",
        help="GUARD:STATE:SERVES:WORKERS, STATE shared or local (repeatable); "
        "default adaptive:shared:2:3, adaptive:shared:0:1, adaptive:local:2:3",
    )
    parser.add_argument("--no-kill", action="store_true", help="do not SIGKILL a worker midway")
    parser.add_argument("--seconds", type=float, default=240.0)
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    args = parser.parse_args(argv)
    rounds = args.rounds or ["adaptive:shared:2:3", "adaptive:shared:0:1", "adaptive:local:2:3"]
    started, began = now_iso(), time.perf_counter()
    registry = ensure_model(args.workdir)
    (args.workdir / "logs").mkdir(parents=True, exist_ok=True)
    rows = []
    with simulator(args.workdir) as sim:
        insurers = insurers_file(args.workdir, sim.port)
        for spec in rounds:
            guard, state, serves, workers = spec.split(":")
            rows.append(
                run_round(
                    args.workdir,
                    registry,
                    insurers,
                    f"http://127.0.0.1:{sim.port}",
                    args.pg_url,
                    guard,
                    state == "shared",
                    args.orders,
                    int(serves),
                    int(workers),
                    args.seconds,
                    not args.no_kill,
                )
            )
    section = Section(
        name="7-degraded-insurer",
        title="7. A partly degraded insurer: each order fails twice, then succeeds",
        command=command_line("bench.degraded", ["--orders", str(args.orders)]),
        columns=[
            "guard",
            "insurer state",
            "serve + worker processes",
            "worker SIGKILLed",
            "orders",
            "seconds to all final",
            "pending at the end",
            "SUCCEEDED",
            "insurer calls",
            "calls per order",
            "calls/s (mean)",
            "calls/s (worst 5 s)",
            "fleet budget/s",
            "completed twice",
        ],
        rows=rows,
        goals=[],
        notes=[
            "Default settings except the retry schedule (ASYNCGATE_RETRY_BASE_S=0.1, MAX_S=0.5), PostgreSQL; orders "
            "seeded after one failed call, so every call counted is a re-execution (no first-call traffic: the "
            "budget is its floor, ASYNCGATE_RETRY_RATE_PER_S=20). 'fleet': one budget and one throttle figure for "
            "all processes (ASYNCGATE_SHARED_STATE=true, the default); 'per process': each its own (false, the "
            "behaviour before), so N workers may send N x the budget.",
            "Each order needs 2 more calls (one busy answer, then success): 2.0 calls per order is the minimum. "
            "'worst 5 s' is the highest rate over any 5 s stretch of the run; one burst (20) is allowed on top.",
        ],
        started=started,
        seconds=round(time.perf_counter() - began, 1),
    )
    print_section(section)
    save_section(args.workdir, section)


if __name__ == "__main__":
    main()
