"""RowDesign and fit_logistic: the factored training matrix and its regression against scikit-learn's."""

import numpy as np
import pytest
from scipy.special import expit
from sklearn.linear_model import LogisticRegression

from model.design import as_sklearn, fit_logistic
from model.features import FailureFeatures
from training.generate import generate_failures


@pytest.fixture(scope="module")
def frame():
    return generate_failures(3000, seed=5)


@pytest.fixture(scope="module")
def fitted(frame):
    features = FailureFeatures(ngram_range=(1, 3), insurer_dropout=0.0)
    return features, features.fit_design(frame)


def test_the_design_materializes_to_what_transform_returns(frame, fitted):
    features, design = fitted
    expected = features.transform(frame)
    matrix = design.to_csr()
    assert matrix.shape == expected.shape == (len(frame), design.n_features)
    assert abs(matrix - expected).max() <= 1e-12  # TF-IDF fit_transform and transform differ by an ulp


def test_products_equal_the_materialized_matrix_ones(fitted):
    _, design = fitted
    rng = np.random.default_rng(0)
    rows = rng.permutation(design.n_rows)[:1000]
    for part in (design, design.take(rows)):
        matrix = part.to_csr()
        w = rng.normal(size=part.n_features)
        r = rng.normal(size=part.n_rows)
        np.testing.assert_allclose(part.matvec(w), matrix @ w, rtol=0, atol=1e-10)
        np.testing.assert_allclose(part.rmatvec(r), matrix.T @ r, rtol=0, atol=1e-10)


def test_fit_reaches_sklearns_optimum(frame, fitted):
    _, design = fitted
    y = frame["async_eligible"].to_numpy()
    ours = fit_logistic(design, y, C=8.0, max_iter=3000, tol=1e-8)
    reference = LogisticRegression(C=8.0, max_iter=3000, tol=1e-8).fit(design.to_csr(), y)
    ours_p = expit(design.matvec(ours.coef) + ours.intercept)
    np.testing.assert_allclose(ours_p, reference.predict_proba(design.to_csr())[:, 1], rtol=0, atol=1e-5)
    # the unpenalized intercept trades off against columns present in nearly every row (the
    # status and latency one-hots): both solvers stop within 1e-8 of a flat optimum, not at one point,
    # so those weights agree to a few 1e-4 while the probabilities above agree to 1e-5
    np.testing.assert_allclose(ours.coef, reference.coef_[0], rtol=0, atol=5e-4)
    assert ours.intercept == pytest.approx(reference.intercept_[0], abs=5e-4)


def test_the_result_is_a_fitted_sklearn_model(frame, fitted):
    _, design = fitted
    y = frame["async_eligible"].to_numpy()
    fit = fit_logistic(design, y, C=1.0)
    model = as_sklearn(fit, C=1.0, max_iter=100)
    matrix = design.to_csr()
    np.testing.assert_allclose(model.decision_function(matrix), matrix @ fit.coef + fit.intercept, atol=1e-12)
    assert model.predict(matrix).shape == (len(frame),)
    assert list(model.classes_) == [0, 1]
    assert 0 < fit.n_iter <= 100
