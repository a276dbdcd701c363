"""Hot reload of the serving model: on POST /admin/model/reload, or when the registry's ACTIVE file changes.

    reloader = ModelReloader(model_dir, holder, metrics, shadow=...)
    await reloader.reload()          # → the model now serving; ModelRejected (HTTP 409) keeps the old one
    await reloader.watch(interval)   # polls <model_dir>/ACTIVE and reloads when its content changes

A reload loads the active artifact in a worker thread (the event loop keeps serving), checks it
(load_artifact verifies protocol, library version, SHA-256 and the skops allowlist; then a smoke
score must give a probability in [0, 1]) and only then swaps `ModelHolder.current`: a request reads
the holder once, so none is dropped or sees half a model. Reloads are serialised. A failed reload
leaves the old model serving, is counted and logged, and the watch does not retry the same ACTIVE
content until it changes again.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.to_thread
from prometheus_client import Counter

from model.artifact import ArtifactError, load_artifact
from model.records import Failure
from model.registry import ACTIVE_FILE, resolve_artifact
from service.config import Settings
from service.drift import DriftCollector, DriftMonitor, DriftThresholds
from service.learning import ExplorationPolicy, FailureWatch
from service.metrics import Metrics
from service.scoring import ModelHolder, ServingModel
from service.shadow import ShadowScorer, shadow_artifact_dir
from service.store import OrderStore

log = logging.getLogger("asyncgate.models")
#: Scored once by every model before it may serve.
SMOKE_FAILURE: Final = Failure("smoke", "underwrite", None, "Read timed out", None, 2000.0)


class ModelRejected(ArtifactError):
    """The model at {path} cannot replace the serving one: {reason} (the old model keeps serving)."""

    def __init__(self, path: Path, reason: str):
        super().__init__(path, reason)
        self.args = (f"model at {path} not loaded, the old model keeps serving: {reason}",)


def load_checked(artifact_dir: Path) -> ServingModel:
    """Load and gate one artifact: integrity and compatibility (load_artifact), then a smoke score."""
    try:
        model = ServingModel(load_artifact(artifact_dir))
        probability = model.classify(SMOKE_FAILURE).probability
    except ArtifactError:
        raise
    except Exception as exc:  # anything a broken artifact may raise while loading or scoring
        raise ModelRejected(artifact_dir, f"failed to load: {type(exc).__name__}: {exc}") from exc
    if not (math.isfinite(probability) and 0.0 <= probability <= 1.0):
        raise ModelRejected(artifact_dir, f"smoke score gave probability {probability!r}")
    return model


def read_active(model_dir: Path) -> str | None:
    try:
        return (model_dir / ACTIVE_FILE).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


class ModelReloader:
    """Swaps the serving model (and reloads the shadow model) safely."""

    def __init__(
        self,
        model_dir: Path,
        holder: ModelHolder,
        metrics: Metrics,
        *,
        shadow: ShadowScorer | None = None,
        shadow_spec: str | None = None,
    ):
        self.model_dir = model_dir
        self.holder = holder
        self.metrics = metrics
        self.shadow = shadow
        self.shadow_spec = shadow_spec
        self._lock = anyio.Lock()
        self._seen = read_active(model_dir)
        self.reloads = Counter(
            "asyncgate_model_reloads_total", "Model reloads by result", ["result"], registry=metrics.registry
        )

    async def reload(self) -> ServingModel:
        """Load the active version and make it serve; ModelRejected (old model kept) when it cannot."""
        async with self._lock:
            self._seen = read_active(self.model_dir)
            try:
                artifact = resolve_artifact(self.model_dir)
                model = await anyio.to_thread.run_sync(load_checked, artifact)
            except ArtifactError as exc:
                self.reloads.labels(result="rejected").inc()
                log.error("model reload rejected, %s keeps serving: %s", self.holder.current.version, exc.reason)
                raise ModelRejected(exc.path, exc.reason) from exc
            previous = self.holder.swap(model)
            self.metrics.set_model(model.version)
            self.reloads.labels(result="swapped" if previous.version != model.version else "same").inc()
            log.info("model %s serves (was %s)", model.version, previous.version)
            await self.load_shadow()
            return model

    async def load_shadow(self) -> None:
        """(Re)load the configured shadow model; a broken one is logged and dropped, never fatal."""
        if self.shadow is None or not self.shadow_spec:
            return
        path = shadow_artifact_dir(self.shadow_spec, self.model_dir)
        try:
            self.shadow.candidate = await anyio.to_thread.run_sync(load_checked, path)
            log.info("shadow model %s scores alongside", self.shadow.candidate.version)
        except ArtifactError as exc:
            self.shadow.candidate = None
            log.error("shadow model %s not loaded: %s", self.shadow_spec, exc)

    async def watch(self, interval_s: float) -> None:
        """Poll the registry's ACTIVE file every `interval_s` seconds; reload when it changes. Runs until cancelled."""
        while True:
            await anyio.sleep(interval_s)
            active = read_active(self.model_dir)
            if active is None or active == self._seen:
                continue
            log.info("ACTIVE changed to %s: reloading", active)
            try:
                await self.reload()
            except ModelRejected:
                pass  # logged; `_seen` holds the rejected content, so it is not retried until ACTIVE changes


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
