"""FastScorer: the fitted FailureClassifier as plain lookups and a few dot products per failure.

It gives the same probabilities as `FailureClassifier.predict_proba` (the reference path; a test
holds them within 1e-9) at a fraction of the cost: no DataFrame, no scipy.sparse. The score splits
into three parts that add up:

    s = message part + categorical part + latency part
    message part     = Σ_text w_j · tfidf_j / ‖tfidf‖   cached per message and per normalized message
    categorical part = intercept + Σ w_f over the one-hot tokens
                                                        cached per (insurer, operation, code, status)
    latency part     = Σ w_f · x_f over ≤ 3 latency features
    p = 1 / (1 + exp(-(a · s + b)))                     (Platt calibration)

The category head's logits split the same way; the category is the argmax among categories on
the decided side (async or final). Real failure streams repeat messages and code tuples, so most
failures cost two dictionary hits and a handful of additions.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Final, TypeVar

import numpy as np

from model.classifier import FailureClassifier
from model.records import Failure
from model.schema import CATEGORIES
from model.text import LATENCY_FEATURES, categorical_tokens, latency_features, normalize_message

TOP_FEATURES: Final = 5
K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Contribution:
    feature: str
    weight: float


@dataclass(frozen=True)
class Score:
    probability: float
    async_eligible: bool
    category: str | None
    category_probability: float | None
    explanation: tuple[Contribution, ...]


@dataclass(frozen=True)
class _Part:
    """A cached additive part of the score: its sum, category logits and largest contributions."""

    score: float
    logits: np.ndarray
    top: tuple[tuple[str, float], ...]
    known_share: float = 1.0  # message parts: share of n-grams in the vocabulary (drift signal)


def _abs_weight(item: tuple[str, float]) -> float:
    return abs(item[1])


class FastScorer:
    """Scores Failures with a fitted FailureClassifier's weights."""

    def __init__(self, classifier: FailureClassifier, *, cache_size: int = 100_000):
        features = classifier.features_
        vectorizer = features.message_vectorizer_
        n_text = features.n_message_features_
        coef = np.asarray(classifier.classifier_.coef_, dtype=np.float64)[0]
        self._analyzer = vectorizer.build_analyzer()
        self._vocabulary: dict[str, int] = vectorizer.vocabulary_
        self._idf = np.asarray(vectorizer.idf_, dtype=np.float64)
        self._text_weights = coef[:n_text]
        self._text_names = [f"text:{g!r}" for g in vectorizer.get_feature_names_out()]
        field_names = features.field_names()
        field_columns = {name: n_text + i for i, name in enumerate(field_names)}
        self._weights = {name: float(coef[column]) for name, column in field_columns.items()}
        self._intercept = float(classifier.classifier_.intercept_[0])
        self._a = float(classifier.calibration_a_)
        self._b = float(classifier.calibration_b_)
        self.threshold = float(classifier.threshold_)
        self.categories = classifier.category_classes
        head = classifier.category_classifier_
        self._has_head = head is not None
        n_categories = len(self.categories)
        if head is not None:
            weights = np.asarray(head.coef_, dtype=np.float64)
            intercepts = np.asarray(head.intercept_, dtype=np.float64)
            if weights.shape[0] == 1:  # a two-category head is a binary regression
                weights = np.vstack([-weights, weights])
                intercepts = np.array([-intercepts[0], intercepts[0]])
        else:
            weights = np.zeros((0, coef.shape[0]))
            intercepts = np.zeros(0)
        self._cat_text = np.ascontiguousarray(weights[:, :n_text].T)  # (n_text, n_categories)
        self._cat_weights = {name: weights[:, column].copy() for name, column in field_columns.items()}
        self._cat_intercept = intercepts
        self._async_side = [CATEGORIES.get(c, False) for c in self.categories]
        self._zero_logits = np.zeros(n_categories)
        self._latency_names = set(LATENCY_FEATURES)
        self._messages: dict[str, _Part] = {}
        self._normalized: dict[str, _Part] = {}
        self._categoricals: dict[tuple[str | None, str | None, str | None, int | None], _Part] = {}
        self._cache_size = cache_size

    # -- cached parts -----------------------------------------------------------------------------

    def _remember(self, cache: dict[K, _Part], key: K, part: _Part) -> _Part:
        if len(cache) >= self._cache_size:
            cache.clear()  # crude but thread-safe under the GIL; a full cache means a new regime
        cache[key] = part
        return part

    def _message_part(self, message: str) -> _Part:
        part = self._messages.get(message)
        if part is not None:
            return part
        normalized = normalize_message(message)
        part = self._normalized.get(normalized)
        if part is None:
            part = self._remember(self._normalized, normalized, self._vectorize(normalized))
        return self._remember(self._messages, message, part)

    def _vectorize(self, normalized: str) -> _Part:
        counts: dict[int, int] = {}
        total = 0
        vocabulary = self._vocabulary
        for gram in self._analyzer(normalized):
            total += 1
            column = vocabulary.get(gram)
            if column is not None:
                counts[column] = counts.get(column, 0) + 1
        known = sum(counts.values()) / total if total else 1.0
        if not counts:
            return _Part(0.0, self._zero_logits, (), known)
        columns = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
        tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        values = (np.log(tf) + 1.0) * self._idf[columns]
        values /= math.sqrt(float(np.dot(values, values)))
        contributions = values * self._text_weights[columns]
        logits = values @ self._cat_text[columns] if self._has_head else self._zero_logits
        order = np.argsort(-np.abs(contributions))[:TOP_FEATURES]
        top = tuple((self._text_names[columns[i]], float(contributions[i])) for i in order)
        return _Part(float(contributions.sum()), logits, top, known)

    def _categorical_part(self, failure: Failure) -> _Part:
        key = (failure.insurer, failure.operation, failure.error_code, failure.http_status)
        part = self._categoricals.get(key)
        if part is not None:
            return part
        # the intercepts ride along with the (cached) categorical part: two additions less per failure
        score, logits, top = self._intercept, self._cat_intercept.copy(), []
        for token in categorical_tokens(*key):
            weight = self._weights.get(token)
            if weight is not None:
                score += weight
                logits += self._cat_weights[token]
                top.append((token, weight))
        top.sort(key=_abs_weight, reverse=True)
        return self._remember(self._categoricals, key, _Part(score, logits, tuple(top[:TOP_FEATURES])))

    # -- scoring ----------------------------------------------------------------------------------

    def score(self, failure: Failure) -> Score:
        message = self._message_part(failure.error_message)
        fields = self._categorical_part(failure)
        total = message.score + fields.score  # fields.score includes the intercept
        logits = message.logits + fields.logits if self._has_head else self._zero_logits
        latency = []
        for name, value in latency_features(failure.latency_ms).items():
            weight = self._weights.get(name)
            if weight is not None:
                total += weight * value
                latency.append((name, weight * value))
                if self._has_head:  # in place: `logits` is this call's own array
                    logits += self._cat_weights[name] if value == 1.0 else self._cat_weights[name] * value
        probability = 1.0 / (1.0 + math.exp(-(self._a * total + self._b)))
        eligible = probability >= self.threshold
        category, category_probability = self._category(logits, eligible)
        ranked = sorted((*message.top, *fields.top, *latency), key=_abs_weight, reverse=True)[:TOP_FEATURES]
        explanation = tuple(Contribution(name, weight) for name, weight in ranked)
        return Score(probability, eligible, category, category_probability, explanation)

    def _category(self, logits: np.ndarray, eligible: bool) -> tuple[str | None, float | None]:
        if not self._has_head:
            return None, None
        values = logits.tolist()
        top = max(values)
        denominator = sum(math.exp(v - top) for v in values)
        side = [i for i, is_async in enumerate(self._async_side) if is_async == eligible] or list(range(len(values)))
        best = max(side, key=values.__getitem__)
        return self.categories[best], math.exp(values[best] - top) / denominator

    def known_ngram_share(self, message: str) -> float:
        """Share of the message's n-grams the model has seen (1.0: all; a drift signal)."""
        return self._message_part(message).known_share

    def score_many(self, failures: list[Failure]) -> list[Score]:
        return [self.score(f) for f in failures]
