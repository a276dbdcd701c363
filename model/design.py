"""RowDesign: the training matrix kept as its distinct parts, and a logistic regression fitted on it.

Row i of the feature matrix is `[messages[message_index[i]] | categoricals[categorical_index[i]] |
latency[i]]`. Failure histories repeat a few thousand normalized messages and code tuples over
millions of rows, so the parts are small where the materialized matrix is not (1M rows: ~2 GB and
two copies of it while sklearn fits). The products a gradient method needs never materialize it:

    X @ w   = (M @ w_m)[message_index] + (C @ w_c)[categorical_index] + L @ w_l
    X.T @ r = [M.T @ bincount(message_index, r) | C.T @ bincount(categorical_index, r) | L.T @ r]

`fit_logistic` minimizes exactly scikit-learn's objective for `LogisticRegression(C, lbfgs)` on the
binary problem — mean log-loss + ||w||² / (2·C·n), intercept not penalized — with the same L-BFGS-B
settings, starting from zero, so it reaches the same optimum (a test holds it to sklearn's), at a
cost per iteration that grows with the distinct parts plus O(n), not with the matrix's non-zeros.
`as_sklearn` wraps the result in a fitted `LogisticRegression`, the reference path and the artifact
format being unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import scipy.sparse as sp
from scipy.optimize import minimize
from scipy.special import expit
from sklearn.linear_model import LogisticRegression

#: scikit-learn's L-BFGS-B settings for LogisticRegression (sklearn/linear_model/_logistic.py).
LBFGS_MAXLS: Final = 50
LBFGS_FTOL: Final = 64 * float(np.finfo(float).eps)


@dataclass(frozen=True)
class RowDesign:
    """n rows of [message block | categorical block | latency block] as distinct parts + row indexes."""

    messages: sp.csr_matrix
    message_index: np.ndarray
    categoricals: sp.csr_matrix
    categorical_index: np.ndarray
    latency: sp.csr_matrix

    @property
    def n_rows(self) -> int:
        return int(self.message_index.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.messages.shape[1] + self.categoricals.shape[1] + self.latency.shape[1])

    def take(self, rows: np.ndarray) -> RowDesign:
        """The design of a subset of rows, in the order given (the distinct parts are shared)."""
        return RowDesign(
            self.messages, self.message_index[rows], self.categoricals, self.categorical_index[rows], self.latency[rows]
        )

    def to_csr(self) -> sp.csr_matrix:
        """The materialized matrix (what FailureFeatures.transform returns)."""
        return sp.hstack(
            [self.messages[self.message_index], self.categoricals[self.categorical_index], self.latency], format="csr"
        )

    def _split(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        m = self.messages.shape[1]
        c = m + self.categoricals.shape[1]
        return w[:m], w[m:c], w[c:]

    def matvec(self, w: np.ndarray) -> np.ndarray:
        """X @ w for a weight vector over all columns."""
        w_m, w_c, w_l = self._split(w)
        out = np.asarray(self.messages @ w_m)[self.message_index]
        out += np.asarray(self.categoricals @ w_c)[self.categorical_index]
        out += self.latency @ w_l
        return np.asarray(out, dtype=np.float64)

    def rmatvec(self, r: np.ndarray) -> np.ndarray:
        """X.T @ r for a vector over the rows."""
        per_message = np.bincount(self.message_index, weights=r, minlength=self.messages.shape[0])
        per_categorical = np.bincount(self.categorical_index, weights=r, minlength=self.categoricals.shape[0])
        return np.concatenate(
            [self.messages.T @ per_message, self.categoricals.T @ per_categorical, self.latency.T @ r]
        )


@dataclass(frozen=True)
class LogisticFit:
    coef: np.ndarray
    intercept: float
    n_iter: int


def fit_logistic(design: RowDesign, y: np.ndarray, *, C: float, max_iter: int = 100, tol: float = 1e-4) -> LogisticFit:
    """Binary L2 logistic regression on `design` (labels 0/1), sklearn's objective and L-BFGS-B settings."""
    labels = np.asarray(y, dtype=np.float64)
    n, p = design.n_rows, design.n_features
    penalty = 1.0 / (C * n)

    def loss_and_gradient(params: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = params[:p], params[p]
        z = design.matvec(w) + b
        loss = float(np.mean(np.logaddexp(0.0, z) - labels * z)) + 0.5 * penalty * float(w @ w)
        residual = (expit(z) - labels) / n
        gradient = np.empty(p + 1)
        gradient[:p] = design.rmatvec(residual) + penalty * w
        gradient[p] = residual.sum()
        return loss, gradient

    result = minimize(
        loss_and_gradient,
        np.zeros(p + 1),
        method="L-BFGS-B",
        jac=True,
        options={"maxiter": max_iter, "maxls": LBFGS_MAXLS, "gtol": tol, "ftol": LBFGS_FTOL},
    )
    return LogisticFit(np.asarray(result.x[:p]), float(result.x[p]), int(result.nit))


def as_sklearn(fit: LogisticFit, *, C: float, max_iter: int) -> LogisticRegression:
    """A fitted `LogisticRegression` holding `fit` (what sklearn's own fit would have set)."""
    model = LogisticRegression(C=C, max_iter=max_iter)
    model.coef_ = fit.coef.reshape(1, -1)
    model.intercept_ = np.array([fit.intercept])
    model.classes_ = np.array([0, 1])
    model.n_features_in_ = fit.coef.shape[0]
    model.n_iter_ = np.array([fit.n_iter], dtype=np.int32)
    return model
