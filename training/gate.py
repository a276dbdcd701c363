"""The metric gate: train on the default generated data, evaluate every split, compare with gate.toml."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.evaluate import SplitResult, evaluate_splits
from training.generate import generate_failures
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
        best_name, best = max(
            (
                (name, m["async"]["f1"])
                for name, m in result.metrics.items()
                if name != "model" and isinstance(m, dict) and "async" in m
            ),
            key=lambda item: item[1],
        )
        if f1 < best + margin:
            violations.append(f"{split}: async F1 {f1:.4f} is not {margin} above {best_name} ({best:.4f})")
        if model["ece"] > max_ece:
            violations.append(f"{split}: ECE {model['ece']:.4f} > {max_ece}")
    return violations


def run_gate(gate_file: Path, out_dir: Path, *, rows: int | None = None) -> GateResult:
    gate = load_gate(gate_file)
    frame = generate_failures(rows or int(gate["data"]["rows"]), int(gate["data"]["seed"]))
    results = evaluate_splits(frame, seed=int(gate["data"]["seed"]))
    violations = check(gate, results)
    report = write_report(
        results,
        out_dir,
        title="asyncgate metric gate",
        extra={
            "gate_file": str(gate_file),
            "rows": len(frame),
            "passed": not violations,
            "violations": violations,
        },
    )
    return GateResult(not violations, violations, results, report)
