"""Shadow scoring: an optional candidate model scores the same first failures as the serving one.

The candidate never decides anything. Each failure it scores is counted in /metrics
(`asyncgate_shadow_scored_total`), each disagreement on async-eligibility too
(`asyncgate_shadow_disagreements_total{direction}`: `async_to_final` when the live model said async
and the candidate final, `final_to_async` the other way), logged at INFO for review, and kept in a
short ring buffer that GET /admin/shadow shows. How the candidate would have fared against the
outcomes is `asyncgate models report` (service/learning/report.py), which re-scores labelled failures.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from pathlib import Path
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter

from model.privacy import mask_personal_data
from model.records import Failure
from model.registry import is_artifact_dir
from service.rules import model_async_eligible
from service.scoring import ServingModel, Verdict

log = logging.getLogger("asyncgate.shadow")
RECENT: Final = 100


def shadow_artifact_dir(spec: str, model_dir: Path) -> Path:
    """The artifact folder a `shadow_model` setting names: a version of the registry, or a folder."""
    in_registry = model_dir / spec
    return in_registry if is_artifact_dir(in_registry) else Path(spec)


class ShadowScorer:
    """Holds the candidate (or none) and compares its verdicts with the live ones."""

    def __init__(self, registry: CollectorRegistry, candidate: ServingModel | None = None):
        self.candidate = candidate
        self.scored = Counter(
            "asyncgate_shadow_scored_total",
            "First failures scored by the shadow model",
            ["live", "shadow"],
            registry=registry,
        )
        self.disagreements = Counter(
            "asyncgate_shadow_disagreements_total",
            "Shadow verdicts that differ from the live one on async-eligibility",
            ["live", "shadow", "direction"],
            registry=registry,
        )
        self._recent: deque[dict[str, Any]] = deque(maxlen=RECENT)
        self._lock = threading.Lock()

    def compare(self, failure: Failure, live: Verdict) -> Verdict | None:
        """Score `failure` with the candidate (if any); count and log a disagreement. Returns its verdict."""
        candidate = self.candidate
        if candidate is None:
            return None
        shadow = candidate.classify(failure)
        self.scored.labels(live=live.model_version, shadow=shadow.model_version).inc()
        live_model = model_async_eligible(live.explanation, live.async_eligible)  # the model's, not a rule's
        if shadow.async_eligible != live_model:
            direction = "async_to_final" if live_model else "final_to_async"
            self.disagreements.labels(live=live.model_version, shadow=shadow.model_version, direction=direction).inc()
            entry = {
                "insurer": failure.insurer,
                "operation": failure.operation,
                "error_code": failure.error_code,
                "error_message": mask_personal_data(failure.error_message[:200]),
                "direction": direction,
                "live": {
                    "version": live.model_version,
                    "probability": round(live.probability, 4),
                    "category": live.category,
                },
                "shadow": {
                    "version": shadow.model_version,
                    "probability": round(shadow.probability, 4),
                    "category": shadow.category,
                },
            }
            with self._lock:
                self._recent.append(entry)
            log.info(
                "shadow disagrees (%s): %s", direction, entry["error_message"], extra={"shadow_disagreement": entry}
            )
        return shadow

    def recent(self) -> list[dict[str, Any]]:
        """The latest disagreements, newest last (personal data masked)."""
        with self._lock:
            return list(self._recent)
