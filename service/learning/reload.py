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
from pathlib import Path
from typing import Final

import anyio
import anyio.to_thread
from prometheus_client import Counter

from model.artifact import ArtifactError, load_artifact
from model.records import Failure
from model.registry import ACTIVE_FILE, resolve_artifact
from service.errors import AsyncgateError
from service.learning.shadow import ShadowScorer, shadow_artifact_dir
from service.metrics import Metrics
from service.scoring import ModelHolder, ServingModel

log = logging.getLogger("asyncgate.models")
#: Scored once by every model before it may serve.
SMOKE_FAILURE: Final = Failure("smoke", "underwrite", None, "Read timed out", None, 2000.0)


class ModelRejected(AsyncgateError, ArtifactError):
    """model at {path} not loaded, the old model keeps serving: {reason}

    The model cannot replace the serving one. Also an ArtifactError (model/artifact.py), with its
    `path` and `reason`, so whoever catches artifact errors catches this too.
    """

    def __init__(self, path: Path, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(path=path, reason=reason)


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
