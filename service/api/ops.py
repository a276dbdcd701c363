"""Operations: /healthz, /readyz, /metrics (Prometheus), /model (the serving model's card)."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from service.api.deps import LearningDep, MetricsDep, ModelsDep, StoreDep
from service.api.responses import JSONBytes
from service.store import StoreUnavailable

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "not ready: database unreachable or no model"}})
async def readyz(store: StoreDep, models: ModelsDep, learning: LearningDep) -> JSONBytes:
    """Ready when the database answers and a model is loaded; `drift` reports alerts but never fails readiness."""
    checks: dict[str, Any] = {"model": {"ok": True, "version": models.current.version}}
    try:
        await anyio.to_thread.run_sync(store.ping)
        checks["database"] = {"ok": True}
    except StoreUnavailable as exc:
        checks["database"] = {"ok": False, "error": str(exc)}
    ready = all(check["ok"] for check in checks.values())
    drift = learning.drift_report(refresh=False)  # the cached calibration: no database read here
    checks["drift"] = {"ok": True, "status": drift["status"], "alerts": [a["message"] for a in drift["alerts"]]}
    return JSONBytes({"status": "ready" if ready else "not ready", "checks": checks}, status_code=200 if ready else 503)


@router.get("/metrics", response_class=Response)
async def metrics(metrics: MetricsDep) -> Response:
    """Prometheus text format."""
    body = await anyio.to_thread.run_sync(metrics.render)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


@router.get("/model")
async def model_card(models: ModelsDep) -> dict[str, Any]:
    """The serving model's card: version, data, threshold, metrics, libraries."""
    card: dict[str, Any] = models.current.card
    return card
