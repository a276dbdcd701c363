"""Synthetic history of failed partner calls: `generate_failures(rows, seed)` → DataFrame, deterministic per seed.

Columns: the 7 contract columns (insurer, operation, error_code, error_message, http_status, latency_ms,
async_eligible), then ts (ISO-8601 UTC, rows sorted by it), category, template_id, partner_kind, language.

Sampling (numpy, vectorized): time fraction per row (sorted) → partner among those already live
(`Partner.since`) by traffic weight → operation by the partner's operation mix → category by
weight(kind, category) × factor(operation, category) from synth/vocab/mix.toml. Rendering (a Python
loop over `synth.vocabulary.render_failure`) picks the template, code, status and latency. Then the
logging gaps: http_status dropped for `STATUS_DROP` of the rows that had one, latency for
`LATENCY_DROP`, error_code for `CODE_DROP`; finally `LABEL_NOISE` of the labels are flipped (the
category is kept, so the noise is measurable against schema.CATEGORIES).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from model.schema import CATEGORIES, OPERATIONS, REQUIRED_COLUMNS
from synth.vocabulary import Partner, Vocabulary, load_vocabulary, render_failure

START: Final = datetime(2025, 1, 1, tzinfo=UTC)
END: Final = datetime(2026, 11, 1, tzinfo=UTC)
STATUS_DROP: Final = 0.20
LATENCY_DROP: Final = 0.30
CODE_DROP: Final = 0.06
LABEL_NOISE: Final = 0.02
EXTRA_COLUMNS: Final = ("ts", "category", "template_id", "partner_kind", "language")
COLUMNS: Final = (*REQUIRED_COLUMNS, *EXTRA_COLUMNS)

_CATEGORY_NAMES: Final = tuple(CATEGORIES)


def _weights(values: np.ndarray) -> np.ndarray:
    total = values.sum()
    if total <= 0:
        raise ValueError("all weights are zero")
    result: np.ndarray = values / total
    return result


def operation_weights(vocab: Vocabulary, partner: Partner) -> np.ndarray:
    """Probability of each of schema.OPERATIONS for one partner (its own mix, else its kind's)."""
    mix = partner.operations or vocab.mix["operations"][partner.kind]
    unknown = set(mix) - set(OPERATIONS)
    if unknown:
        raise ValueError(f"partner {partner.name}: unknown operations {sorted(unknown)}")
    return _weights(np.array([float(mix.get(op, 0.0)) for op in OPERATIONS]))


def category_weights(vocab: Vocabulary, kind: str, operation: str) -> np.ndarray:
    """Probability of each category for a partner kind and an operation (mix.toml)."""
    base = vocab.mix["kinds"][kind]
    factors = vocab.mix.get("operation_factors", {}).get(operation, {})
    values = [float(base.get(c, 0.0)) * float(factors.get(c, 1.0)) for c in _CATEGORY_NAMES]
    return _weights(np.array(values))


def _sample_partners(vocab: Vocabulary, progress: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Partner index per row; `progress` is sorted, so each span between two `since` values is a slice."""
    partners = list(vocab.partners.values())
    since = np.array([p.since for p in partners])
    weight = np.array([p.weight for p in partners])
    bounds = sorted({0.0, *since.tolist()})
    starts = [*np.searchsorted(progress, bounds, side="left").tolist(), len(progress)]
    out = np.empty(len(progress), dtype=np.int64)
    for i, bound in enumerate(bounds):
        lo, hi = starts[i], starts[i + 1]
        if hi > lo:
            live = np.where(since <= bound, weight, 0.0)
            out[lo:hi] = rng.choice(len(partners), size=hi - lo, p=_weights(live))
    return out


def _sample_by_group(
    groups: np.ndarray, probs: dict[int, np.ndarray], rng: np.random.Generator, size: int
) -> np.ndarray:
    out = np.empty(len(groups), dtype=np.int64)
    for key in np.unique(groups).tolist():
        idx = np.flatnonzero(groups == key)
        out[idx] = rng.choice(size, size=len(idx), p=probs[key])
    return out


def generate_failures(rows: int, seed: int, *, vocab: Vocabulary | None = None) -> pd.DataFrame:
    """`rows` synthetic failures (see the module docstring); the same seed gives the same frame."""
    if rows < 0:
        raise ValueError("rows must be >= 0")
    vocab = vocab or load_vocabulary()
    nprng = np.random.default_rng(seed)
    pyrng = random.Random(seed)
    partners = list(vocab.partners.values())

    progress = np.sort(nprng.random(rows))
    partner_idx = _sample_partners(vocab, progress, nprng)
    op_probs = {i: operation_weights(vocab, p) for i, p in enumerate(partners)}
    op_idx = _sample_by_group(partner_idx, op_probs, nprng, len(OPERATIONS))
    combo = partner_idx * len(OPERATIONS) + op_idx
    cat_probs = {
        key: category_weights(vocab, partners[key // len(OPERATIONS)].kind, OPERATIONS[key % len(OPERATIONS)])
        for key in np.unique(combo).tolist()
    }
    cat_idx = _sample_by_group(combo, cat_probs, nprng, len(_CATEGORY_NAMES))

    codes: list[str | None] = []
    messages: list[str] = []
    statuses: list[float] = []
    latencies: list[float] = []
    templates: list[str] = []
    languages: list[str] = []
    for prog, pi, ci in zip(progress.tolist(), partner_idx.tolist(), cat_idx.tolist(), strict=True):
        partner = partners[pi]
        failure = render_failure(
            vocab, partner.name, _CATEGORY_NAMES[ci], pyrng, progress=prog, timeout_s=partner.timeout_s
        )
        codes.append(failure.error_code)
        messages.append(failure.error_message)
        statuses.append(np.nan if failure.http_status is None else float(failure.http_status))
        latencies.append(failure.latency_ms)
        templates.append(failure.template_id)
        languages.append(failure.language)

    status = np.array(statuses, dtype=np.float64)
    status[nprng.random(rows) < STATUS_DROP] = np.nan
    latency = np.array(latencies, dtype=np.float64)
    latency[nprng.random(rows) < LATENCY_DROP] = np.nan
    code_drop = (nprng.random(rows) < CODE_DROP).tolist()
    codes = [None if drop else code for code, drop in zip(codes, code_drop, strict=True)]
    truth = np.array([CATEGORIES[c] for c in _CATEGORY_NAMES], dtype=np.int64)[cat_idx]
    label = np.where(nprng.random(rows) < LABEL_NOISE, 1 - truth, truth)

    span_s = (END - START).total_seconds()
    seconds = (progress * span_s).astype(np.int64) + int(START.timestamp())
    ts = np.char.add(np.datetime_as_string(seconds.astype("datetime64[s]"), unit="s"), "Z")
    kinds = np.array([p.kind for p in partners], dtype=object)
    names = np.array([p.name for p in partners], dtype=object)
    frame = pd.DataFrame(
        {
            "insurer": names[partner_idx],
            "operation": np.array(OPERATIONS, dtype=object)[op_idx],
            "error_code": pd.array(codes, dtype=object),
            "error_message": messages,
            "http_status": pd.array(status, dtype="Float64").astype("Int64"),
            "latency_ms": latency,
            "async_eligible": label,
            "ts": ts.astype(object),
            "category": np.array(_CATEGORY_NAMES, dtype=object)[cat_idx],
            "template_id": templates,
            "partner_kind": kinds[partner_idx],
            "language": languages,
        },
        columns=list(COLUMNS),
    )
    return frame


def write_failures_csv(df: pd.DataFrame, path: Path) -> None:
    """Write a generated frame as UTF-8 CSV with a header; missing values are empty cells."""
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False, encoding="utf-8", lineterminator="\n", na_rep="")
