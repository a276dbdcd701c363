"""What happens to an order's first failure besides its decision: drift, shadow scoring, exploration.

`FailureWatch.first_failure(model, failure, verdict, unknown=..., rng=...)` is called once per order,
for the failure of its first call. It counts the failure for drift, lets the shadow model score it,
and may mark the verdict as *exploration*: a failure the model called final is then kept async
anyway, so re-execution shows whether "final" was right (otherwise such failures never get an
outcome label). `ExplorationPolicy` decides which failures may be explored:

    never   when the rate is 0, the verdict is async, or the outcome is unknown (already async)
    never   when an operator's rule decided it (service/rules.py): the operator has spoken
    never   when the model is confidently final: probability < floor_probability
    may     when the model is unsure (probability >= min_probability), or the failure is unfamiliar
            (its message is mostly unseen n-grams, or its code was never seen from this insurer)
    then    with probability `rate`

Explored failures are counted (`asyncgate_exploration_total{insurer}`) and their attempt rows carry
`exploration = true`; export-outcomes reports them.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter

from model.records import Failure
from service.learning.drift import DriftMonitor, Familiarity
from service.learning.shadow import ShadowScorer
from service.scoring import ServingModel, Verdict


@dataclass(frozen=True)
class ExplorationPolicy:
    """Which final verdicts may be sent async to learn their outcome, and how often."""

    rate: float = 0.0
    min_probability: float = 0.05
    floor_probability: float = 0.01

    def eligible(self, verdict: Verdict, familiarity: Familiarity, *, unknown: bool) -> bool:
        if self.rate <= 0 or unknown or verdict.async_eligible or verdict.decided_by == "rule":
            return False
        if verdict.probability < self.floor_probability:
            return False
        return verdict.probability >= self.min_probability or familiarity.unfamiliar


class FailureWatch:
    """Drift, shadow and exploration for first failures, with their counters on `registry`."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        drift: DriftMonitor,
        shadow: ShadowScorer,
        exploration: ExplorationPolicy,
    ):
        self.drift = drift
        self.shadow = shadow
        self.exploration = exploration
        self.explored = Counter(
            "asyncgate_exploration_total",
            "Failures the model called final, sent async to learn their outcome",
            ["insurer"],
            registry=registry,
        )
        self.explorable = Counter(
            "asyncgate_exploration_candidates_total",
            "Final first failures that exploration could have sent async",
            ["insurer"],
            registry=registry,
        )

    def first_failure(
        self, model: ServingModel, failure: Failure, verdict: Verdict, *, unknown: bool, rng: random.Random
    ) -> Verdict:
        """Observe the failure; returns the verdict, marked `exploration` when it is sent async to learn."""
        familiarity = self.drift.observe(model, failure, verdict)
        self.shadow.compare(failure, verdict)
        if not self.exploration.eligible(verdict, familiarity, unknown=unknown):
            return verdict
        insurer = failure.insurer or ""
        self.explorable.labels(insurer=insurer).inc()
        if rng.random() >= self.exploration.rate:
            return verdict
        self.explored.labels(insurer=insurer).inc()
        return dataclasses.replace(verdict, exploration=True)
