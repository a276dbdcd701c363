"""Run every benchmark of issue 4 in one go and write docs/benchmarks.md.

    .venv/bin/python -m bench.run_all [--quick] [--only NAME ...] [--workdir DIR]

Order: cold start, /classify, /classify/batch, /process, worker drain, training (the longest:
about 10 minutes at 1M rows on 2 cores). `--quick` shortens every run (2 s loads, 500 orders,
training at 20k rows only) to check that everything works; its figures are not the benchmark.
Needs PostgreSQL at 127.0.0.1:5432 (database `test`, trust) for /process and the worker; wrk is
installed with apt-get when missing.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from bench import batch, cold_start, http_classify, process, training, worker_drain
from bench.common import DEFAULT_WORKDIR, Section, ensure_model, print_section, save_section
from bench.report import DEFAULT_OUT, write_report
from bench.wrk import ensure_wrk


def plan(workdir: Path, quick: bool, pg_url: str) -> dict[str, Callable[[], Section]]:
    seconds = 2 if quick else 10
    return {
        "cold_start": lambda: cold_start.benchmark(workdir, 2 if quick else 5),
        "classify": lambda: http_classify.benchmark(workdir, 2 if quick else 5),
        "batch": lambda: batch.benchmark(workdir, 2 if quick else 5),
        "process": lambda: process.benchmark(workdir, seconds, pg_url),
        "worker_drain": lambda: worker_drain.benchmark(workdir, 500 if quick else 3_000, (1, 2, 4), pg_url),
        "training": lambda: training.benchmark(workdir, training.QUICK_SIZES if quick else training.SIZES),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short runs to check the scripts work")
    parser.add_argument(
        "--only", nargs="+", help="run only these (cold_start classify batch process worker_drain training)"
    )
    parser.add_argument("--pg-url", default=process.DEFAULT_PG_URL)
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    ensure_wrk()
    ensure_model(args.workdir)
    began = time.perf_counter()
    for name, bench in plan(args.workdir, args.quick, args.pg_url).items():
        if args.only and name not in args.only:
            continue
        print(f"\n=== {name}", flush=True)
        section = bench()
        save_section(args.workdir, section)
        print_section(section)
    print(f"\nall done in {time.perf_counter() - began:.0f}s; wrote {write_report(args.workdir, args.out)}")


if __name__ == "__main__":
    main()
