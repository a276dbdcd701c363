"""Admin endpoints of the learning loop (admin role, enforced by the API-key middleware in
service/api/auth.py for every /admin path): model reload, drift, shadow disagreements.

POST /admin/model/reload   load the registry's active version; 200 {"model_version"}, or 409 naming
                           why it was refused (the old model keeps serving)
GET  /admin/drift          drift figures and alerts (service/learning/drift.py); ?refresh=true recomputes
                           the calibration against outcomes now
GET  /admin/shadow         the shadow model's version and its latest disagreements with the live one
GET  /admin/model/report   live decisions against outcomes per model version, and the live operators'
                           rules against the model (service/learning/report.py); ?days= (default 7)
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Query

from service.api.deps import LearningDep, StoreDep
from service.api.responses import JSONBytes
from service.api.schemas import ModelReloaded
from service.learning.outcomes import iter_first_failures
from service.learning.report import model_report

router = APIRouter(prefix="/admin", tags=["admin"])


@router.post(
    "/model/reload",
    response_model=ModelReloaded,
    responses={409: {"description": "the active version failed to load or its checks; the old model serves"}},
)
async def reload_model(learning: LearningDep) -> ModelReloaded:
    """Load the registry's active version and make it serve, without dropping a request."""
    model = await learning.reloader.reload()
    return ModelReloaded(model_version=model.version)


@router.get("/drift")
async def drift(learning: LearningDep, refresh: bool = False) -> JSONBytes:
    """Unseen n-grams, unseen codes per insurer, async rate per insurer against training, calibration."""

    report = await anyio.to_thread.run_sync(lambda: learning.drift_report(force=refresh))
    return JSONBytes(report)


@router.get("/shadow")
async def shadow(learning: LearningDep) -> dict[str, Any]:
    """The shadow model (if any) and its latest disagreements with the serving model."""
    candidate = learning.shadow.candidate
    return {
        "serving": learning.holder.current.version,
        "shadow": None if candidate is None else candidate.version,
        "recent_disagreements": learning.shadow.recent(),
    }


@router.get("/model/report")
async def report(store: StoreDep, days: Annotated[float, Query(gt=0, le=31)] = 7.0) -> JSONBytes:
    """The first failures of the last `days` days: decisions and outcomes per model version; the live
    rules with their hits, how many of those the model would have decided the other way, and outcomes."""
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)

    def read() -> dict[str, Any]:
        rows = list(iter_first_failures(store, since=since))
        _, rules = store.rules.live_rules()
        return model_report(rows, rules=rules)

    return JSONBytes(await anyio.to_thread.run_sync(read))
