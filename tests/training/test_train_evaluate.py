"""Training, evaluation splits, baselines and the gate logic on small generated data."""

import json

import numpy as np
import pandas as pd
import pytest

from model.artifact import load_artifact
from model.registry import active_version, list_versions
from training.baselines import keyword_rule, status_rule
from training.evaluate import evaluate_splits
from training.gate import check, load_gate
from training.generate import generate_failures, write_failures_csv
from training.metrics import binary_metrics, expected_calibration_error
from training.report import write_report
from training.splits import SPLITS, SplitUnavailable, time_split, unseen_insurers_split, unseen_templates_split


@pytest.fixture(scope="module")
def frame():
    return generate_failures(6000, seed=3)


def test_splits_are_disjoint_and_hold_out_what_they_say(frame):
    for name, split in SPLITS.items():
        train, test = split(frame, 0)
        assert len(set(train) & set(test)) == 0, name
        assert len(train) + len(test) == len(frame), name
    train, test = unseen_templates_split(frame, 0)
    assert not set(frame["template_id"].iloc[train]) & set(frame["template_id"].iloc[test])
    train, test = unseen_insurers_split(frame, 0)
    assert not set(frame["insurer"].iloc[train]) & set(frame["insurer"].iloc[test])
    train, test = time_split(frame, 0)
    assert frame["ts"].iloc[train].max() <= frame["ts"].iloc[test].min()


def test_split_needs_its_column(frame):
    with pytest.raises(SplitUnavailable):
        unseen_templates_split(frame.drop(columns=["template_id"]), 0)


def test_metrics_of_a_perfect_and_a_useless_scorer():
    y = np.array([0, 0, 1, 1, 1, 0])
    perfect = binary_metrics(y, y.astype(float), 0.5)
    assert perfect["async"]["f1"] == 1.0 and perfect["brier"] == 0.0 and perfect["ece"] == 0.0
    assert perfect["confusion"] == {"tn": 3, "fp": 0, "fn": 0, "tp": 3}
    useless = binary_metrics(y, np.full(6, 0.5), 0.9)
    assert useless["async"]["recall"] == 0.0
    assert expected_calibration_error(y, np.full(6, 0.5)) == pytest.approx(0.0)
    assert expected_calibration_error(np.array([1, 1]), np.array([0.0, 0.0])) == pytest.approx(1.0)


def test_baselines_catch_the_obvious(frame):
    import pandas as pd

    rows = pd.DataFrame(
        {
            "error_message": ["Read timed out", "余额不足", "系统繁忙，请稍后再试", "invalid sign"],
            "error_code": [None, None, None, None],
            "http_status": pd.array([None, 200, 200, 400], dtype="Int64"),
        }
    )
    assert status_rule(rows).tolist() == [1, 0, 0, 0]
    assert keyword_rule(rows).tolist() == [1, 0, 1, 0]


def test_evaluate_splits_and_report(frame, tmp_path):
    results = evaluate_splits(frame.iloc[:3000], seed=0)
    assert [r.name for r in results] == list(SPLITS)
    for r in results:
        assert set(r.metrics) >= {"model", "status_rule", "keyword_rule"}
        assert 0.0 <= r.metrics["model"]["async"]["f1"] <= 1.0
    report = write_report(results, tmp_path, title="t")
    assert (tmp_path / "pr_curve.png").stat().st_size > 1000
    assert (tmp_path / "calibration.png").exists() and (tmp_path / "confusion.png").exists()
    assert "| random | model |" in report.read_text()
    assert set(json.loads((tmp_path / "metrics.json").read_text())["splits"]) == set(SPLITS)


def _fake_result(name, model_f1, baseline_f1, ece=0.01, cost=0.01, moved=0.0):
    from training.evaluate import SplitResult

    def m(f1, e=0.0):
        return {"async": {"f1": f1}, "ece": e, "cost_per_row": cost}

    model = {**m(model_f1, ece), "code_permutation_moved": moved}
    return SplitResult(name, {"model": model, "keyword_rule": m(baseline_f1)}, np.zeros(1), np.zeros(1))


