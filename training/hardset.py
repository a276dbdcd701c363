"""The hand-written hard set (tests/hardset/hard_set.csv): real-system failures the team wrote by hand,
scored per group. It approximates what held-out sets of real messages measure: final failures worded
with retry words (`hard_negative`), transient ones without them (`hard_positive`), and ordinary cases
of the wide and the insurance domains. The generator is tuned on what it teaches, never by pasting its
rows into templates (tests/hardset/test_hard_set.py guards that).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from model.classifier import FailureClassifier
from model.schema import LABEL_COLUMN
from training.baselines import BASELINES
from training.metrics import binary_metrics

DEFAULT_HARD_SET: Final = Path(__file__).resolve().parents[1] / "tests" / "hardset" / "hard_set.csv"


def load_hard_set(path: Path = DEFAULT_HARD_SET) -> pd.DataFrame:
    frame = pd.read_csv(path, dtype={"error_code": str, "insurer": str, "operation": str}, keep_default_na=False)
    for column in ("http_status", "latency_ms"):
        frame[column] = pd.to_numeric(frame[column].replace("", None), errors="raise")
    frame["http_status"] = frame["http_status"].astype("Int64")
    frame["error_code"] = frame["error_code"].replace("", None)
    return frame


def score_hard_set(model: FailureClassifier, frame: pd.DataFrame) -> dict[str, Any]:
    """{"all": {scorer: metrics}, "<group>": {scorer: metrics}, ...}: the model beside the rule baselines."""
    y = frame[LABEL_COLUMN].to_numpy(dtype=np.int64)
    probability = model.predict_proba(frame)[:, 1]
    baselines = {name: rule(frame).astype(np.float64) for name, rule in BASELINES.items()}

    def metrics_of(mask: np.ndarray) -> dict[str, Any]:
        out = {"model": binary_metrics(y[mask], probability[mask], model.threshold_)}
        for name, predicted in baselines.items():
            out[name] = binary_metrics(y[mask], predicted[mask], 0.5)
        return out

    result = {"all": metrics_of(np.ones(len(frame), dtype=bool))}
    if "group" in frame.columns:
        for group in sorted(frame["group"].astype(str).unique()):
            result[group] = metrics_of((frame["group"].astype(str) == group).to_numpy())
    return result
