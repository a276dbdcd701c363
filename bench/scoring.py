"""Scoring cost in process: single records and batches, fast scorer vs the sklearn pipeline.

    .venv/bin/python bench/scoring.py [--train-rows 60000]

Trains a model on generated data, then scores fresh generated failures (all distinct raw messages:
the cold-cache worst case) and a stream that repeats messages like real traffic (warm cache), at
batch sizes 1, 1k and 100k, and prints records/s and µs/record for each path.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from model.classifier import build_classifier
from model.records import frame_from_failures, iter_failures
from model.scorer import FastScorer
from training.generate import generate_failures


def _rate(label: str, n: int, seconds: float) -> None:
    print(f"{label:<48} {n:>8,} records  {n / seconds:>12,.0f} rec/s  {seconds / n * 1e6:>9.1f} µs/rec")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train-rows", type=int, default=60_000)
    args = parser.parse_args()
    print(f"# scoring benchmark — {platform.processor() or platform.machine()}, python {platform.python_version()}")
    frame = generate_failures(args.train_rows, seed=7)
    started = time.perf_counter()
    model = build_classifier().fit(frame, frame["async_eligible"], frame["category"])
    print(f"trained on {len(frame):,} rows in {time.perf_counter() - started:.1f}s")
    fresh = list(iter_failures(generate_failures(100_000, seed=99)))

    # single record: the reference pipeline (one-row DataFrame) vs the fast scorer, cold and warm
    one_frames = [frame_from_failures([f]) for f in fresh[:300]]
    started = time.perf_counter()
    for one in one_frames:
        model.predict_proba(one)
    _rate("single record, sklearn pipeline (1-row DataFrame)", len(one_frames), time.perf_counter() - started)
    scorer = FastScorer(model)
    started = time.perf_counter()
    for failure in fresh[:10_000]:
        scorer.score(failure)
    _rate("single record, fast scorer, cold (new messages)", 10_000, time.perf_counter() - started)
    started = time.perf_counter()
    for failure in fresh[:10_000]:
        scorer.score(failure)
    _rate("single record, fast scorer, warm (repeated)", 10_000, time.perf_counter() - started)

    for size in (1_000, 100_000):
        batch = fresh[:size]
        started = time.perf_counter()
        reference = model.predict_proba(frame_from_failures(batch))[:, 1]
        _rate(f"batch {size:,}, sklearn pipeline", size, time.perf_counter() - started)
        cold = FastScorer(model)
        started = time.perf_counter()
        fast = np.array([s.probability for s in cold.score_many(batch)])
        _rate(f"batch {size:,}, fast scorer, cold", size, time.perf_counter() - started)
        started = time.perf_counter()
        cold.score_many(batch)
        _rate(f"batch {size:,}, fast scorer, warm", size, time.perf_counter() - started)
        print(f"{'':<48} max |fast - pipeline| = {np.max(np.abs(fast - reference)):.1e}")


if __name__ == "__main__":
    main()
