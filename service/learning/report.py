"""Live decisions against outcomes, per model version; candidates re-scored on the same labelled failures.

    report = model_report(first_failures, candidates={"2026-...": ServingModel, ...})

For every model version that classified first failures: how many, what it decided (async, final,
exploration, unknown outcome), what became of them (label 1 / 0 / pending / no outcome), the share of
its async decisions that later succeeded, the share of explored "final" failures that succeeded
after all, and the calibration of its probabilities on the labelled rows. Each candidate (e.g. the
shadow model, or a freshly trained version) re-scores the labelled rows: agreement with the live
decision, accuracy, recall, precision and the expected cost (a wrongly final failure costs
`cost_ratio`, a wrongly async one 1). Labelled rows are mostly failures the live model sent async;
docs/learning-loop.md explains why that flatters recall and how exploration reduces the bias.

With the live operators' rules given, `rules` shows where the model disagrees with them: per rule, its
hits and how many of those the model alone would have decided the other way (`overrides`, counted by
every process as it classifies), and what became of the first failures it decided (a rule that pins
"async" on failures that then go DEAD is a rule to revisit).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from model.calibration import BINS, expected_calibration_error, reliability
from model.schema import COST_RATIO
from service.learning.outcomes import Outcome, decision_of, label_of
from service.scoring import ServingModel
from service.store import FirstFailure, RuleRecord


def calibration(pairs: Iterable[tuple[float, int]], bins: int = BINS) -> dict[str, Any]:
    """Reliability of probabilities against 0/1 outcomes (model.calibration): the bins and the ECE."""
    table = reliability(pairs, bins)
    ece = expected_calibration_error(table)
    return {
        "outcomes": sum(b.n for b in table),
        "ece": None if ece is None else round(ece, 4),
        "bins": [
            {
                "lo": b.low,
                "hi": b.high,
                "n": b.n,
                "mean_probability": round(b.mean_probability, 4),
                "observed_rate": round(b.observed_rate, 4),
            }
            for b in table
        ],
    }


def decision_quality(decisions: Iterable[tuple[bool, int]], cost_ratio: float = COST_RATIO) -> dict[str, Any]:
    """Accuracy, recall and precision of async decisions against labels, and the expected cost per row."""
    tp = fp = fn = tn = 0
    for decided_async, label in decisions:
        if decided_async:
            tp, fp = tp + label, fp + (1 - label)
        else:
            fn, tn = fn + label, tn + (1 - label)
    n = tp + fp + fn + tn
    return {
        "rows": n,
        "accuracy": round((tp + tn) / n, 4) if n else None,
        "recall": round(tp / (tp + fn), 4) if tp + fn else None,
        "precision": round(tp / (tp + fp), 4) if tp + fp else None,
        "cost_per_row": round((cost_ratio * fn + fp) / n, 4) if n else None,
    }


def _version_entry(rows: list[FirstFailure]) -> dict[str, Any]:
    decisions: dict[str, int] = {}
    outcomes = {"1": 0, "0": 0, "pending": 0, "no_outcome": 0}
    by_decision: dict[str, list[int]] = {}
    pairs: list[tuple[float, int]] = []
    live: list[tuple[bool, int]] = []
    for row in rows:
        decision = decision_of(row)
        decisions[decision] = decisions.get(decision, 0) + 1
        label = label_of(row)
        if label is None:
            outcomes["pending" if row.state.value == "ASYNC_PROCESSING" else "no_outcome"] += 1
            continue
        outcomes[str(label)] += 1
        by_decision.setdefault(decision, []).append(label)
        if row.attempt.probability is not None:
            pairs.append((row.attempt.probability, label))
        if row.attempt.async_eligible is not None:
            live.append((row.attempt.async_eligible, label))

    def share(decision: str) -> float | None:
        labels = by_decision.get(decision, [])
        return round(sum(labels) / len(labels), 4) if labels else None

    return {
        "first_failures": len(rows),
        "decisions": dict(sorted(decisions.items())),
        "outcomes": outcomes,
        "async_later_succeeded": share("async"),
        "exploration_later_succeeded": share("exploration"),
        "live_decision": decision_quality(live),
        "calibration": calibration(pairs),
    }


def candidate_entry(model: ServingModel, outcomes: list[Outcome]) -> dict[str, Any]:
    """A model's decisions on the labelled first failures, against the labels and the live decisions."""
    verdicts = model.classify_many([o.failure for o in outcomes])
    agree = [
        v.async_eligible == o.row.attempt.async_eligible
        for v, o in zip(verdicts, outcomes, strict=True)
        if o.row.attempt.async_eligible is not None
    ]
    return {
        "version": model.version,
        "rows": len(outcomes),
        "agreement_with_live": round(sum(agree) / len(agree), 4) if agree else None,
        "quality": decision_quality((v.async_eligible, o.label) for v, o in zip(verdicts, outcomes, strict=True)),
        "calibration": calibration((v.probability, o.label) for v, o in zip(verdicts, outcomes, strict=True)),
    }


