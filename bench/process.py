"""Benchmark 3: POST /process req/s on SQLite and on PostgreSQL against a fast simulator, vs the anchor.

    .venv/bin/python -m bench.process [--seconds 10] [--pg-url URL] [--workdir DIR]

One uvicorn worker per database; wrk (one thread, 32 connections) posts /process with a new
order_id on every request (a counter in the body) to an insurer served by `asyncgate
simulate-insurer --scenario fast` (no delay, every call succeeds), so each request is: reserve the
order, call the insurer over HTTP, record the outcome. The yardstick, in the same run against the
same simulator and database, is ../shared/bench/process_anchor.py (the least a durable /process
can do: asyncpg, aiohttp, one statement to reserve, one to record); /classify is loaded on the same
server too. PostgreSQL runs in a throwaway schema of `--pg-url`, dropped afterwards (the anchor's
own `a_*` tables are dropped before it starts).
Goals (issue 12): /process on PostgreSQL ≥ 60% of the anchor's req/s; on SQLite the ratio is reported.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from bench.common import (
    DEFAULT_WORKDIR,
    Goal,
    Section,
    Server,
    child_env,
    command_line,
    ensure_model,
    free_port,
    now_iso,
    print_section,
    ratio_goal,
    save_section,
    serving,
)
from bench.services import INSURER, failure_bodies, insurers_file, service, simulator, sqlite_url
from bench.wrk import Load, run_wrk

DEFAULT_PG_URL: Final = "postgresql://postgres@127.0.0.1:5432/test"
#: Share of the anchor's req/s /process must reach, per database (None: reported, no goal).
GOALS: Final[dict[str, float | None]] = {"SQLite": None, "PostgreSQL": 0.60}
ANCHOR: Final = Path(__file__).resolve().parents[2] / "shared" / "bench" / "process_anchor.py"
CONNECTIONS: Final = 32
WARMUP_S: Final = 3


@contextmanager
def pg_schema(server_url: str) -> Iterator[str]:
    """A fresh schema in the server's database for this run (search_path set in the URL), dropped after."""
    import sqlalchemy as sa

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(
        server_url.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
    )
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in server_url else "?"
    try:
        yield f"{server_url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


def process_bodies(run_id: str) -> list[dict[str, Any]]:
    payload = {"applicant": {"name": "张三", "age": 35}, "product": "term-life-20", "premium": 1234.5}
    return [
        {"order_id": f"{run_id}-{i}-", "insurer": INSURER, "operation": "underwrite", "payload": payload}
        for i in range(4)
    ]


@contextmanager
def anchor(workdir: Path, insurer_url: str, pg_url: str) -> Iterator[Server]:
    """The anchor app (one uvicorn process) on a fresh set of its `a_*` tables in `pg_url`'s database."""
    import sqlalchemy as sa

    engine = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS a_orders, a_attempts, a_transitions"))
    engine.dispose()
    port = free_port()
    argv = [sys.executable, str(ANCHOR), "--port", str(port), "--insurer", insurer_url, "--dsn", pg_url]
    log = workdir / "logs" / f"anchor-{port}.log"
    with serving(argv, port=port, log=log, ready_path="/docs", env=child_env()) as server:
        yield server


def load_process(url: str, seconds: int) -> Load:
    """wrk on /process after a warm-up, every request a new order."""
    run_wrk(
        url,
        "/process",
        process_bodies(f"w{uuid.uuid4().hex[:8]}"),
        connections=CONNECTIONS,
        seconds=WARMUP_S,
        unique_field="order_id",
    )
    bodies = process_bodies(f"b{uuid.uuid4().hex[:8]}")
    return run_wrk(url, "/process", bodies, connections=CONNECTIONS, seconds=seconds, unique_field="order_id")


def benchmark(workdir: Path, seconds: int, pg_url: str) -> Section:
    started, began = now_iso(), time.perf_counter()
    registry = ensure_model(workdir)
    classify_bodies = failure_bodies(1_000, seed=41)
    rows: list[list[Any]] = []
    goals: list[Goal] = []
    with simulator(workdir) as sim, pg_schema(pg_url) as pg, anchor(workdir, sim.url, pg_url) as yardstick:
        insurers = insurers_file(workdir, sim.port)
        for name, db_url in (("SQLite", sqlite_url(workdir, "process")), ("PostgreSQL", pg)):
            with service(workdir, registry, db_url, insurers=insurers) as svc:
                run_wrk(svc.url, "/classify", classify_bodies, connections=CONNECTIONS, seconds=WARMUP_S)
                classify = run_wrk(svc.url, "/classify", classify_bodies, connections=CONNECTIONS, seconds=seconds)
                # the anchor right before and right after, so that both see the same machine
                before = load_process(yardstick.url, seconds)
                process = load_process(svc.url, seconds)
                after = load_process(yardstick.url, seconds)
            anchored = (before.rps + after.rps) / 2
            ratio = process.rps / anchored
            rows.append(
                [
                    name,
                    "anchor /process (before, after)",
                    f"{round(before.rps)}, {round(after.rps)}",
                    round(max(before.p50_ms, after.p50_ms), 2),
                    round(max(before.p99_ms, after.p99_ms), 2),
                    "100%",
                    before.errors + after.errors,
                ]
            )
            rows.append(
                [
                    name,
                    "/classify",
                    round(classify.rps),
                    round(classify.p50_ms, 2),
                    round(classify.p99_ms, 2),
                    f"{classify.rps / anchored:.0%}",
                    classify.errors,
                ]
            )
            rows.append(
                [
                    name,
                    "/process",
                    round(process.rps),
                    round(process.p50_ms, 2),
                    round(process.p99_ms, 2),
                    f"{ratio:.0%}",
                    process.errors,
                ]
            )
            goal = GOALS[name]
            if goal is not None:
                goals.append(ratio_goal(f"/process on {name} ≥ {goal:.0%} of the anchor", ratio, goal, percent=True))
    return Section(
        name="3-process",
        title="3. /process on SQLite and PostgreSQL against a fast simulator and the anchor (one worker, 32 conn.)",
        command=command_line("bench.process", ["--seconds", str(seconds)]),
        columns=["database", "endpoint", "req/s", "p50 ms", "p99 ms", "of the anchor", "errors"],
        rows=rows,
        goals=goals,
        notes=[
            f"{seconds} s per row after a {WARMUP_S} s warm-up; every /process is a new order that succeeds at the "
            "simulator (reserve, 1 HTTP call, record).",
            "The anchor (../shared/bench/process_anchor.py: asyncpg, aiohttp, 2 statements) runs against the same "
            "simulator and PostgreSQL server in the same run, loaded right before and right after each /process "
            "row; ratios are to the mean of the two.",
            "The simulator runs on the same 2 cores as the service, the database and wrk.",
        ],
        started=started,
        seconds=round(time.perf_counter() - began, 1),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    args = parser.parse_args(argv)
    section = benchmark(args.workdir, args.seconds, args.pg_url)
    save_section(args.workdir, section)
    print_section(section)


if __name__ == "__main__":
    main()
