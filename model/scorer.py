"""FastScorer: the fitted FailureClassifier as plain lookups and a few dot products per failure.

It gives the same probabilities as `FailureClassifier.predict_proba` (the reference path; a test
holds them within 1e-9) at a fraction of the cost: no DataFrame, no scipy.sparse. The score splits
into three parts that add up:

    s = message part + categorical part + latency part
    message part     = Σ_block Σ_j w_j · tfidf_j / ‖tfidf_block‖
                       (character and word blocks)      cached per message and per normalized message
    categorical part = intercept + Σ w_f over the one-hot tokens
                                                        cached per (insurer, operation, code, status)
    latency part     = Σ w_f · x_f over ≤ 3 latency features
    p = 1 / (1 + exp(-(a · s + b)))                     (Platt calibration)

The category head's logits split the same way; the category is the argmax among categories on
the decided side (async or final). Real failure streams repeat messages and code tuples, so most
failures cost two dictionary hits and a handful of additions.

Explanations (docs/contract.md §7) are read, not n-grams: `text_spans` sums the n-gram weights over
words and short phrases of the message ("系统繁忙", "do not retry") and keeps the strongest ones that
do not overlap; field features keep their names with a `kind` (code, status, latency, insurer,
operation). The spans are worked out once per distinct message, like the rest of the message part.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, TypeVar

import numpy as np

from model.records import Failure
from model.schema import CATEGORIES
from model.serving import ScorerTables, tables_of
from model.text import LATENCY_FEATURES, WORD_TOKEN_PATTERN, categorical_tokens, latency_features, normalize_message

if TYPE_CHECKING:
    from model.classifier import FailureClassifier
TOP_FEATURES: Final = 5
K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Contribution:
    """One item of an explanation: its kind (docs/contract.md §7), feature name, weight, and for a
    `text` item the span of the message it covers."""

    kind: str
    feature: str
    weight: float
    span: str | None = None


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
    top: tuple[Contribution, ...]
    known_share: float = 1.0  # message parts: share of n-grams in the vocabulary (drift signal)


#: Longest span of an explanation: CJK characters, Latin words.
SPAN_CJK_CHARS: Final = 4
SPAN_WORDS: Final = 3
_CJK: Final = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_WORD_TOKEN: Final = re.compile(WORD_TOKEN_PATTERN)  # the default pattern; spans read what the model read
_LATIN_WORD: Final = re.compile(r"(?<![<\w])[a-z]{2,}(?![>\w])")
_FIELD_KINDS: Final = (
    ("insurer_code=", "code"),
    ("code", "code"),
    ("insurer=", "insurer"),
    ("operation=", "operation"),
    ("status", "status"),
)


def field_kind(feature: str) -> str:
    """The explanation kind of a field feature name (docs/contract.md §7)."""
    for prefix, kind in _FIELD_KINDS:
        if feature.startswith(prefix):
            return kind
    return "latency"


def _abs_weight(item: Contribution) -> float:
    return abs(item.weight)


def char_wb_ngrams(text: str, low: int, high: int) -> list[str]:
    """scikit-learn's `char_wb` analyzer (lowercase off, no accent stripping): character n-grams inside
    each whitespace-separated word padded with one space, a word shorter than n counted once."""
    grams: list[str] = []
    append = grams.append
    for word in text.split():
        padded = f" {word} "
        size = len(padded)
        for n in range(low, high + 1):
            offset = 0
            append(padded[offset : offset + n])
            while offset + n < size:
                offset += 1
                append(padded[offset : offset + n])
            if offset == 0:
                break
    return grams


def word_ngrams(tokens: list[str], low: int, high: int) -> list[str]:
    """scikit-learn's word n-grams of a token list (in its order: the unigrams, then longer n-grams)."""
    if high == 1:
        return list(tokens) if low == 1 else []
    grams = list(tokens) if low == 1 else []
    for n in range(max(low, 2), min(high + 1, len(tokens) + 1)):
        for i in range(len(tokens) - n + 1):
            grams.append(" ".join(tokens[i : i + n]))
    return grams


def _grams(text: str, low: int, high: int) -> Iterator[str]:
    """Every n-gram of `text` for n in low..high, each place once (overlapping ones included)."""
    for n in range(low, high + 1):
        for i in range(len(text) - n + 1):
            yield text[i : i + n]