def test_gate_check_finds_every_violation():
    from training.gate import DEFAULT_GATE_FILE

    gate = load_gate(DEFAULT_GATE_FILE)
    ok = [_fake_result(n, 0.99, 0.5) for n in gate["splits"]]
    assert check(gate, ok) == []
    bad = [
        _fake_result("random", 0.94, 0.5),
        _fake_result("time", 0.99, 0.96),
        _fake_result("unseen_templates", 0.99, 0.5, ece=0.2),
        _fake_result("unseen_partner_kinds", 0.99, 0.5, moved=0.2),
    ]
    violations = check(gate, bad)
    assert any(v.startswith("unseen_partner_kinds: 20.00% of decisions moved") for v in violations)
    assert any(v.startswith("random: async F1 0.9400 < 0.95") for v in violations)
    assert any(v.startswith("time: async F1 0.9900 is not 0.05 above keyword_rule") for v in violations)
    assert any(v.startswith("unseen_templates: ECE") for v in violations)
    assert "unseen_insurers: split was not evaluated" in violations


def test_train_writes_a_versioned_artifact_with_provenance(frame, tmp_path):
    from training.train import train_artifact

    history = tmp_path / "history.csv"
    outcomes = tmp_path / "outcomes.csv"
    write_failures_csv(frame.iloc[:2000], history)
    write_failures_csv(frame.iloc[2000:3000], outcomes)
    run = train_artifact([history, outcomes], tmp_path / "models")
    assert run.activated and active_version(tmp_path / "models") == run.version
    card = load_artifact(run.artifact).card
    assert card["training_data"]["rows"] == 3000
    assert [s["rows"] for s in card["training_data"]["sources"]] == [2000, 1000]
    assert card["metrics"]["holdout_random_20pct"]["model"]["async"]["f1"] > 0.8
    second = train_artifact([history], tmp_path / "models", holdout_metrics=False)
    assert not second.activated  # the registry already has an active version
    assert len(list_versions(tmp_path / "models")) == 2


def test_gate_checks_the_hard_set_overall_and_per_group():
    from training.gate import check_hard_set

    limits = {"min_async_f1": 0.8, "max_cost_per_row": 0.2, "margin_over_best_baseline": 0.05}
    limits["min_group_accuracy"] = {"hard_negative": 0.7}

    def figures(f1, cost, accuracy, keyword_f1):
        return {
            "model": {"async": {"f1": f1}, "cost_per_row": cost, "accuracy": accuracy},
            "keyword_rule": {"async": {"f1": keyword_f1}},
        }

    good = {"all": figures(0.9, 0.1, 0.9, 0.6), "hard_negative": figures(0.8, 0.1, 0.8, 0.3)}
    assert check_hard_set(limits, good) == []
    bad = {"all": figures(0.7, 0.3, 0.7, 0.68), "hard_negative": figures(0.5, 0.5, 0.6, 0.3)}
    violations = check_hard_set(limits, bad)
    assert len(violations) == 4, violations
    assert any("cost per row 0.3000 > 0.2" in v for v in violations)
    assert any(v.startswith("hard set hard_negative: accuracy 0.6000") for v in violations)
    assert check_hard_set(limits, {"all": good["all"]}) == ["hard set: no group hard_negative"]


def test_code_permutation_reassigns_codes_within_each_insurer():
    from training.evaluate import permute_codes

    frame = pd.DataFrame(
        {
            "insurer": ["a", "a", "a", "b", "b", "c"],
            "error_code": ["1", "2", "3", "x", None, "only"],
            "error_message": ["m"] * 6,
        }
    )
    moved = [permute_codes(frame, seed) for seed in range(20)]
    for permuted in moved:
        assert sorted(permuted["error_code"][:3]) == ["1", "2", "3"]  # a's codes, among a's rows
        rest = permuted["error_code"][3:]
        assert rest[3] == "x" and pd.isna(rest[4]) and rest[5] == "only"  # one code: nothing to permute
        assert list(permuted["error_message"]) == ["m"] * 6
    assert any(list(p["error_code"][:3]) != ["1", "2", "3"] for p in moved)


def test_template_folds_hold_every_template_out_exactly_once(frame):
    from training.splits import split_folds

    folds = split_folds("unseen_templates", frame, 3)
    assert len(folds) == 5
    tested = np.concatenate([test for _, test in folds])
    assert sorted(tested.tolist()) == list(range(len(frame)))  # every row tested once
    templates = frame["template_id"].astype(str).to_numpy()
    for train, test in folds:
        assert not set(templates[train]) & set(templates[test])  # a template is never on both sides
    with pytest.raises(SplitUnavailable):
        split_folds("unseen_templates", frame.drop(columns=["template_id"]), 0)
