"""Shapes store and model records into what the console's templates and charts read: plain dicts and rows.

Chart data is JSON embedded in the page and drawn by static/console.js with Chart.js: line series
per insurer over whole UTC hours, a reliability curve, and a bar chart of error codes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from service.console.failures import CalibrationBin, CodeCount
from service.store.insights import ActivityBucket, iter_hours


@dataclass(frozen=True)
class InsurerActivity:
    """One insurer's totals over the window."""

    insurer: str
    received: int
    went_async: int

    @property
    def async_rate(self) -> float | None:
        return self.went_async / self.received if self.received else None


def activity_totals(buckets: Iterable[ActivityBucket]) -> dict[str, InsurerActivity]:
    """Per insurer totals."""
    sums: dict[str, tuple[int, int]] = {}
    for b in buckets:
        received, went_async = sums.get(b.insurer, (0, 0))
        sums[b.insurer] = (received + b.received, went_async + b.went_async)
    return {name: InsurerActivity(name, *values) for name, values in sums.items()}


def activity_chart(
    buckets: Sequence[ActivityBucket], since: dt.datetime, until: dt.datetime, insurers: Sequence[str]
) -> dict[str, Any]:
    """{"labels": hours, "throughput": [{label, data}], "async_rate": [{label, data}]} for each insurer."""
    hours = list(iter_hours(since, until))
    index = {hour: i for i, hour in enumerate(hours)}
    received = {name: [0] * len(hours) for name in insurers}
    went_async = {name: [0] * len(hours) for name in insurers}
    for b in buckets:
        i = index.get(b.hour)
        if i is not None and b.insurer in received:
            received[b.insurer][i] += b.received
            went_async[b.insurer][i] += b.went_async
    return {
        "labels": [f"{hour:%m-%d %H:00}" for hour in hours],
        "throughput": [{"label": name, "data": received[name]} for name in insurers],
        "async_rate": [
            {
                "label": name,
                "data": [round(a / r, 4) if r else None for a, r in zip(went_async[name], received[name], strict=True)],
            }
            for name in insurers
        ],
    }


def calibration_chart(bins: Sequence[CalibrationBin]) -> dict[str, Any]:
    return {
        "points": [{"x": round(b.mean_probability, 4), "y": round(b.observed_async, 4), "n": b.orders} for b in bins]
    }


def codes_chart(codes: Sequence[CodeCount]) -> dict[str, Any]:
    return {"labels": [c.error_code for c in codes], "data": [c.failures for c in codes]}


@dataclass(frozen=True)
class MetricRow:
    split: str
    scorer: str
    rows: int | None
    async_precision: float | None
    async_recall: float | None
    async_f1: float | None
    cost_per_row: float | None
    final_f1: float | None
    roc_auc: float | None
    pr_auc: float | None
    brier: float | None
    ece: float | None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def gate_metrics(card: Mapping[str, Any]) -> list[MetricRow]:
    """Rows of the card's evaluation metrics: one per (split, scorer) that carries binary metrics."""
    rows = []
    metrics = card.get("metrics")
    for split, scorers in (metrics or {}).items() if isinstance(metrics, Mapping) else ():
        if not isinstance(scorers, Mapping):
            continue
        for scorer, m in scorers.items():
            if not isinstance(m, Mapping) or not isinstance(m.get("async"), Mapping):
                continue
            rows_n = _number(m.get("rows"))
            rows.append(
                MetricRow(
                    split=str(split),
                    scorer=str(scorer),
                    rows=int(rows_n) if rows_n is not None else None,
                    async_precision=_number(m["async"].get("precision")),
                    async_recall=_number(m["async"].get("recall")),
                    async_f1=_number(m["async"].get("f1")),
                    cost_per_row=_number(m.get("cost_per_row")),
                    final_f1=_number((m.get("final") or {}).get("f1")),
                    roc_auc=_number(m.get("roc_auc")),
                    pr_auc=_number(m.get("pr_auc")),
                    brier=_number(m.get("brier")),
                    ece=_number(m.get("ece")),
                )
            )
    return rows


def headline(card: Mapping[str, Any]) -> MetricRow | None:
    """The model's own row on its first evaluated split (what the overview shows)."""
    return next((row for row in gate_metrics(card) if row.scorer == "model"), None)


def card_facts(card: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Readable (label, value) pairs of the card's scalar facts."""
    data = card.get("training_data") if isinstance(card.get("training_data"), Mapping) else {}
    calibration = card.get("calibration") if isinstance(card.get("calibration"), Mapping) else {}
    libraries = card.get("libraries") if isinstance(card.get("libraries"), Mapping) else {}
    facts = [
        ("version", card.get("version")),
        ("created", card.get("created_at")),
        ("threshold", card.get("threshold")),
        ("cost ratio (wrongly final : wrongly async)", card.get("cost_ratio")),
        ("calibration", ", ".join(f"{k}={v}" for k, v in calibration.items()) if calibration else None),
        ("training rows", data.get("rows") if data else None),
        ("training data sha256", data.get("sha256") if data else None),
        ("categories", ", ".join(card.get("categories") or []) or None),
        ("libraries", ", ".join(f"{k} {v}" for k, v in libraries.items()) if libraries else None),
        ("git sha", card.get("git_sha")),
        ("model file sha256", card.get("model_sha256")),
    ]
    return [(label, str(value)) for label, value in facts if value not in (None, "")]
