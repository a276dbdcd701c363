"""Reliability of probabilities against 0/1 outcomes, and the expected calibration error: defined once.

    table = reliability(zip(probabilities, labels))      # equal-width bins; empty bins left out
    ece = expected_calibration_error(table)               # Σ_bins (n_bin / n) · |mean p − observed rate|

Used by the evaluation (training/metrics.py), the live reports (service/learning/report.py, drift) and
the console's reliability chart, so every figure called "ECE" is the same computation.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

BINS: Final = 10


@dataclass(frozen=True)
class ReliabilityBin:
    """One bin [low, high) (the last one includes 1.0): its rows, mean probability and observed rate."""

    low: float
    high: float
    n: int
    mean_probability: float
    observed_rate: float


def reliability(pairs: Iterable[tuple[float, int]], bins: int = BINS) -> list[ReliabilityBin]:
    """(probability, label) pairs in `bins` equal-width bins, the empty ones left out."""
    counts = [0] * bins
    sums = [0.0] * bins
    hits = [0] * bins
    for probability, label in pairs:
        index = min(max(int(probability * bins), 0), bins - 1)
        counts[index] += 1
        sums[index] += probability
        hits[index] += int(label)
    return [ReliabilityBin(i / bins, (i + 1) / bins, n, sums[i] / n, hits[i] / n) for i, n in enumerate(counts) if n]


def expected_calibration_error(table: Sequence[ReliabilityBin]) -> float | None:
    """Σ (n_bin / n) · |mean probability − observed rate| over the table; None for no rows."""
    total = sum(b.n for b in table)
    if not total:
        return None
    return sum(b.n / total * abs(b.mean_probability - b.observed_rate) for b in table)
