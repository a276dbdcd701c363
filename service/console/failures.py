"""Failure analysis for the console: failed calls grouped by normalized message, the model's verdict
against what re-execution showed, and a live reliability curve. Pure functions over store records.

A group is (error code, `model.text.normalize_message(message)`): messages that differ only in ids,
numbers, hosts or times fall together. Per group, the verdict is the share of its failures the model
called async-eligible; the observed outcome is each distinct order's label, as the learning loop
labels it (service/learning/outcomes.py): SUCCEEDED later → 1, DEAD or FAILED after another call → 0, FAILED
at its first call or still pending → no label. The model and reality disagree when a group called
async mostly got 0, or a group called final mostly got 1 (orders sent async by exploration, held
because the outcome was unknown, or requeued by an operator).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Final

from model.calibration import reliability
from model.text import normalize_message
from service.learning.outcomes import outcome_label
from service.store import OrderState
from service.store.insights import FailureObservation

#: A group disagrees when at least this share of its resolved orders went against the verdict ...
DISAGREE_SHARE: Final = 0.5
#: ... and at least this many orders are resolved.
DISAGREE_MIN_RESOLVED: Final = 2
#: Verdict shares in between are "mixed": the model itself splits the group.
MIXED_LOW, MIXED_HIGH = 0.2, 0.8


@lru_cache(maxsize=20_000)
def template_of(message: str) -> str:
    """The normalized template of a raw message (cached: failure streams repeat themselves)."""
    return normalize_message(message) or "(empty message)"


@dataclass
class FailureGroup:
    """Failed calls sharing an error code and a normalized message template."""

    error_code: str | None
    template: str
    example: str
    #: the latest verdict's explanation (its spans are highlighted in `example`)
    example_explanation: Any = None
    failures: int = 0
    async_votes: int = 0
    probability_sum: float = 0.0
    scored: int = 0
    categories: Counter[str] = field(default_factory=Counter)
    insurers: Counter[str] = field(default_factory=Counter)
    order_states: dict[int, OrderState] = field(default_factory=dict)
    labels: dict[int, int | None] = field(default_factory=dict)

    @property
    def orders(self) -> int:
        return len(self.order_states)

    def _count(self, *states: OrderState) -> int:
        return sum(1 for s in self.order_states.values() if s in states)

    @property
    def succeeded(self) -> int:
        return self._count(OrderState.SUCCEEDED)

    @property
    def failed(self) -> int:
        return self._count(OrderState.FAILED)

    @property
    def dead(self) -> int:
        return self._count(OrderState.DEAD)

    @property
    def pending(self) -> int:
        return self._count(OrderState.ASYNC_PROCESSING)

    @property
    def never_retried(self) -> int:
        """FAILED at the first call: the verdict was final and nothing tested it."""
        failed = OrderState.FAILED
        return sum(1 for pk, label in self.labels.items() if label is None and self.order_states[pk] is failed)

    @property
    def resolved(self) -> int:
        """Orders with an outcome label (re-execution told whether the failure was async-eligible)."""
        return sum(1 for label in self.labels.values() if label is not None)

    @property
    def async_share(self) -> float | None:
        return self.async_votes / self.scored if self.scored else None

    @property
    def mean_probability(self) -> float | None:
        return self.probability_sum / self.scored if self.scored else None

    @property
    def verdict(self) -> str:
        """async, final, mixed, or unscored (no verdict recorded)."""
        share = self.async_share
        if share is None:
            return "unscored"
        if share >= MIXED_HIGH:
            return "async"
        if share <= MIXED_LOW:
            return "final"
        return "mixed"

    @property
    def against_verdict(self) -> int:
        """Resolved orders whose outcome went against the verdict."""
        wrong = {"async": 0, "final": 1}.get(self.verdict)
        return sum(1 for label in self.labels.values() if label is not None and label == wrong)

    @property
    def disagreement(self) -> float | None:
        return self.against_verdict / self.resolved if self.resolved and self.verdict in ("async", "final") else None

    @property
    def disagrees(self) -> bool:
        rate = self.disagreement
        return rate is not None and rate >= DISAGREE_SHARE and self.resolved >= DISAGREE_MIN_RESOLVED

    @property
    def category(self) -> str | None:
        return self.categories.most_common(1)[0][0] if self.categories else None


def observed_label(o: FailureObservation) -> int | None:
    """The learning loop's label (service.learning.outcomes.outcome_label) of the order this failure belongs to:
    1 SUCCEEDED later; 0 DEAD, or FAILED after more than one call; None pending or never retried."""
    return outcome_label(o.order_state, o.order_attempts - 1)


def group_failures(observations: Iterable[FailureObservation]) -> list[FailureGroup]:
    """Groups by (code, template), ranked by `_rank`.

    `observations` come newest first, so each group's example is its latest message.
    """
    groups: dict[tuple[str | None, str], FailureGroup] = {}
    for o in observations:
        template = template_of(o.error_message or "")
        key = (o.error_code, template)
        group = groups.get(key)
        if group is None:
            group = groups[key] = FailureGroup(o.error_code, template, o.error_message or "", o.explanation)
        group.failures += 1
        group.insurers[o.insurer] += 1
        group.order_states[o.order_pk] = o.order_state
        group.labels[o.order_pk] = observed_label(o)
        if o.async_eligible is not None:
            group.scored += 1
            group.async_votes += int(o.async_eligible)
            group.probability_sum += o.probability or 0.0
        if o.category:
            group.categories[o.category] += 1
    return sorted(groups.values(), key=_rank)


def _rank(g: FailureGroup) -> tuple[bool, int, float, int]:
    """Disagreeing groups first, by orders against the verdict, then by rate; then everything by size."""
    if g.disagrees:
        return False, -g.against_verdict, -(g.disagreement or 0.0), -g.failures
    return True, 0, 0.0, -g.failures


@dataclass(frozen=True)
class CodeCount:
    error_code: str
    failures: int
    async_share: float | None


def top_codes(observations: Sequence[FailureObservation], n: int = 15) -> list[CodeCount]:
    """The `n` most frequent error codes (none: "(no code)") with the share called async-eligible."""
    counts: Counter[str] = Counter()
    votes: Counter[str] = Counter()
    scored: Counter[str] = Counter()
    for o in observations:
        code = o.error_code or "(no code)"
        counts[code] += 1
        if o.async_eligible is not None:
            scored[code] += 1
            votes[code] += int(o.async_eligible)
    return [
        CodeCount(code, count, votes[code] / scored[code] if scored[code] else None)
        for code, count in counts.most_common(n)
    ]


@dataclass(frozen=True)
class CalibrationBin:
    low: float
    high: float
    orders: int
    mean_probability: float
    observed_async: float


def live_calibration(observations: Sequence[FailureObservation], bins: int = 10) -> list[CalibrationBin]:
    """Reliability (model.calibration) of each labelled order's first-failure probability against its
    `observed_label`."""
    first: dict[int, FailureObservation] = {}
    for o in observations:  # newest first: the last one seen per order is its earliest failure
        if o.probability is not None:
            first[o.order_pk] = o
    pairs = []
    for o in first.values():
        label = observed_label(o)
        if label is not None and o.probability is not None:
            pairs.append((o.probability, label))
    return [CalibrationBin(b.low, b.high, b.n, b.mean_probability, b.observed_rate) for b in reliability(pairs, bins)]
