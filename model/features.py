"""FailureFeatures: failure records → one sparse matrix [message TF-IDF | categorical | latency].

- message: over `normalize_message` text, two TF-IDF blocks, each L2-normalized: character 2–4-grams
  within words (`char_wb`: Chinese phrases of two to four characters need no segmenter, and Latin
  stems such as "timeout" inside "sockettimeoutexception") and Latin word 1–3-grams, which keep
  negation ("do not retry"; contractions are spelled out by the normalization). Single characters are
  no feature: they carried weight from the generator's style, not from the language of failures.
  Normalized messages repeat heavily, so each distinct one is vectorized once and rows index into it.
- categorical: one-hot `categorical_tokens` (insurer, operation, error-code tokens, HTTP status)
  through a DictVectorizer; distinct (insurer, operation, code, status) tuples are vectorized once.
- latency: the fixed LATENCY_FEATURES block (missing flag, log latency, bins, whole-second flag),
  computed with numpy; `model.text.latency_features` is the same mapping for one failure.

`fit_design` returns the training rows as those distinct parts plus row indexes (a RowDesign,
model/design.py) for the classifier to fit on without materializing the matrix.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction import DictVectorizer
from sklearn.feature_extraction.text import TfidfVectorizer

from model.design import RowDesign
from model.records import Failure, iter_failures
from model.text import (
    LATENCY_EDGES_MS,
    LATENCY_FEATURES,
    WHOLE_SECOND_SLACK,
    WORD_TOKEN_PATTERN,
    categorical_tokens,
    normalize_message,
)


def distinct_normalized(messages: list[str]) -> tuple[list[str], np.ndarray]:
    """Distinct normalized messages and, per input message, the index of its normalized form."""
    raw_codes, raw_uniques = pd.factorize(pd.Series(messages, dtype=object), use_na_sentinel=False)
    normalized = [normalize_message(m) for m in raw_uniques]
    norm_codes, norm_uniques = pd.factorize(pd.Series(normalized, dtype=object), use_na_sentinel=False)
    return [str(m) for m in norm_uniques], np.asarray(norm_codes)[raw_codes]


def distinct_categoricals(
    failures: list[Failure], code_hidden: np.ndarray | None = None
) -> tuple[list[dict[str, float]], np.ndarray]:
    """Token dicts of the distinct (insurer, operation, code, status[, code hidden]) tuples, and each
    row's index; `code_hidden` (training only) marks rows whose code tokens are left out."""
    hidden = np.zeros(len(failures), dtype=bool) if code_hidden is None else code_hidden
    seen: dict[tuple[Any, ...], int] = {}
    index = np.fromiter(
        (
            seen.setdefault((f.insurer, f.operation, f.error_code, f.http_status, bool(h)), len(seen))
            for f, h in zip(failures, hidden, strict=True)
        ),
        dtype=np.int64,
        count=len(failures),
    )
    dicts = [dict.fromkeys(categorical_tokens(*key[:4], code_hidden=key[4]), 1.0) for key in seen]
    return dicts, index


def message_vectorizers(
    ngram_range: tuple[int, int], word_ngram_range: tuple[int, int], min_df: int, max_features: int | None
) -> tuple[TfidfVectorizer, TfidfVectorizer]:
    """The character and the word TF-IDF vectorizers of the message block (unfitted)."""
    common: dict[str, Any] = {"min_df": min_df, "lowercase": False, "sublinear_tf": True, "dtype": np.float64}
    chars = TfidfVectorizer(analyzer="char_wb", ngram_range=ngram_range, max_features=max_features, **common)
    words = TfidfVectorizer(analyzer="word", token_pattern=WORD_TOKEN_PATTERN, ngram_range=word_ngram_range, **common)
    return chars, words


def _pair(values: Any) -> tuple[int, int]:
    low, high = values
    return int(low), int(high)


def _plain_vocabulary(vectorizer: TfidfVectorizer) -> None:
    # plain ints: numpy ints in the vocabulary make skops artifacts 30x larger and slow to load
    vectorizer.vocabulary_ = {term: int(index) for term, index in vectorizer.vocabulary_.items()}


def latency_block(failures: list[Failure]) -> sp.csr_matrix:
    """The LATENCY_FEATURES columns for every failure (vectorized `latency_features`)."""
    latency = np.array([np.nan if f.latency_ms is None else f.latency_ms for f in failures], dtype=np.float64)
    n = len(latency)
    block = np.zeros((n, len(LATENCY_FEATURES)), dtype=np.float64)
    missing = np.isnan(latency) | (latency < 0)
    present = ~missing
    block[missing, 0] = 1.0
    values = latency[present]
    block[present, 1] = np.log1p(values) / 10.0
    bins = np.searchsorted(np.asarray(LATENCY_EDGES_MS), values, side="right")
    block[np.flatnonzero(present), 2 + bins] = 1.0
    seconds = values / 1000.0
    whole = (seconds >= 1.0) & (seconds - np.floor(seconds) < WHOLE_SECOND_SLACK)
    block[np.flatnonzero(present)[whole], len(LATENCY_FEATURES) - 1] = 1.0
    return sp.csr_matrix(block)


