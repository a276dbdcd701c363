"""Benchmark 2: /classify/batch records/s at 1k and 10k items, and the model-only batch path.

    .venv/bin/python -m bench.batch [--rounds 5] [--workdir DIR]

HTTP: one client posts batches to one uvicorn worker, one request at a time, and records/s is
items / (request sent → response read), JSON both ways included. "new items" batches are freshly
generated failures every request (distinct records, messages the scorer's caches have not seen);
"same items again" repeats the last batch (warm caches, as in a stream that repeats itself).
Model only: the serving model's `classify_many` in this process on 10k new failures, cold and
warm, against the sklearn pipeline's `predict_proba` on the same rows (the reference path).
Goal: ≥ 50,000 records/s over HTTP at 10k new items.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Final

import httpx
import orjson

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
from bench.services import failure_bodies, service, sqlite_url

GOAL_RECORDS_S: Final = 50_000
SIZES: Final = (1_000, 10_000)


def post_batches(url: str, batches: list[list[dict[str, Any]]]) -> tuple[float, float]:
    """Post each batch once (the first as a warm-up); the median and best records/s of the rest."""
    rates = []
    with httpx.Client(timeout=120.0, trust_env=False) as client:
        for index, items in enumerate(batches):
            content = orjson.dumps({"items": items})
            started = time.perf_counter()
            response = client.post(
                f"{url}/classify/batch", content=content, headers={"content-type": "application/json"}
            )
            elapsed = time.perf_counter() - started
            response.raise_for_status()
            if len(response.json()["results"]) != len(items):
                raise RuntimeError("a batch answer has the wrong number of results")
            if index > 0 or len(batches) == 1:
                rates.append(len(items) / elapsed)
    rates.sort()
    return rates[len(rates) // 2], rates[-1]


def model_only(registry: Path, size: int) -> list[list[Any]]:
    """classify_many (fresh model: cold caches, then warm) and the sklearn pipeline on `size` new failures."""
    from model.records import frame_from_failures, iter_failures
    from service.scoring import ServingModel
    from training.generate import generate_failures

    failures = list(iter_failures(generate_failures(size, seed=777)))
    model = ServingModel.from_dir(registry)
    rows = []
    started = time.perf_counter()
    model.classify_many(failures)
    rows.append(
        ["model only: classify_many, new items (cold)", f"{size:,}", size / (time.perf_counter() - started), ""]
    )
    started = time.perf_counter()
    model.classify_many(failures)
    rows.append(
        ["model only: classify_many, same items (warm)", f"{size:,}", size / (time.perf_counter() - started), ""]
    )
    frame = frame_from_failures(failures)
    started = time.perf_counter()
    model.loaded.classifier.predict_proba(frame)
    rows.append(["model only: sklearn pipeline predict_proba", f"{size:,}", size / (time.perf_counter() - started), ""])
    return rows


def benchmark(workdir: Path, rounds: int) -> Section:
    started, began = now_iso(), time.perf_counter()
    registry = ensure_model(workdir)
    rows: list[list[Any]] = []
    goals: list[Goal] = []
    with service(workdir, registry, sqlite_url(workdir, "batch")) as svc:
        for size in SIZES:
            fresh = [failure_bodies(size, seed=1000 + size + r) for r in range(rounds + 1)]
            median, best = post_batches(svc.url, fresh)
            rows.append(["HTTP /classify/batch, new items", f"{size:,}", median, best])
            median_warm, best_warm = post_batches(svc.url, [fresh[-1]] * (rounds + 1))
            rows.append(["HTTP /classify/batch, same items again", f"{size:,}", median_warm, best_warm])
            if size == 10_000:
                goals.append(ratio_goal("/classify/batch ≥ 50,000 records/s at 10k new items", median, GOAL_RECORDS_S))
    rows.extend(model_only(registry, 10_000))
    return Section(
        name="2-batch",
        title="2. /classify/batch and the model-only batch path (records/s)",
        command=command_line("bench.batch", ["--rounds", str(rounds)]),
        columns=["path", "items", "records/s (median)", "records/s (best)"],
        rows=rows,
        goals=goals,
        notes=[f"{rounds} timed requests per row after one warm-up request; one uvicorn worker, one client."],
        started=started,
        seconds=round(time.perf_counter() - began, 1),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    args = parser.parse_args(argv)
    section = benchmark(args.workdir, args.rounds)
    save_section(args.workdir, section)
    print_section(section)


if __name__ == "__main__":
    main()
