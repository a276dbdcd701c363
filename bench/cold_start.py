"""Benchmark 6: service cold start, process start to the first 200 from /readyz, with an existing artifact.

    .venv/bin/python -m bench.cold_start [--runs 5] [--workdir DIR]

Each run spawns `asyncgate serve` (the console script's module, `python -m service serve`) on a
free port with a trained model in the registry and a new SQLite file (so migrations run too), and
polls /readyz every 10 ms. Also measured in this process: loading the artifact alone
(`ServingModel.from_dir`: SHA-256 checks, the serving file's tables, FastScorer build; no scikit-learn,
no skops). Goal: ≤ 2 s (issue 12).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Final

from bench.common import (
    DEFAULT_WORKDIR,
    Section,
    command_line,
    ensure_model,
    free_port,
    now_iso,
    print_section,
    ratio_goal,
    save_section,
    service_env,
    start_server,
)
from bench.services import sqlite_url

GOAL_S: Final = 2.0


def model_load_s(registry: Path) -> float:
    from service.scoring import ServingModel

    started = time.perf_counter()
    ServingModel.from_dir(registry)
    return time.perf_counter() - started


def benchmark(workdir: Path, runs: int) -> Section:
    started, began = now_iso(), time.perf_counter()
    registry = ensure_model(workdir)
    times = []
    for run in range(runs):
        port = free_port()
        env = service_env(workdir, registry, sqlite_url(workdir, f"cold-{run}"))
        argv = [sys.executable, "-m", "service", "serve", "--port", str(port)]
        server = start_server(argv, port=port, log=workdir / "logs" / f"cold-{port}.log", ready_path="/readyz", env=env)
        server.stop()
        times.append(server.started_s)
        print(f"run {run + 1}: ready in {server.started_s:.2f}s", flush=True)
    times.sort()
    median = times[len(times) // 2]
    load = model_load_s(registry)
    rows: list[list[Any]] = [
        ["asyncgate serve → /readyz 200 (median)", round(median, 2)],
        ["asyncgate serve → /readyz 200 (best / worst)", f"{times[0]:.2f} / {times[-1]:.2f}"],
        ["artifact load + FastScorer build alone", round(load, 2)],
    ]
    return Section(
        name="6-cold-start",
        title="6. Service cold start with an existing artifact",
        command=command_line("bench.cold_start", ["--runs", str(runs)]),
        columns=["what", "seconds"],
        rows=rows,
        goals=[ratio_goal("cold start ≤ 2 s", median, GOAL_S, higher_is_better=False, unit=" s")],
        notes=[f"{runs} runs, each a new process and a new SQLite database (migrated on start)."],
        started=started,
        seconds=round(time.perf_counter() - began, 1),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    args = parser.parse_args(argv)
    section = benchmark(args.workdir, args.runs)
    save_section(args.workdir, section)
    print_section(section)


if __name__ == "__main__":
    main()
