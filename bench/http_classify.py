"""Benchmark 1: POST /classify against a bare FastAPI endpoint with the same body, side by side.

    .venv/bin/python -m bench.http_classify [--seconds 5] [--rounds 3] [--workdir DIR]

Both servers are one uvicorn worker started the same way; wrk (one thread) loads them in turn at 1
and 32 connections, `--rounds` times `--seconds` each, after a short warm-up, with 1,000 generated
failures as bodies in rotation (real failure streams repeat, so after the first round the
scorer's caches are warm).
Then a row sends a new raw message with every request (a counter appended to the message), so
every request pays message normalization, and a last one loads `asyncgate serve --workers 2` (two
processes; on this 2-core machine wrk takes a share of the cores too). Goals: /classify ≥ 60% of the bare req/s at 32
connections and p99 ≤ 2x the bare p99.
"""

from __future__ import annotations

import argparse
import time
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
from bench.services import bare, failure_bodies, service, service_processes, sqlite_url
from bench.wrk import Load, run_wrk

RPS_GOAL: Final = 0.60
P99_GOAL: Final = 2.0
WARMUP_S: Final = 3
ROUNDS: Final = 3


def _row(target: str, connections: int, load: Load, bare_load: Load | None) -> list[Any]:
    ratio = "" if bare_load is None else f"{load.rps / bare_load.rps:.0%}"
    return [target, connections, round(load.rps), round(load.p50_ms, 2), round(load.p99_ms, 2), ratio, load.errors]


def median_load(loads: list[Load]) -> Load:
    """The run with the median req/s (its own percentiles with it)."""
    return sorted(loads, key=lambda load: load.rps)[len(loads) // 2]


def side_by_side(
    base_url: str, ours_url: str, bodies: list[dict[str, Any]], connections: int, seconds: int, rounds: int
) -> tuple[Load, Load]:
    """Alternate bare and ours `rounds` times (`seconds` each, after one warm-up of each); median runs.

    Alternating in short rounds keeps both servers under the same background load on a shared
    machine, which one long run each does not."""
    for url in (base_url, ours_url):
        run_wrk(url, "/classify", bodies, connections=connections, seconds=WARMUP_S)
    base, ours = [], []
    for _ in range(rounds):
        base.append(run_wrk(base_url, "/classify", bodies, connections=connections, seconds=seconds))
        ours.append(run_wrk(ours_url, "/classify", bodies, connections=connections, seconds=seconds))
    return median_load(base), median_load(ours)


def benchmark(workdir: Path, seconds: int, rounds: int = ROUNDS) -> Section:
    started, began = now_iso(), time.perf_counter()
    registry = ensure_model(workdir)
    bodies = failure_bodies(1_000, seed=41)
    rows: list[list[Any]] = []
    goals: list[Goal] = []
    last_base: Load | None = None
    with bare(workdir) as yardstick, service(workdir, registry, sqlite_url(workdir, "classify")) as svc:
        for connections in (1, 32):
            base, ours = side_by_side(yardstick.url, svc.url, bodies, connections, seconds, rounds)
            rows.append(_row("bare FastAPI", connections, base, None))
            rows.append(_row("asyncgate /classify", connections, ours, base))
            if connections == 32:
                goals.append(
                    ratio_goal("/classify req/s ≥ 60% of bare (32 conn.)", ours.rps / base.rps, RPS_GOAL, percent=True)
                )
                goals.append(
                    ratio_goal(
                        "/classify p99 ≤ 2x bare p99 (32 conn.)",
                        ours.p99_ms / base.p99_ms,
                        P99_GOAL,
                        higher_is_better=False,
                        unit="x",
                    )
                )
                fresh = run_wrk(
                    svc.url,
                    "/classify",
                    bodies,
                    connections=connections,
                    seconds=seconds * rounds,
                    unique_field="error_message",
                )
                rows.append(_row("asyncgate /classify, every message new", connections, fresh, base))
                last_base = base
    with service_processes(workdir, registry, sqlite_url(workdir, "classify-2w"), 2) as two:
        run_wrk(two.url, "/classify", bodies, connections=32, seconds=WARMUP_S)
        scaled = run_wrk(two.url, "/classify", bodies, connections=32, seconds=seconds * rounds)
        rows.append(_row("asyncgate serve --workers 2", 32, scaled, last_base))
    return Section(
        name="1-classify",
        title="1. /classify against a bare FastAPI endpoint (one uvicorn worker each, wrk -t1)",
        command=command_line("bench.http_classify", ["--seconds", str(seconds), "--rounds", str(rounds)]),
        columns=["server", "connections", "req/s", "p50 ms", "p99 ms", "of bare", "errors"],
        rows=rows,
        goals=goals,
        notes=[
            f"Bare and asyncgate alternate {rounds} times, {seconds} s each after a {WARMUP_S} s warm-up; each row "
            "is the median run. Bodies: 1,000 generated failures in rotation.",
            "wrk shares the 2 cores with the server; compare ratios within one run, not across runs.",
        ],
        started=started,
        seconds=round(time.perf_counter() - began, 1),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=5, help="seconds per round")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    args = parser.parse_args(argv)
    section = benchmark(args.workdir, args.seconds, args.rounds)
    save_section(args.workdir, section)
    print_section(section)


if __name__ == "__main__":
    main()