def rule_entry(rule: RuleRecord, rows: list[FirstFailure]) -> dict[str, Any]:
    """One rule against the model: its hits and overrides, and the outcomes of the first failures it decided."""
    outcomes = {"1": 0, "0": 0, "pending": 0, "no_outcome": 0}
    for row in rows:
        label = label_of(row)
        key = str(label) if label is not None else "pending" if row.state.value == "ASYNC_PROCESSING" else "no_outcome"
        outcomes[key] += 1
    resolved = outcomes["1"] + outcomes["0"]
    return {
        "rule_id": rule.rule_id,
        "match": {
            name: getattr(rule, name)
            for name in ("insurer", "operation", "error_code", "message_contains")
            if getattr(rule, name) is not None
        },
        "decision": rule.decision,
        "reason": rule.reason,
        "hits": rule.hits,
        "overrides": rule.overrides,
        "override_share": round(rule.overrides / rule.hits, 4) if rule.hits else None,
        "first_failures": len(rows),
        "outcomes": outcomes,
        "later_succeeded": round(outcomes["1"] / resolved, 4) if resolved else None,
    }


def model_report(
    rows: Iterable[FirstFailure],
    candidates: Mapping[str, ServingModel] | None = None,
    rules: Iterable[RuleRecord] | None = None,
) -> dict[str, Any]:
    """Per serving version (live decisions and outcomes), per candidate (re-scored labelled rows) and,
    when the live rules are given, per rule (module docstring)."""
    by_version: dict[str, list[FirstFailure]] = {}
    by_rule: dict[int, list[FirstFailure]] = {}
    outcomes: list[Outcome] = []
    for row in rows:
        by_version.setdefault(row.attempt.model_version or "(none)", []).append(row)
        if row.attempt.decided_by == "rule" and row.attempt.rule_id is not None:
            by_rule.setdefault(row.attempt.rule_id, []).append(row)
        label = label_of(row)
        if label is not None:
            outcomes.append(Outcome(row, label))
    report: dict[str, Any] = {
        "labelled_rows": len(outcomes),
        "versions": {version: _version_entry(found) for version, found in sorted(by_version.items())},
        "candidates": {name: candidate_entry(model, outcomes) for name, model in (candidates or {}).items()},
    }
    if rules is not None:
        report["rules"] = [rule_entry(rule, by_rule.get(rule.rule_id, [])) for rule in rules]
    return report


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def render_report(report: Mapping[str, Any]) -> str:
    """A plain-text summary of `model_report`'s result."""
    lines = [f"labelled first failures: {report['labelled_rows']}", ""]
    lines.append(f"{'served by':<34} {'failures':>8} {'async→ok':>9} {'explored→ok':>11} {'ECE':>6} {'cost':>6}")
    for version, entry in report["versions"].items():
        live = entry["live_decision"]
        lines.append(
            f"{version:<34} {entry['first_failures']:>8} {_fmt(entry['async_later_succeeded']):>9} "
            f"{_fmt(entry['exploration_later_succeeded']):>11} {_fmt(entry['calibration']['ece']):>6} "
            f"{_fmt(live['cost_per_row']):>6}"
        )
    if report["candidates"]:
        lines += ["", f"{'re-scored by':<34} {'agree':>6} {'acc':>6} {'recall':>6} {'prec':>6} {'ECE':>6} {'cost':>6}"]
        for name, entry in report["candidates"].items():
            q = entry["quality"]
            lines.append(
                f"{name:<34} {_fmt(entry['agreement_with_live']):>6} {_fmt(q['accuracy']):>6} {_fmt(q['recall']):>6} "
                f"{_fmt(q['precision']):>6} {_fmt(entry['calibration']['ece']):>6} {_fmt(q['cost_per_row']):>6}"
            )
    if report.get("rules"):
        lines += ["", f"{'rule':<8} {'decides':>7} {'hits':>8} {'model↔':>8} {'first':>6} {'→ok':>6} {'→0':>6}  reason"]
        for entry in report["rules"]:
            outcome = entry["outcomes"]
            lines.append(
                f"#{entry['rule_id']:<7} {entry['decision']:>7} {entry['hits']:>8} {entry['overrides']:>8} "
                f"{entry['first_failures']:>6} {outcome['1']:>6} {outcome['0']:>6}  {entry['reason']}"
            )
    return "\n".join(lines)
