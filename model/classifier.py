"""FailureClassifier: is a failure async-eligible (calibrated probability), and of which category.

fit(X, y, category):
1. FailureFeatures on all rows (unsupervised: vocabulary and IDF), hiding the insurer of an
   `insurer_dropout` share of rows and the error code of a `code_dropout` share, so the model also
   learns to decide for insurers it never saw and from the message alone.
2. A logistic regression on a stratified (1 - calibration_size) share of the rows: scikit-learn's
   objective and solver settings, fitted on the rows' distinct parts (model/design.py), which
   needs neither the materialized matrix nor time proportional to its size.
3. Platt scaling on the held-out share: p = 1 / (1 + exp(-(a * s + b))), s the regression's score.
4. The decision threshold minimizing expected cost on the held-out share, where a failure wrongly
   returned as final costs `cost_ratio` and one wrongly held async costs 1 (ties → nearest to the
   Bayes threshold 1 / (1 + cost_ratio)).
5. A multinomial logistic regression over the failure categories (when categories are given), blind
   to the insurer's identity.

`build_classifier(params)` is the one way to make one; the fast scorer (model.scorer) is built from a
fitted instance and gives the same numbers without pandas or scipy on the hot path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from model.design import RowDesign, as_sklearn, fit_logistic
from model.features import FailureFeatures
from model.schema import CATEGORIES, COST_RATIO

DEFAULT_PARAMS: dict[str, Any] = {
    "ngram_range": (2, 4),
    "word_ngram_range": (1, 3),
    "min_df": 2,
    "max_features": 200_000,
    "C": 8.0,
    "category_C": 8.0,
    "calibration_size": 0.2,
    "cost_ratio": COST_RATIO,
    "category_max_rows": 60_000,
    "insurer_dropout": 0.2,
    "code_dropout": 0.3,
    "random_state": 0,
}


#: L-BFGS iteration cap of both regressions (they converge in ~100 on the default data).
MAX_ITER = 3000


def bayes_threshold(cost_ratio: float) -> float:
    """With calibrated p, holding async costs (1 - p) and returning final costs cost_ratio * p."""
    return 1.0 / (1.0 + cost_ratio)


def choose_threshold(probability: np.ndarray, y: np.ndarray, cost_ratio: float) -> float:
    """The threshold in 0.01..0.99 with the least expected cost on (probability, y)."""
    grid = np.round(np.arange(0.01, 1.0, 0.01), 2)
    positives = y == 1
    costs = np.array(
        [cost_ratio * np.sum(positives & (probability < t)) + np.sum(~positives & (probability >= t)) for t in grid]
    )
    best = np.flatnonzero(costs == costs.min())
    target = bayes_threshold(cost_ratio)
    return float(grid[best[np.argmin(np.abs(grid[best] - target))]])


class FailureClassifier(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """Calibrated async-eligibility classifier with a category head."""

    def __init__(
        self,
        ngram_range: tuple[int, int] = (2, 4),
        word_ngram_range: tuple[int, int] = (1, 3),
        min_df: int = 2,
        max_features: int | None = 200_000,
        C: float = 8.0,
        category_C: float = 8.0,
        calibration_size: float = 0.2,
        cost_ratio: float = COST_RATIO,
        category_max_rows: int = 60_000,
        insurer_dropout: float = 0.2,
        code_dropout: float = 0.3,
        random_state: int = 0,
    ):
        self.ngram_range = ngram_range
        self.word_ngram_range = word_ngram_range
        self.code_dropout = code_dropout
        self.min_df = min_df
        self.max_features = max_features
        self.C = C
        self.category_C = category_C
        self.calibration_size = calibration_size
        self.cost_ratio = cost_ratio
        self.category_max_rows = category_max_rows
        self.insurer_dropout = insurer_dropout
        self.random_state = random_state

    def fit(self, X: pd.DataFrame, y: Any, category: Any = None) -> FailureClassifier:
        # One BLAS thread: L-BFGS steps are vector operations too small to share, and two OpenBLAS
        # threads made the whole fit 3.5x slower on a 2-core machine (measured; bench/training.py).
        with threadpool_limits(limits=1, user_api="blas"):
            return self._fit(X, y, category)

    def _fit(self, X: pd.DataFrame, y: Any, category: Any) -> FailureClassifier:
        labels = np.asarray(y, dtype=np.int64)
        if set(np.unique(labels)) != {0, 1}:
            raise ValueError("training needs both classes (async_eligible 0 and 1)")
        self.features_ = FailureFeatures(
            (int(self.ngram_range[0]), int(self.ngram_range[1])),
            self.min_df,
            self.max_features,
            self.insurer_dropout,
            self.random_state,
            (int(self.word_ngram_range[0]), int(self.word_ngram_range[1])),
            self.code_dropout,
        )
        design = self.features_.fit_design(X)  # the matrix as its distinct parts: see model/design.py
        rows = np.arange(design.n_rows)
        fit_rows, cal_rows = train_test_split(
            rows, test_size=self.calibration_size, stratify=labels, random_state=self.random_state
        )
        fitted = fit_logistic(design.take(fit_rows), labels[fit_rows], C=self.C, max_iter=MAX_ITER)
        self.classifier_ = as_sklearn(fitted, C=self.C, max_iter=MAX_ITER)
        scores = design.take(cal_rows).matvec(fitted.coef) + fitted.intercept
        platt = LogisticRegression(C=1e6, max_iter=1000).fit(scores.reshape(-1, 1), labels[cal_rows])
        self.calibration_a_ = float(platt.coef_[0, 0])
        self.calibration_b_ = float(platt.intercept_[0])
        self.threshold_ = choose_threshold(self._calibrate(scores), labels[cal_rows], self.cost_ratio)
        self.classes_ = np.array([0, 1])
        self.category_classifier_: LogisticRegression | None = None
        if category is not None:
            self._fit_categories(design, np.asarray(category, dtype=object))
        return self

    def _fit_categories(self, design: RowDesign, category: np.ndarray) -> None:
        known = np.array([c in CATEGORIES for c in category])
        rows = np.flatnonzero(known)
        if len(rows) > self.category_max_rows:
            rng = np.random.default_rng(self.random_state)
            rows = np.sort(rng.choice(rows, size=self.category_max_rows, replace=False))
        if len(set(category[rows])) < 2:
            return
        # The category says what went wrong, which must not hinge on the insurer's name: the head does
        # not see the insurer columns (zeroed, so their weights are exactly 0).
        matrix = design.take(rows).to_csr()
        names = self.features_.field_names()
        offset = self.features_.n_message_features_
        insurer_columns = [offset + i for i, name in enumerate(names) if name.startswith(("insurer=", "insurer_code="))]
        if insurer_columns:
            keep = np.ones(matrix.shape[1])
            keep[insurer_columns] = 0.0
            matrix = matrix @ sp.diags(keep)
        head = LogisticRegression(C=self.category_C, max_iter=MAX_ITER)
        self.category_classifier_ = head.fit(sp.csr_matrix(matrix), category[rows].astype(str))

    def _calibrate(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(1.0 / (1.0 + np.exp(-(self.calibration_a_ * scores + self.calibration_b_))))

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.classifier_.decision_function(self.features_.transform(X)))

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = self._calibrate(self.decision_function(X))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= self.threshold_).astype(np.int64)

    def predict_category_proba(self, X: pd.DataFrame) -> np.ndarray:
        if self.category_classifier_ is None:
            raise ValueError("this model was trained without categories")
        return np.asarray(self.category_classifier_.predict_proba(self.features_.transform(X)))

    @property
    def category_classes(self) -> list[str]:
        head = self.category_classifier_
        return [] if head is None else [str(c) for c in head.classes_]


def build_classifier(params: Mapping[str, Any] | None = None) -> FailureClassifier:
    """The one constructor: DEFAULT_PARAMS overridden by `params` (unknown keys are an error)."""
    merged = {**DEFAULT_PARAMS, **(params or {})}
    unknown = set(merged) - set(DEFAULT_PARAMS)
    if unknown:
        raise ValueError(f"unknown model parameters: {sorted(unknown)}")
    merged["ngram_range"] = tuple(merged["ngram_range"])
    merged["word_ngram_range"] = tuple(merged["word_ngram_range"])
    return FailureClassifier(**merged)
