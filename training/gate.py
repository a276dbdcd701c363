"""The metric gate: train on the default generated data, evaluate every split, score the hand-written hard
set, compare with gate.toml."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.evaluate import SplitResult, evaluate_splits, fit_classifier, summary_table
from training.generate import generate_failures
from training.hardset import load_hard_set, score_hard_set
from training.report import write_report

DEFAULT_GATE_FILE = Path(__file__).with_name("gate.toml")


@dataclass(frozen=True)
class GateResult:
    passed: bool
    violations: list[str]
    results: list[SplitResult]
    report: Path


def load_gate(path: Path) -> dict[str, Any]:
    with path.open("rb") as handle:
        gate = tomllib.load(handle)
    for key in ("data", "thresholds", "splits"):
        if key not in gate:
            raise ValueError(f"{path}: missing [{key}] table")
    return gate


def _best_baseline(metrics: dict[str, Any]) -> tuple[str, float]:
    return max(
        (
            (name, m["async"]["f1"])
            for name, m in metrics.items()
            if name != "model" and isinstance(m, dict) and "async" in m
        ),
        key=lambda item: item[1],
    )


def check_hard_set(limits: dict[str, Any], hard: dict[str, Any]) -> list[str]:
    """Every way the hard-set figures fall short of gate.toml's [hard_set] table."""
    violations = []
    overall = hard["all"]
    model = overall["model"]
    if model["async"]["f1"] < limits["min_async_f1"]:
        violations.append(f"hard set: async F1 {model['async']['f1']:.4f} < {limits['min_async_f1']}")
    if model["cost_per_row"] > limits["max_cost_per_row"]:
        violations.append(f"hard set: cost per row {model['cost_per_row']:.4f} > {limits['max_cost_per_row']}")
    best_name, best = _best_baseline(overall)
    margin = float(limits["margin_over_best_baseline"])
    if model["async"]["f1"] < best + margin:
        violations.append(
            f"hard set: async F1 {model['async']['f1']:.4f} is not {margin} above {best_name} ({best:.4f})"
        )
    for group, floor in limits.get("min_group_accuracy", {}).items():
        figures = hard.get(group)
        if figures is None:
            violations.append(f"hard set: no group {group}")
        elif figures["model"]["accuracy"] < floor:
            violations.append(f"hard set {group}: accuracy {figures['model']['accuracy']:.4f} < {floor}")
    return violations


def check(gate: dict[str, Any], results: list[SplitResult]) -> list[str]:
    """Every way the results fall short of the gate, as sentences; empty when they pass."""
    by_name = {r.name: r for r in results}
    margin = float(gate["thresholds"]["margin_over_best_baseline"])
    max_ece = float(gate["thresholds"]["max_ece"])
    violations = []
    for split, limits in gate["splits"].items():
        result = by_name.get(split)
        if result is None:
            violations.append(f"{split}: split was not evaluated")
            continue
        model = result.metrics["model"]
        f1 = model["async"]["f1"]
        if f1 < limits["min_async_f1"]:
            violations.append(f"{split}: async F1 {f1:.4f} < {limits['min_async_f1']}")
        best_name, best = _best_baseline(result.metrics)
        if f1 < best + margin:
            violations.append(f"{split}: async F1 {f1:.4f} is not {margin} above {best_name} ({best:.4f})")
        if model["ece"] > max_ece:
            violations.append(f"{split}: ECE {model['ece']:.4f} > {max_ece}")
        if "max_cost_per_row" in limits and model["cost_per_row"] > limits["max_cost_per_row"]:
            violations.append(f"{split}: cost per row {model['cost_per_row']:.4f} > {limits['max_cost_per_row']}")
        moved = model.get("code_permutation_moved")
        if "max_code_permutation_moved" in limits:
            if moved is None:
                violations.append(f"{split}: the code-permutation check did not run")
            elif moved > limits["max_code_permutation_moved"]:
                violations.append(
                    f"{split}: {moved:.2%} of decisions moved when codes were permuted "
                    f"(> {limits['max_code_permutation_moved']:.0%})"
                )
    return violations


def run_gate(gate_file: Path, out_dir: Path, *, rows: int | None = None) -> GateResult:
    gate = load_gate(gate_file)
    frame = generate_failures(rows or int(gate["data"]["rows"]), int(gate["data"]["seed"]))
    results = evaluate_splits(frame, seed=int(gate["data"]["seed"]))
    violations = check(gate, results)
    hard: dict[str, Any] | None = None
    if "hard_set" in gate:
        limits = gate["hard_set"]
        hard_path = (gate_file.parent / limits["path"]).resolve()
        hard = score_hard_set(fit_classifier(frame), load_hard_set(hard_path))
        violations += check_hard_set(limits, hard)
    report = write_report(
        results,
        out_dir,
        title="asyncgate metric gate",
        extra={
            "gate_file": str(gate_file),
            "rows": len(frame),
            "passed": not violations,
            "violations": violations,
            "hard_set": hard,
        },
        sections=[]
        if hard is None
        else [("The hand-written hard set (a model trained on all rows)", summary_table(hard))],
    )
    return GateResult(not violations, violations, results, report)
