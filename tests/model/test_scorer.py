"""The fast scorer against the sklearn reference path, and the classifier's contract."""

import random

import numpy as np
import pandas as pd
import pytest

from model.classifier import bayes_threshold, build_classifier, choose_threshold
from model.records import Failure, frame_from_failures, iter_failures
from model.schema import CATEGORIES
from model.scorer import FastScorer
from training.generate import generate_failures


@pytest.fixture(scope="module")
def trained():
    frame = generate_failures(8000, seed=11)
    return build_classifier().fit(frame, frame["async_eligible"], frame["category"])


def _varied_failures(n: int, seed: int) -> list[Failure]:
    """Generated failures plus adversarial variations: unseen insurers/codes, empty and odd messages."""
    rng = random.Random(seed)
    base = list(iter_failures(generate_failures(n, seed=seed + 1)))
    out = []
    for f in base:
        roll = rng.random()
        if roll < 0.1:
            f = f._replace(insurer=f"unseen_{rng.randint(0, 999)}", error_code=f"ZZ{rng.randint(0, 99999)}")
        elif roll < 0.15:
            f = f._replace(error_message="")
        elif roll < 0.2:
            f = f._replace(error_message="".join(chr(rng.randint(0x20, 0x9FFF)) for _ in range(rng.randint(1, 60))))
        elif roll < 0.25:
            f = f._replace(http_status=None, latency_ms=None, error_code=None, operation=None)
        out.append(f)
    return out


def test_fast_path_matches_the_pipeline_on_10k_varied_records(trained):
    failures = _varied_failures(10_000, seed=21)
    reference = trained.predict_proba(frame_from_failures(failures))[:, 1]
    scorer = FastScorer(trained)
    fast = np.array([scorer.score(f).probability for f in failures])
    assert len(failures) >= 10_000
    assert np.max(np.abs(fast - reference)) <= 1e-9
    # and again from a warm cache
    again = np.array([scorer.score(f).probability for f in failures])
    assert np.max(np.abs(again - reference)) <= 1e-9


def test_fast_path_decision_and_category_side_agree(trained):
    scorer = FastScorer(trained)
    for f in _varied_failures(500, seed=5):
        score = scorer.score(f)
        assert score.async_eligible == (score.probability >= scorer.threshold)
        assert score.category is not None
        assert CATEGORIES[score.category] == score.async_eligible
        assert 0 < len(score.explanation) <= 5


def test_category_head_matches_reference_argmax(trained):
    frame = generate_failures(400, seed=99)
    probabilities = trained.predict_category_proba(frame)
    scorer = FastScorer(trained)
    classes = trained.category_classes
    for row, failure in zip(probabilities, iter_failures(frame), strict=True):
        score = scorer.score(failure)
        side = [i for i, c in enumerate(classes) if CATEGORIES[c] == score.async_eligible]
        expected = classes[max(side, key=lambda i: row[i])]
        assert score.category == expected
        assert score.category_probability == pytest.approx(row[classes.index(expected)], abs=1e-9)


def test_obvious_cases_go_the_right_way(trained):
    scorer = FastScorer(trained)
    transient = Failure(
        "never_seen_insurer", "pay", None, "java.net.SocketTimeoutException: Read timed out", None, 30012.0
    )
    definitive = Failure("never_seen_insurer", "underwrite", "E2001", "被保人年龄不符合投保要求", 200, 35.0)
    assert scorer.score(transient).async_eligible
    assert not scorer.score(definitive).async_eligible


def test_threshold_follows_the_cost_ratio():
    assert bayes_threshold(5.0) == pytest.approx(1 / 6)
    rng = np.random.default_rng(0)
    p = rng.uniform(size=200_000)
    y = (rng.uniform(size=200_000) < p).astype(int)  # perfectly calibrated
    # the expected cost is flat around its minimum, so sampling noise moves the argmin a little
    assert choose_threshold(p, y, 5.0) == pytest.approx(1 / 6, abs=0.04)
    assert choose_threshold(p, y, 1.0) == pytest.approx(0.5, abs=0.04)
    assert choose_threshold(p, y, 5.0) < choose_threshold(p, y, 1.0) < choose_threshold(p, y, 0.2)


def test_single_class_is_refused():
    frame = generate_failures(500, seed=1)
    with pytest.raises(ValueError, match="both classes"):
        build_classifier().fit(frame, np.ones(len(frame), dtype=int))


def test_unknown_parameters_are_refused():
    with pytest.raises(ValueError, match="unknown model parameters"):
        build_classifier({"n_trees": 3})


def test_reference_path_handles_missing_columns_and_values(trained):
    frame = pd.DataFrame({"insurer": ["x"], "operation": ["pay"], "error_message": ["系统繁忙"]})
    p = trained.predict_proba(frame)
    assert p.shape == (1, 2)
    assert 0.0 <= p[0, 1] <= 1.0
