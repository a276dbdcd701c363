"""Evaluation: the model and the rule baselines, side by side, on held-out data.

`evaluate_splits` trains a fresh model per split (random, time, unseen templates, unseen insurers)
and scores its test part; `evaluate_model` scores an already trained model on a labelled frame.
Both return plain JSON-able dicts: {"<split>": {"model": metrics, "status_rule": ..., "keyword_rule": ...}}.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import pandas as pd

from model.classifier import FailureClassifier, build_classifier
from model.schema import CATEGORY_COLUMN, LABEL_COLUMN
from training.baselines import BASELINES
from training.metrics import binary_metrics
from training.splits import FOLDS, SPLITS, SplitUnavailable, split_folds

log = logging.getLogger(__name__)


@dataclass
class SplitResult:
    """Metrics of one split plus what the report's plots need."""

    name: str
    metrics: dict[str, Any]
    y: np.ndarray = field(repr=False)
    probability: np.ndarray = field(repr=False)
    threshold: float = 0.0


def fit_classifier(frame: pd.DataFrame, params: Mapping[str, Any] | None = None) -> FailureClassifier:
    categories = frame[CATEGORY_COLUMN].to_numpy() if CATEGORY_COLUMN in frame.columns else None
    return build_classifier(params).fit(frame, frame[LABEL_COLUMN].to_numpy(), categories)


def score_frame(model: FailureClassifier, frame: pd.DataFrame, name: str) -> SplitResult:
    return score_folds([(model, frame)], name)


def score_folds(parts: list[tuple[FailureClassifier, pd.DataFrame]], name: str) -> SplitResult:
    """Metrics over the test rows of one or more folds, each scored by its own model (decisions at each
    model's own threshold), pooled: the model beside the rule baselines."""
    frames = [frame for _, frame in parts]
    y = np.concatenate([f[LABEL_COLUMN].to_numpy(dtype=np.int64) for f in frames])
    probabilities = [model.predict_proba(f)[:, 1] for model, f in parts]
    probability = np.concatenate(probabilities)
    decided = np.concatenate([p >= model.threshold_ for (model, _), p in zip(parts, probabilities, strict=True)])
    threshold = float(np.mean([model.threshold_ for model, _ in parts]))
    metrics: dict[str, Any] = {"model": binary_metrics(y, probability, threshold, predicted=decided)}
    pooled = pd.concat(frames) if len(frames) > 1 else frames[0]
    for baseline, rule in BASELINES.items():
        metrics[baseline] = binary_metrics(y, rule(pooled).astype(np.float64), 0.5)
    hits = known_rows = 0
    for model, f in parts:
        if CATEGORY_COLUMN in f.columns and model.category_classifier_ is not None:
            known = f[CATEGORY_COLUMN].isin(model.category_classes).to_numpy()
            if known.any():
                predicted = model.category_classifier_.predict(model.features_.transform(f[known]))
                hits += int((predicted == f[CATEGORY_COLUMN].to_numpy()[known]).sum())
                known_rows += int(known.sum())
    if known_rows:
        metrics["model"]["category_accuracy"] = hits / known_rows
    if len(parts) > 1:
        metrics["model"]["folds"] = len(parts)
    return SplitResult(name, metrics, y, probability, threshold)


#: Splits whose test rows also get the code-permutation check.
PERMUTED_SPLITS: Final = ("unseen_insurers", "unseen_partner_kinds")


def permute_codes(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The frame with each insurer's codes reassigned at random among that insurer's own codes (a
    permutation of its distinct codes; rows without a code keep none), messages untouched."""
    rng = np.random.default_rng(seed)
    permuted = frame.copy()
    codes = permuted["error_code"].astype(object)
    for _, rows in permuted.groupby("insurer", sort=False).groups.items():
        present = [r for r in rows if isinstance(codes[r], str) and codes[r].strip()]
        distinct = sorted({codes[r] for r in present})
        if len(distinct) < 2:
            continue
        mapping = dict(zip(distinct, rng.permutation(distinct).tolist(), strict=True))
        codes.loc[present] = [mapping[codes[r]] for r in present]
    permuted["error_code"] = codes
    return permuted


def code_permutation_moved(model: FailureClassifier, frame: pd.DataFrame, seed: int) -> float:
    """Share of decisions that change when the test insurers' codes are reassigned at random: a model
    that reads the failure, not the code schemes, barely moves."""
    before = model.predict(frame)
    after = model.predict(permute_codes(frame, seed))
    return float(np.mean(before != after)) if len(frame) else 0.0


def evaluate_model(model: FailureClassifier, frame: pd.DataFrame) -> dict[str, Any]:
    return {"data": score_frame(model, frame, "data").metrics}


def evaluate_splits(
    frame: pd.DataFrame, params: Mapping[str, Any] | None = None, *, seed: int = 0
) -> list[SplitResult]:
    """Train and score one fresh model per available split."""
    results = []
    for name, split in SPLITS.items():
        try:
            folds = split_folds(name, frame, seed) if name in FOLDS else [split(frame, seed)]
        except SplitUnavailable as exc:
            log.warning("split %s skipped: %s", name, exc)
            continue
        started = time.perf_counter()
        parts = [(fit_classifier(frame.iloc[train], params), frame.iloc[test]) for train, test in folds]
        result = score_folds(parts, name)
        if name in PERMUTED_SPLITS:
            model, test = parts[0]
            result.metrics["model"]["code_permutation_moved"] = code_permutation_moved(model, test, seed)
        result.metrics["train_rows"] = int(np.mean([len(train) for train, _ in folds]))
        result.metrics["seconds"] = round(time.perf_counter() - started, 2)
        results.append(result)
        log.info("split %s: async F1 %.4f", name, result.metrics["model"]["async"]["f1"])
    return results


def summary_table(metrics: Mapping[str, Mapping[str, Any]]) -> str:
    """A markdown table: one row per split and scorer."""
    lines = [
        "| split | scorer | async P | async R | async F1 | cost/row | final F1 | ROC-AUC | PR-AUC | Brier | ECE |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]

    def fmt(value: Any) -> str:
        return "—" if value is None else f"{value:.4f}"

    for split, scorers in metrics.items():
        for scorer, m in scorers.items():
            if not isinstance(m, Mapping) or "async" not in m:
                continue
            lines.append(
                f"| {split} | {scorer} | {fmt(m['async']['precision'])} | {fmt(m['async']['recall'])} | "
                f"{fmt(m['async']['f1'])} | {fmt(m.get('cost_per_row'))} | {fmt(m['final']['f1'])} | "
                f"{fmt(m['roc_auc'])} | {fmt(m['pr_auc'])} | "
                f"{fmt(m['brier'])} | {fmt(m['ece'])} |"
            )
    return "\n".join(lines)