def text_spans(
    normalized: str,
    char_weights: dict[str, float],
    word_weights: dict[str, float],
    char_range: tuple[int, int],
    word_range: tuple[int, int],
    word_pattern: re.Pattern[str] = _WORD_TOKEN,
) -> list[Contribution]:
    """Readable spans of a normalized message, each with the summed weight of the n-grams inside it,
    strongest first and not overlapping: runs of two to SPAN_CJK_CHARS CJK characters, and one to
    SPAN_WORDS whole Latin words. `char_weights` / `word_weights`: contribution per n-gram present
    (`char_wb` grams of the padded words; word grams); an n-gram found k times in the message shares
    its weight equally among its k places."""
    low, high = char_range
    words = normalized.split(" ")
    char_places: dict[str, int] = {}
    for word in words:
        for gram in _grams(f" {word} ", low, high):
            if gram in char_weights:
                char_places[gram] = char_places.get(gram, 0) + 1
    tokens = word_pattern.findall(normalized)
    word_places: dict[str, int] = {}
    for gram in _grams_of_words(tokens, *word_range):
        if gram in word_weights:
            word_places[gram] = word_places.get(gram, 0) + 1

    def chars_inside(padded: str) -> float:
        return sum(char_weights[g] / char_places[g] for g in _grams(padded, low, high) if g in char_places)

    candidates: list[tuple[float, int, int, str]] = []  # (weight, start, end, text): character offsets
    offset = 0
    for word in words:
        for run in _CJK.finditer(word):
            text = run.group(0)
            for i in range(len(text)):
                for j in range(i + 2, min(len(text), i + SPAN_CJK_CHARS) + 1):
                    piece = text[i:j]
                    padded = (" " if i == 0 and run.start() == 0 else "") + piece
                    padded += " " if j == len(text) and run.end() == len(word) else ""
                    weight = chars_inside(padded)
                    if weight:
                        candidates.append((weight, offset + run.start() + i, offset + run.start() + j, piece))
        offset += len(word) + 1
    latin = [(m.start(), m.end(), m.group(0)) for m in _LATIN_WORD.finditer(normalized)]
    single = {start: chars_inside(f" {word} ") for start, _, word in latin}
    for i in range(len(latin)):
        for j in range(i + 1, min(len(latin), i + SPAN_WORDS) + 1):
            group = latin[i:j]
            if j - i > 1 and group[-1][0] != group[-2][1] + 1:
                break  # the words of a span are adjacent in the text
            pieces = [w for _, _, w in group]
            weight = sum(single[start] for start, _, _ in group)
            weight += sum(
                word_weights[g] / word_places[g] for g in _grams_of_words(pieces, *word_range) if g in word_places
            )
            if weight:
                candidates.append((weight, group[0][0], group[-1][1], " ".join(pieces)))
    candidates.sort(key=lambda c: (-abs(c[0]), c[1]))
    taken: list[tuple[int, int]] = []
    spans = []
    for weight, start, end, piece in candidates:
        if any(start < e and s < end for s, e in taken):
            continue
        taken.append((start, end))
        spans.append(Contribution("text", f"text:{piece!r}", weight, piece))
    return spans


def _grams_of_words(tokens: list[str], low: int, high: int) -> Iterator[str]:
    """Word n-grams of a token list (what the word vectorizer counts), each place once."""
    for n in range(low, high + 1):
        for i in range(len(tokens) - n + 1):
            yield " ".join(tokens[i : i + n])


