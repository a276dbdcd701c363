"""Training: CSVs of historical failures → a versioned artifact in a model registry.

    load_failures(paths) → fit_classifier(frame) → evaluate (random split) → save_artifact → activate

The card records every source file (path, SHA-256, rows), the combined data hash, the parameters,
and the held-out metrics of the model and of the rule baselines.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from model.artifact import new_version, save_artifact, sha256_file
from model.profile import PROFILE_KEY, data_profile
from model.registry import activate, active_version
from model.schema import LABEL_COLUMN
from training.evaluate import fit_classifier, score_frame
from training.splits import random_split
from training.validate import load_failures

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingRun:
    artifact: Path
    version: str
    activated: bool
    metrics: dict[str, Any]
    seconds: float


def data_provenance(paths: Sequence[Path], frame: pd.DataFrame) -> dict[str, Any]:
    sources = []
    for path in paths:
        rows = int((frame["source"] == str(path)).sum()) if "source" in frame.columns else len(frame)
        sources.append({"path": str(path), "sha256": sha256_file(path), "rows": rows})
    combined = hashlib.sha256("".join(str(s["sha256"]) for s in sources).encode()).hexdigest()
    return {
        "sha256": combined,
        "rows": len(frame),
        "async_share": round(float(frame[LABEL_COLUMN].mean()), 4),
        "insurers": int(frame["insurer"].nunique()),
        "sources": sources,
        PROFILE_KEY: data_profile(frame),  # per-insurer async rate and codes, for drift monitoring
    }


def train_artifact(
    paths: Sequence[Path],
    registry: Path,
    *,
    make_active: bool = False,
    params: Mapping[str, Any] | None = None,
    holdout_metrics: bool = True,
    seed: int = 0,
) -> TrainingRun:
    """Validate, train on all rows, measure on a held-out split, write the artifact.

    The new version becomes active when the registry has none active, or when `make_active`.
    Nothing is written when the data is invalid (DataError is raised first).
    """
    started = time.perf_counter()
    frame = load_failures(paths)
    metrics: dict[str, Any] = {}
    if holdout_metrics:
        train_rows, test_rows = random_split(frame, seed)
        probe = fit_classifier(frame.iloc[train_rows], params)
        metrics = {"holdout_random_20pct": score_frame(probe, frame.iloc[test_rows], "random").metrics}
    model = fit_classifier(frame, params)
    provenance = data_provenance(paths, frame)
    version = new_version(provenance["sha256"])
    artifact = save_artifact(
        model, registry, version=version, data=provenance, metrics=metrics, params=dict(model.get_params())
    )
    activated = make_active or active_version(registry) is None
    if activated:
        activate(registry, version)
    seconds = round(time.perf_counter() - started, 2)
    log.info("trained %s on %d rows in %.1fs (active: %s)", version, len(frame), seconds, activated)
    return TrainingRun(artifact, version, activated, metrics, seconds)
