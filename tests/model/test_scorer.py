"""The fast scorer against the sklearn reference path, and the classifier's contract."""

import random
import re
import unicodedata

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


# -- explanations a person reads (docs/contract.md §7) ---------------------------------------------

KINDS = {"text", "code", "status", "latency", "insurer", "operation"}
CJK = re.compile(r"[\u3400-\u9fff]")


def test_text_spans_sum_the_ngrams_inside_them():
    from model.scorer import text_spans

    chars = {"系统": 1.0, "统繁": 0.5, "繁忙": 2.0, "忙请": 0.1, "稍后": 1.5, "错误": -3.0}
    words = {"do": -0.2, "do not": -1.0, "not retry": -2.0, "retry": 0.4}
    spans = text_spans("系统繁忙请稍后 do not retry 错误", chars, words, (2, 4), (1, 3))
    by_span = {s.span: s.weight for s in spans}
    assert by_span["系统繁忙"] == pytest.approx(3.5)  # 系统 + 统繁 + 繁忙: the phrase, not its characters
    assert by_span["do not retry"] == pytest.approx(-0.2 - 1.0 - 2.0 + 0.4)
    assert by_span["错误"] == pytest.approx(-3.0)
    # strongest first, and no two spans overlap
    assert [abs(s.weight) for s in spans] == sorted((abs(s.weight) for s in spans), reverse=True)
    assert "系统" not in by_span and "繁忙" not in by_span


def test_a_repeated_ngram_shares_its_weight_among_its_places():
    from model.scorer import text_spans

    spans = text_spans("超时 超时", {"超时": 2.0}, {}, (2, 4), (1, 1))
    assert [s.weight for s in spans] == [pytest.approx(1.0), pytest.approx(1.0)]


def test_explanations_are_words_and_phrases_of_the_message(trained):
    scorer = FastScorer(trained)
    failures = _varied_failures(600, seed=8)
    texts = 0
    for f in failures:
        folded = unicodedata.normalize("NFKC", f.error_message).casefold()
        for item in scorer.score(f).explanation:
            assert item.kind in KINDS
            if item.kind != "text":
                assert item.span is None
                continue
            texts += 1
            assert item.span and item.span in folded, (item.span, f.error_message)
            if CJK.search(item.span):
                assert len(item.span) >= 2
            else:  # whole Latin words: the span is bounded by non-letters in the message
                for match in re.finditer(re.escape(item.span), folded):
                    before = folded[match.start() - 1] if match.start() else " "
                    after = folded[match.end()] if match.end() < len(folded) else " "
                    if not before.isalpha() and not after.isalpha():
                        break
                else:
                    raise AssertionError(f"{item.span!r} is not whole words of {folded!r}")
    assert texts > 300  # most explanations read the message


def test_a_busy_message_is_explained_by_its_phrase(trained):
    score = FastScorer(trained).score(Failure("someone_new", "pay", None, "系统繁忙，请稍后再试", 503, 900.0))
    spans = [item.span for item in score.explanation if item.kind == "text"]
    assert any(span and "繁忙" in span and len(span) >= 4 for span in spans), spans
