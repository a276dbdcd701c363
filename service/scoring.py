"""The serving model: a loaded artifact + its FastScorer, and the swap point for reloads.

`ModelHolder.current` is read once per request (a plain attribute read), so a reload that swaps it
never affects a request already being scored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.artifact import LoadedModel, load_artifact
from model.records import Failure
from model.registry import resolve_artifact
from model.scorer import Contribution, FastScorer


@dataclass(frozen=True)
class Verdict:
    """The classification of one failure, as the API returns and the store records it."""

    async_eligible: bool
    probability: float
    threshold: float
    category: str | None
    model_version: str
    explanation: list[dict[str, Any]]
    #: Set by the learning loop (service/learning/watch.py) on a final verdict kept async to learn its outcome.
    exploration: bool = False
    #: "model", or "rule" when an operator's rule pinned the decision (service/rules.py `pin`); then
    #: `rule_id` names it, and `probability` stays the model's.
    decided_by: str = "model"
    rule_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "async_eligible": self.async_eligible,
            "probability": self.probability,
            "threshold": self.threshold,
            "category": self.category,
            "model_version": self.model_version,
            "explanation": self.explanation,
            "decided_by": self.decided_by,
            "rule_id": self.rule_id,
        }


def explanation_item(contribution: Contribution) -> dict[str, Any]:
    """One explanation item as the API returns and the store records it (docs/contract.md §7)."""
    item: dict[str, Any] = {
        "kind": contribution.kind,
        "feature": contribution.feature,
        "weight": round(contribution.weight, 4),
    }
    if contribution.span is not None:
        item["span"] = contribution.span
    return item


class ServingModel:
    """Classifies failures with one loaded artifact."""

    def __init__(self, loaded: LoadedModel):
        self.loaded = loaded
        self.version = loaded.version
        self.card = loaded.card
        self.scorer = FastScorer(loaded.tables)  # the serving tables: no sklearn, no skops
        self.threshold = self.scorer.threshold

    @classmethod
    def from_dir(cls, model_dir: Path) -> ServingModel:
        return cls(load_artifact(resolve_artifact(model_dir)))

    def classify(self, failure: Failure) -> Verdict:
        score = self.scorer.score(failure)
        return Verdict(
            async_eligible=score.async_eligible,
            probability=score.probability,
            threshold=self.threshold,
            category=score.category,
            model_version=self.version,
            explanation=[explanation_item(c) for c in score.explanation],
        )

    def classify_many(self, failures: list[Failure]) -> list[Verdict]:
        return [self.classify(f) for f in failures]


class ModelHolder:
    """Holds the model that serves; `swap` replaces it atomically."""

    def __init__(self, model: ServingModel):
        self.current = model

    def swap(self, model: ServingModel) -> ServingModel:
        previous, self.current = self.current, model
        return previous
