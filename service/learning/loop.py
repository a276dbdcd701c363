"""The learning loop's parts in a running process, opened and closed with the runtime.

`open_learning(settings, store, holder, metrics)` builds the failure watch (watch.py: drift, shadow
scoring, exploration of first failures), the drift monitor (drift.py), the shadow scorer (shadow.py)
and the model reloader (reload.py), and polls the registry's ACTIVE file while open. Outcome labels
and their export are outcomes.py; the per-version comparison (`asyncgate models report`) is report.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio

from service.config import Settings
from service.learning.drift import DriftCollector, DriftMonitor, DriftThresholds
from service.learning.reload import ModelReloader
from service.learning.shadow import ShadowScorer
from service.learning.watch import ExplorationPolicy, FailureWatch
from service.metrics import Metrics
from service.scoring import ModelHolder
from service.store import OrderStore


def drift_thresholds(settings: Settings) -> DriftThresholds:
    return DriftThresholds(
        window_s=settings.drift_window_s,
        min_failures=settings.drift_min_failures,
        unseen_ngram_cutoff=settings.drift_unseen_ngram_cutoff,
        max_unseen_message_share=settings.drift_max_unseen_message_share,
        max_unseen_code_share=settings.drift_max_unseen_code_share,
        max_async_rate_delta=settings.drift_max_async_rate_delta,
        max_calibration_error=settings.drift_max_calibration_error,
        min_outcomes=settings.drift_min_outcomes,
    )


def exploration_policy(settings: Settings) -> ExplorationPolicy:
    return ExplorationPolicy(
        rate=settings.exploration_rate,
        min_probability=settings.exploration_min_probability,
        floor_probability=settings.exploration_floor_probability,
    )


@dataclass(frozen=True)
class Learning:
    """The learning loop's parts in a running process."""

    settings: Settings
    store: OrderStore
    holder: ModelHolder
    watch: FailureWatch
    reloader: ModelReloader

    @property
    def drift(self) -> DriftMonitor:
        return self.watch.drift

    @property
    def shadow(self) -> ShadowScorer:
        return self.watch.shadow

    def drift_report(self, *, refresh: bool = True, force: bool = False) -> dict[str, Any]:
        """The drift report. With `refresh` the calibration is recomputed first when stale, with `force`
        in any case (both read the store: call them in a thread); without, the cached one is used."""
        if refresh or force:
            self.drift.refresh_if_stale(
                self.store,
                window_s=self.settings.drift_calibration_window_s,
                max_age_s=0.0 if force else self.settings.drift_calibration_refresh_s,
            )
        return self.drift.report(self.holder.current)


@asynccontextmanager
async def open_learning(
    settings: Settings, store: OrderStore, holder: ModelHolder, metrics: Metrics
) -> AsyncIterator[Learning]:
    """Build the watch, drift monitor, shadow scorer and reloader; poll ACTIVE while open."""
    shadow = ShadowScorer(metrics.registry)
    watch = FailureWatch(
        metrics.registry,
        drift=DriftMonitor(drift_thresholds(settings)),
        shadow=shadow,
        exploration=exploration_policy(settings),
    )
    reloader = ModelReloader(
        settings.resolved_model_dir, holder, metrics, shadow=shadow, shadow_spec=settings.shadow_model
    )
    await reloader.load_shadow()
    learning = Learning(settings, store, holder, watch, reloader)
    metrics.registry.register(DriftCollector(learning.drift_report))
    async with anyio.create_task_group() as tasks:
        if settings.model_watch_s > 0:
            tasks.start_soon(reloader.watch, settings.model_watch_s)
        try:
            yield learning
        finally:
            tasks.cancel_scope.cancel()
