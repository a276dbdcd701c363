"""The evaluation report: metrics.json, report.md and PNG plots (PR curve, calibration, confusion)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.calibration import calibration_curve
from sklearn.metrics import precision_recall_curve

from training.evaluate import SplitResult, summary_table


def _plot_pr(results: list[SplitResult], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for r in results:
        precision, recall, _ = precision_recall_curve(r.y, r.probability)
        ax.plot(recall, precision, label=f"{r.name} (AP {r.metrics['model']['pr_auc']:.3f})")
    ax.set(
        xlabel="recall (async)",
        ylabel="precision (async)",
        title="Precision-recall, async class",
        ylim=(0, 1.02),
    )
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_calibration(results: list[SplitResult], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect")
    for r in results:
        observed, predicted = calibration_curve(r.y, r.probability, n_bins=10, strategy="uniform")
        ax.plot(predicted, observed, marker="o", label=f"{r.name} (ECE {r.metrics['model']['ece']:.3f})")
    ax.set(xlabel="predicted probability", ylabel="observed async share", title="Calibration")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_confusion(results: list[SplitResult], path: Path) -> None:
    fig, axes = plt.subplots(1, len(results), figsize=(3.2 * len(results), 3.2), squeeze=False)
    for ax, r in zip(axes[0], results, strict=True):
        c = r.metrics["model"]["confusion"]
        grid = np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]])
        ax.imshow(grid, cmap="Blues")
        for (i, j), value in np.ndenumerate(grid):
            ax.text(j, i, str(value), ha="center", va="center", color="black")
        ax.set(
            title=r.name,
            xticks=[0, 1],
            yticks=[0, 1],
            xticklabels=["final", "async"],
            yticklabels=["final", "async"],
        )
        ax.set_xlabel("predicted")
        ax.set_ylabel("actual")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(
    results: list[SplitResult],
    out_dir: Path,
    *,
    title: str,
    extra: dict[str, Any] | None = None,
    sections: list[tuple[str, str]] | None = None,
) -> Path:
    """Writes metrics.json, report.md and the plots into out_dir; returns report.md's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = {r.name: r.metrics for r in results}
    (out_dir / "metrics.json").write_text(json.dumps({**(extra or {}), "splits": metrics}, indent=2) + "\n")
    if results:
        _plot_pr(results, out_dir / "pr_curve.png")
        _plot_calibration(results, out_dir / "calibration.png")
        _plot_confusion(results, out_dir / "confusion.png")
    lines = [f"# {title}", "", summary_table(metrics), ""]
    for heading, body in sections or []:
        lines += [f"## {heading}", "", body, ""]
    if results:
        lines += [
            "![precision-recall](pr_curve.png)",
            "",
            "![calibration](calibration.png)",
            "",
            "![confusion](confusion.png)",
            "",
        ]
    report = out_dir / "report.md"
    report.write_text("\n".join(lines), encoding="utf-8")
    return report