class FastScorer:
    """Scores Failures with a fitted FailureClassifier's weights."""

    def __init__(self, model: FailureClassifier | ScorerTables, *, cache_size: int = 100_000):
        tables = model if isinstance(model, ScorerTables) else tables_of(model)
        n_chars = len(tables.char_terms)
        n_text = n_chars + len(tables.word_terms)
        coef = tables.coef
        chars = {term: i for i, term in enumerate(tables.char_terms)}
        words = {term: i for i, term in enumerate(tables.word_terms)}
        self._char_range = tables.char_range
        self._word_range = tables.word_range
        word_pattern = self._word_pattern = re.compile(tables.word_pattern)
        low, high = tables.char_range
        w_low, w_high = tables.word_range

        def chars_of(text: str) -> list[str]:
            return char_wb_ngrams(text, low, high)

        def words_of(text: str) -> list[str]:
            return word_ngrams(word_pattern.findall(text), w_low, w_high)

        # the two message blocks: (analyzer, vocabulary, idf, first column); each block is L2-normalized
        self._blocks = ((chars_of, chars, tables.char_idf, 0), (words_of, words, tables.word_idf, n_chars))
        self._n_chars = n_chars
        self._text_weights = coef[:n_text]
        self._grams = [*tables.char_terms, *tables.word_terms]
        field_columns = {name: n_text + i for i, name in enumerate(tables.field_names)}
        self._weights = {name: float(coef[column]) for name, column in field_columns.items()}
        self._intercept = tables.intercept
        self._a = tables.calibration_a
        self._b = tables.calibration_b
        self.threshold = tables.threshold
        self.categories = list(tables.categories)
        self._has_head = bool(self.categories)
        weights, intercepts = tables.category_coef, tables.category_intercept
        if weights.shape[0] == 1:  # a two-category head is a binary regression
            weights = np.vstack([-weights, weights])
            intercepts = np.array([-intercepts[0], intercepts[0]])
        self._cat_text = np.ascontiguousarray(weights[:, :n_text].T)  # (n_text, n_categories)
        self._cat_weights = {name: weights[:, column].copy() for name, column in field_columns.items()}
        self._cat_intercept = intercepts
        self._async_side = [CATEGORIES.get(c, False) for c in self.categories]
        self._zero_logits = np.zeros(len(self.categories))
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
        return self._remember(self._messages, message, self._readable(part, message))

    def _vectorize(self, normalized: str) -> _Part:
        columns_of_blocks, values_of_blocks = [], []
        total = known = 0
        for analyzer, vocabulary, idf, first in self._blocks:
            counts: dict[int, int] = {}
            for gram in analyzer(normalized):
                total += 1
                column = vocabulary.get(gram)
                if column is not None:
                    counts[column] = counts.get(column, 0) + 1
            known += sum(counts.values())
            if counts:
                columns = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
                tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
                values = (np.log(tf) + 1.0) * idf[columns]
                values /= math.sqrt(float(np.dot(values, values)))
                columns_of_blocks.append(columns + first)
                values_of_blocks.append(values)
        share = known / total if total else 1.0
        if not columns_of_blocks:
            return _Part(0.0, self._zero_logits, (), share)
        columns = np.concatenate(columns_of_blocks)
        values = np.concatenate(values_of_blocks)
        contributions = values * self._text_weights[columns]
        logits = values @ self._cat_text[columns] if self._has_head else self._zero_logits
        char_weights: dict[str, float] = {}
        word_weights: dict[str, float] = {}
        for column, weight in zip(columns.tolist(), contributions.tolist(), strict=True):
            (char_weights if column < self._n_chars else word_weights)[self._grams[column]] = weight
        spans = text_spans(
            normalized, char_weights, word_weights, self._char_range, self._word_range, self._word_pattern
        )
        return _Part(float(contributions.sum()), logits, tuple(spans), share)

    def _readable(self, part: _Part, message: str) -> _Part:
        """The part with its strongest spans that a person finds in `message` (after NFKC and
        case-folding; the normalization masks values and turns punctuation into spaces, so a span of
        several words may not be there verbatim)."""
        if not part.top:
            return part
        folded = unicodedata.normalize("NFKC", message).casefold()
        top = tuple(item for item in part.top if item.span is not None and item.span in folded)[:TOP_FEATURES]
        return _Part(part.score, part.logits, top, part.known_share)

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
                top.append(Contribution(field_kind(token), token, weight))
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
                latency.append(Contribution("latency", name, weight * value))
                if self._has_head:  # in place: `logits` is this call's own array
                    logits += self._cat_weights[name] if value == 1.0 else self._cat_weights[name] * value
        probability = 1.0 / (1.0 + math.exp(-(self._a * total + self._b)))
        eligible = probability >= self.threshold
        category, category_probability = self._category(logits, eligible)
        explanation = sorted((*message.top, *fields.top, *latency), key=_abs_weight, reverse=True)[:TOP_FEATURES]
        return Score(probability, eligible, category, category_probability, tuple(explanation))

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
