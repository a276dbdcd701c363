"""Classification metrics for async-eligibility: per class P/R/F1, ROC/PR-AUC, Brier, ECE, confusion, and
the expected cost per row at model.schema.COST_RATIO (a false final costs COST_RATIO, a false async 1)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)

from model.calibration import expected_calibration_error as calibration_error
from model.calibration import reliability
from model.schema import COST_RATIO


def expected_calibration_error(y: np.ndarray, probability: np.ndarray, bins: int = 10) -> float:
    """The expected calibration error of `probability` against `y` (model.calibration, `bins` equal-width bins)."""
    pairs = zip(np.asarray(probability, dtype=np.float64).tolist(), np.asarray(y).tolist(), strict=True)
    return float(calibration_error(reliability(pairs, bins)) or 0.0)


def binary_metrics(
    y: np.ndarray, probability: np.ndarray, threshold: float, *, predicted: np.ndarray | None = None
) -> dict[str, Any]:
    """`predicted`: the decisions when they are not `probability >= threshold` (folds pooled, each
    decided at its own model's threshold; `threshold` is then their mean)."""
    y = np.asarray(y, dtype=np.int64)
    probability = np.asarray(probability, dtype=np.float64)
    if predicted is None:
        predicted = (probability >= threshold).astype(np.int64)
    else:
        predicted = np.asarray(predicted).astype(np.int64)
    precision, recall, f1, support = precision_recall_fscore_support(y, predicted, labels=[1, 0], zero_division=0)
    both = len(np.unique(y)) == 2
    tn, fp, fn, tp = confusion_matrix(y, predicted, labels=[0, 1]).ravel()
    return {
        "rows": len(y),
        "threshold": float(threshold),
        "async": {
            "precision": float(precision[0]),
            "recall": float(recall[0]),
            "f1": float(f1[0]),
            "support": int(support[0]),
        },
        "final": {
            "precision": float(precision[1]),
            "recall": float(recall[1]),
            "f1": float(f1[1]),
            "support": int(support[1]),
        },
        "roc_auc": float(roc_auc_score(y, probability)) if both else None,
        "pr_auc": float(average_precision_score(y, probability)) if both else None,
        "brier": float(brier_score_loss(y, probability, labels=[0, 1])),
        "ece": expected_calibration_error(y, probability),
        "confusion": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
        "accuracy": float((predicted == y).mean()),
        "cost_per_row": float((COST_RATIO * fn + fp) / len(y)) if len(y) else 0.0,
    }
