"""Benchmark 3: POST /process req/s on SQLite and on PostgreSQL against a fast simulator, vs /classify.

    .venv/bin/python -m bench.process [--seconds 10] [--pg-url URL] [--workdir DIR]

One uvicorn worker per database; wrk (one thread, 32 connections) posts /process with a new
order_id on every request (a counter in the body) to an insurer served by `asyncgate
simulate-insurer --scenario fast` (no delay, every call succeeds), so each request is: reserve the
order, call the insurer over HTTP, record the outcome. /classify is loaded on the same server in the
same run for the ratio. PostgreSQL runs in a throwaway schema of `--pg-url`, dropped afterwards.
Goals: /process ≥ 30% of /classify's req/s on SQLite, ≥ 40% on PostgreSQL.
"""

from __future__ import annotations

import argparse
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
    command_line,
    ensure_model,
    now_iso,
    print_section,
    ratio_goal,
    save_section,
)
from bench.services import INSURER, failure_bodies, insurers_file, service, simulator, sqlite_url
from bench.wrk import run_wrk

DEFAULT_PG_URL: Final = "postgresql://postgres@127.0.0.1:5432/test"
GOALS: Final = {"SQLite": 0.30, "PostgreSQL": 0.40}
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


def benchmark(workdir: Path, seconds: int, pg_url: str) -> Section:
    started, began = now_iso(), time.perf_counter()
    registry = ensure_model(workdir)
    classify_bodies = failure_bodies(1_000, seed=41)
    rows: list[list[Any]] = []
    goals: list[Goal] = []
    with simulator(workdir) as sim, pg_schema(pg_url) as pg:
        insurers = insurers_file(workdir, sim.port)
        for name, db_url in (("SQLite", sqlite_url(workdir, "process")), ("PostgreSQL", pg)):
            with service(workdir, registry, db_url, insurers=insurers) as svc:
                run_wrk(svc.url, "/classify", classify_bodies, connections=CONNECTIONS, seconds=WARMUP_S)
                classify = run_wrk(svc.url, "/classify", classify_bodies, connections=CONNECTIONS, seconds=seconds)
                warm = process_bodies(f"w{uuid.uuid4().hex[:8]}")
                run_wrk(svc.url, "/process", warm, connections=CONNECTIONS, seconds=WARMUP_S, unique_field="order_id")
                bodies = process_bodies(f"b{uuid.uuid4().hex[:8]}")
                process = run_wrk(
                    svc.url, "/process", bodies, connections=CONNECTIONS, seconds=seconds, unique_field="order_id"
                )
            ratio = process.rps / classify.rps
            rows.append(
                [
                    name,
                    "/classify",
                    round(classify.rps),
                    round(classify.p50_ms, 2),
                    round(classify.p99_ms, 2),
                    "",
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
            goals.append(
                ratio_goal(f"/process on {name} ≥ {GOALS[name]:.0%} of /classify", ratio, GOALS[name], percent=True)
            )
    return Section(
        name="3-process",
        title="3. /process on SQLite and PostgreSQL against a fast simulator (one uvicorn worker, 32 connections)",
        command=command_line("bench.process", ["--seconds", str(seconds)]),
        columns=["database", "endpoint", "req/s", "p50 ms", "p99 ms", "of /classify", "errors"],
        rows=rows,
        goals=goals,
        notes=[
            f"{seconds} s per row after a {WARMUP_S} s warm-up; every /process is a new order that succeeds at the "
            "simulator (2 write transactions + 1 HTTP call each).",
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