class FailureFeatures(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Sparse features of failure records (a DataFrame with the contract's feature columns)."""

    def __init__(
        self,
        ngram_range: tuple[int, int] = (2, 4),
        min_df: int = 2,
        max_features: int | None = 200_000,
        insurer_dropout: float = 0.0,
        random_state: int = 0,
        word_ngram_range: tuple[int, int] = (1, 3),
        code_dropout: float = 0.0,
    ):
        self.ngram_range = ngram_range
        self.min_df = min_df
        self.max_features = max_features
        self.insurer_dropout = insurer_dropout
        self.random_state = random_state
        self.word_ngram_range = word_ngram_range
        self.code_dropout = code_dropout

    def fit(self, X: pd.DataFrame, y: Any = None) -> FailureFeatures:
        self.fit_transform(X)
        return self

    def fit_transform(self, X: pd.DataFrame, y: Any = None, **fit_params: Any) -> sp.csr_matrix:
        return self.fit_design(X).to_csr()

    def fit_design(self, X: pd.DataFrame) -> RowDesign:
        """Fit, and return the training rows as a RowDesign (the matrix's distinct parts, not the matrix)."""
        failures = list(iter_failures(X))
        distinct, message_index = distinct_normalized([f.error_message for f in failures])
        chars, words = message_vectorizers(
            _pair(self.ngram_range), _pair(self.word_ngram_range), self.min_df, self.max_features
        )
        char_block = chars.fit_transform(distinct)
        try:
            word_block = words.fit_transform(distinct)
        except ValueError:  # no Latin word in any message (an all-Chinese history): an empty word block
            words = message_vectorizers((2, 2), (1, 1), 1, None)[1].fit(["<none>"])
            word_block = sp.csr_matrix((len(distinct), len(words.vocabulary_)))
        _plain_vocabulary(chars)
        _plain_vocabulary(words)
        self.message_vectorizer_ = chars
        self.word_vectorizer_ = words
        self.n_char_features_ = len(chars.vocabulary_)
        self.n_message_features_ = self.n_char_features_ + len(words.vocabulary_)
        messages = sp.hstack([char_block, word_block], format="csr")
        rng = np.random.default_rng(self.random_state)
        hide_code = rng.random(len(failures)) < self.code_dropout if self.code_dropout else None
        dicts, categorical_index = distinct_categoricals(self._drop_insurers(failures), hide_code)
        self.categorical_vectorizer_ = DictVectorizer(dtype=np.float64, sort=True)
        categoricals = self.categorical_vectorizer_.fit_transform(dicts)
        return RowDesign(messages, message_index, categoricals, categorical_index, latency_block(failures))

    def _drop_insurers(self, failures: list[Failure]) -> list[Failure]:
        """Training only: hide the insurer of a random `insurer_dropout` share of rows, so the model also
        learns to decide without insurer identity — which is what it must do for an insurer it never saw."""
        if not self.insurer_dropout:
            return failures
        rng = np.random.default_rng(self.random_state + 1)
        hide = rng.random(len(failures)) < self.insurer_dropout
        return [f._replace(insurer=None) if h else f for f, h in zip(failures, hide, strict=True)]

    def transform(self, X: pd.DataFrame) -> sp.csr_matrix:
        return self.transform_failures(list(iter_failures(X)))

    def transform_failures(self, failures: list[Failure]) -> sp.csr_matrix:
        distinct, message_index = distinct_normalized([f.error_message for f in failures])
        messages = sp.hstack(
            [self.message_vectorizer_.transform(distinct), self.word_vectorizer_.transform(distinct)], format="csr"
        )
        dicts, categorical_index = distinct_categoricals(failures)
        categoricals = self.categorical_vectorizer_.transform(dicts)
        return sp.hstack(
            [messages[message_index], categoricals[categorical_index], latency_block(failures)], format="csr"
        )

    def field_names(self) -> list[str]:
        """Names of the columns after the message block, in order: categorical, then latency."""
        return [*self.categorical_vectorizer_.feature_names_, *LATENCY_FEATURES]

    def message_grams(self) -> list[str]:
        """The message block's n-grams in column order: character n-grams, then word n-grams."""
        return [
            *self.message_vectorizer_.get_feature_names_out().tolist(),
            *self.word_vectorizer_.get_feature_names_out().tolist(),
        ]

    def feature_names(self) -> list[str]:
        """Readable names: `text:'<n-gram>'` for the message block, the field feature name otherwise."""
        return [f"text:{g!r}" for g in self.message_grams()] + self.field_names()
