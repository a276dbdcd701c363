"""The serving file: the fitted model as the tables the fast scorer reads, written at training time.

`serve` needs only these tables (vocabularies, IDF, weights, calibration, threshold, categories) to
score, so it loads neither scikit-learn nor skops: the cold start stays well under two seconds. The
file is `serving.npz` beside the skops model, its SHA-256 on the card; the skops model stays the
reference (evaluation, retraining, the equality test of the fast scorer) and is loaded on demand.

Layout (numpy .npz, no pickles): vocabularies and feature names as one '\\n'-joined UTF-8 string each
(normalized messages never hold a newline), numeric tables as float64 arrays, scalars in `meta`
(JSON). Reading builds dicts from them; nothing in it can execute code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

if TYPE_CHECKING:
    from model.classifier import FailureClassifier

SERVING_FILE: Final = "serving.npz"
SERVING_FORMAT: Final = 1


@dataclass(frozen=True)
class ScorerTables:
    """What the fast scorer needs of a fitted FailureClassifier."""

    char_range: tuple[int, int]
    word_range: tuple[int, int]
    word_pattern: str
    char_terms: list[str]  # in column order: the vocabulary is {term: index}
    word_terms: list[str]
    char_idf: np.ndarray
    word_idf: np.ndarray
    field_names: list[str]
    coef: np.ndarray  # binary head, over [char | word | fields]
    intercept: float
    calibration_a: float
    calibration_b: float
    threshold: float
    categories: list[str]
    category_coef: np.ndarray  # (n_categories, n_features); a two-category head is one row
    category_intercept: np.ndarray


def tables_of(classifier: FailureClassifier) -> ScorerTables:
    """The tables of a fitted classifier."""
    features = classifier.features_
    chars, words = features.message_vectorizer_, features.word_vectorizer_
    head = classifier.category_classifier_
    n = int(np.asarray(classifier.classifier_.coef_).shape[1])
    return ScorerTables(
        char_range=(int(chars.ngram_range[0]), int(chars.ngram_range[1])),
        word_range=(int(words.ngram_range[0]), int(words.ngram_range[1])),
        word_pattern=str(words.token_pattern),
        char_terms=_terms(chars.vocabulary_),
        word_terms=_terms(words.vocabulary_),
        char_idf=np.asarray(chars.idf_, dtype=np.float64),
        word_idf=np.asarray(words.idf_, dtype=np.float64),
        field_names=list(features.field_names()),
        coef=np.asarray(classifier.classifier_.coef_, dtype=np.float64)[0],
        intercept=float(classifier.classifier_.intercept_[0]),
        calibration_a=float(classifier.calibration_a_),
        calibration_b=float(classifier.calibration_b_),
        threshold=float(classifier.threshold_),
        categories=classifier.category_classes,
        category_coef=np.zeros((0, n)) if head is None else np.asarray(head.coef_, dtype=np.float64),
        category_intercept=np.zeros(0) if head is None else np.asarray(head.intercept_, dtype=np.float64),
    )


def _terms(vocabulary: dict[str, int]) -> list[str]:
    terms = [""] * len(vocabulary)
    for term, index in vocabulary.items():
        terms[index] = term
    return terms


def _joined(values: list[str]) -> np.ndarray:
    if any("\n" in v for v in values):
        raise ValueError("a term holds a newline; the serving file cannot store it")
    return np.frombuffer("\n".join(values).encode("utf-8"), dtype=np.uint8)


def _split(array: np.ndarray) -> list[str]:
    text = array.tobytes().decode("utf-8")
    return text.split("\n") if text else []


def write_serving_file(tables: ScorerTables, path: Path) -> None:
    meta = {
        "format": SERVING_FORMAT,
        "char_range": list(tables.char_range),
        "word_range": list(tables.word_range),
        "word_pattern": tables.word_pattern,
        "intercept": tables.intercept,
        "calibration_a": tables.calibration_a,
        "calibration_b": tables.calibration_b,
        "threshold": tables.threshold,
        "categories": tables.categories,
        "n_char_terms": len(tables.char_terms),
        "n_word_terms": len(tables.word_terms),
        "n_field_names": len(tables.field_names),
    }
    with path.open("wb") as handle:
        np.savez(
            handle,
            meta=np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8),
            char_terms=_joined(tables.char_terms),
            word_terms=_joined(tables.word_terms),
            field_names=_joined(tables.field_names),
            char_idf=tables.char_idf,
            word_idf=tables.word_idf,
            coef=tables.coef,
            category_coef=tables.category_coef,
            category_intercept=tables.category_intercept,
        )


def read_serving_file(path: Path) -> ScorerTables:
    """The tables of a serving file; ValueError when it is not one (or not of this format)."""
    with np.load(path, allow_pickle=False) as data:
        meta: dict[str, Any] = json.loads(data["meta"].tobytes().decode("utf-8"))
        if meta.get("format") != SERVING_FORMAT:
            raise ValueError(f"serving file format {meta.get('format')!r}, this asyncgate reads {SERVING_FORMAT}")
        tables = ScorerTables(
            char_range=(int(meta["char_range"][0]), int(meta["char_range"][1])),
            word_range=(int(meta["word_range"][0]), int(meta["word_range"][1])),
            word_pattern=str(meta["word_pattern"]),
            char_terms=_split(data["char_terms"]),
            word_terms=_split(data["word_terms"]),
            char_idf=np.array(data["char_idf"], dtype=np.float64),
            word_idf=np.array(data["word_idf"], dtype=np.float64),
            field_names=_split(data["field_names"]),
            coef=np.array(data["coef"], dtype=np.float64),
            intercept=float(meta["intercept"]),
            calibration_a=float(meta["calibration_a"]),
            calibration_b=float(meta["calibration_b"]),
            threshold=float(meta["threshold"]),
            categories=[str(c) for c in meta["categories"]],
            category_coef=np.array(data["category_coef"], dtype=np.float64),
            category_intercept=np.array(data["category_intercept"], dtype=np.float64),
        )
    counts = (len(tables.char_terms), len(tables.word_terms), len(tables.field_names))
    if counts != (meta["n_char_terms"], meta["n_word_terms"], meta["n_field_names"]):
        raise ValueError(f"serving file tables hold {counts} terms, its header says otherwise")
    if tables.coef.shape[0] != sum(counts) or len(tables.char_idf) != counts[0] or len(tables.word_idf) != counts[1]:
        raise ValueError("serving file weights do not match its vocabularies")
    return tables
