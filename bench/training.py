"""Benchmark 5: training time and peak memory at 100k and 1M rows, against a plain sklearn fit.

    .venv/bin/python -m bench.training [--rows 100000 1000000] [--workdir DIR]

For each size, the same generated rows are fitted twice, each fit in its own fresh process (so
peak memory is that fit's alone): asyncgate's FailureClassifier (TF-IDF of char_wb 1–4-grams
over normalized messages + field features, logistic regression, Platt calibration, category
head), and a plain `TfidfVectorizer(analyzer="char", ngram_range=(1, 3))` + `LogisticRegression()`
pipeline on the raw messages, both with scikit-learn's defaults otherwise. Time is the fit alone
(data loading excluded, the same loader for both); peak memory is the process's VmHWM, which
includes the loaded data and the imports (reported separately as "before fit").
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Final

from bench.common import (
    DEFAULT_WORKDIR,
    Goal,
    Section,
    command_line,
    ensure_history,
    now_iso,
    peak_rss_mib,
    print_section,
    ratio_goal,
    rss_mib,
    run,
    save_section,
)

SIZES: Final = (100_000, 1_000_000)
QUICK_SIZES: Final = (20_000,)
SEED: Final = 3
TIME_GOAL: Final = 2.0
MEMORY_GOAL: Final = 1.2


def fit_in_this_process(kind: str, data: Path) -> dict[str, Any]:
    """Load `data`, fit one model of `kind` ("asyncgate" or "plain"), return seconds and memory."""
    from training.validate import load_failures

    frame = load_failures([data])
    labels = frame["async_eligible"].to_numpy()
    before = rss_mib()
    started = time.perf_counter()
    if kind == "asyncgate":
        from training.evaluate import fit_classifier

        fit_classifier(frame)
    else:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from threadpoolctl import threadpool_limits

        pipeline = make_pipeline(TfidfVectorizer(analyzer="char", ngram_range=(1, 3)), LogisticRegression())
        # one BLAS thread: L-BFGS with two OpenBLAS threads is 2-3x slower on this machine (as for ours)
        with warnings.catch_warnings(), threadpool_limits(1, user_api="blas"):
            warnings.simplefilter("ignore", ConvergenceWarning)
            pipeline.fit(frame["error_message"].tolist(), labels)
    seconds = time.perf_counter() - started
    return {"kind": kind, "rows": len(frame), "seconds": seconds, "before_mib": before, "peak_mib": peak_rss_mib()}


def measure(kind: str, data: Path) -> dict[str, Any]:
    """Fit in a fresh child process and return its figures."""
    out = run([sys.executable, "-m", "bench.training", "--child", kind, "--data", str(data)], timeout_s=3600)
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def benchmark(workdir: Path, sizes: tuple[int, ...]) -> Section:
    started, began = now_iso(), time.perf_counter()
    rows: list[list[Any]] = []
    goals: list[Goal] = []
    for size in sizes:
        data = ensure_history(workdir, size, SEED)
        ours = measure("asyncgate", data)
        plain = measure("plain", data)
        time_ratio = ours["seconds"] / plain["seconds"]
        memory_ratio = ours["peak_mib"] / plain["peak_mib"]
        for figures in (ours, plain):
            rows.append(
                [
                    f"{size:,}",
                    figures["kind"],
                    round(figures["seconds"], 1),
                    round(figures["before_mib"]),
                    round(figures["peak_mib"]),
                ]
            )
        rows.append([f"{size:,}", "ratio asyncgate / plain", round(time_ratio, 2), "", round(memory_ratio, 2)])
        print(f"{size:,} rows: asyncgate {ours} plain {plain}", flush=True)
        if size >= 1_000_000:
            goals.append(
                ratio_goal(
                    f"time at {size:,} rows ≤ {TIME_GOAL}x plain",
                    time_ratio,
                    TIME_GOAL,
                    higher_is_better=False,
                    unit="x",
                )
            )
            goals.append(
                ratio_goal(
                    f"peak memory at {size:,} rows ≤ {MEMORY_GOAL}x plain",
                    memory_ratio,
                    MEMORY_GOAL,
                    higher_is_better=False,
                    unit="x",
                )
            )
    return Section(
        name="5-training",
        title="5. Training time and peak memory",
        command=command_line("bench.training", ["--rows", *map(str, sizes)]),
        columns=["rows", "fit", "seconds", "MiB before fit", "peak MiB"],
        rows=rows,
        goals=goals,
        notes=[
            "Each fit runs in a fresh process; peak = VmHWM of that process (data + imports + fit).",
            "asyncgate = FailureClassifier.fit (what `asyncgate train --no-eval` runs once; with the held-out "
            "evaluation it fits twice). plain = TfidfVectorizer(char, 1-3) + LogisticRegression() defaults. "
            "Both fit with one BLAS thread (on this machine that makes the plain fit 2x faster too).",
        ],
        started=started,
        seconds=round(time.perf_counter() - began, 1),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--child", choices=["asyncgate", "plain"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(fit_in_this_process(args.child, args.data)))
        return
    section = benchmark(args.workdir, tuple(args.rows))
    save_section(args.workdir, section)
    print_section(section)


if __name__ == "__main__":
    main()
