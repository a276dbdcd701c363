"""create_app(settings): the FastAPI application; the lifespan opens the runtime (database, model, HTTP client).

Nothing is opened at import. Tests pass their own Settings (and may pass a ServingModel or an
InsurerRegistry to skip loading them from disk).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import httpx
from fastapi import FastAPI

from service.api import classify, ops, orders
from service.api.errors import install_error_handlers
from service.api.middleware import BodyLimit, Observe
from service.config import Settings
from service.gateway import InsurerRegistry
from service.metrics import Metrics
from service.runtime import open_runtime
from service.scoring import ServingModel

#: Body limits per route (bytes): a /process payload is at most 64 KiB; a /classify message at most
#: 65,536 characters, which is up to 384 KiB as JSON (6 bytes per character written as a \uXXXX escape).
ROUTE_BODY_LIMITS = {"/process": 192 * 1024, "/classify": 512 * 1024}


def create_app(
    settings: Settings,
    *,
    model: ServingModel | None = None,
    insurers: InsurerRegistry | None = None,
    http_client: httpx.AsyncClient | None = None,
) -> FastAPI:
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_runtime(
            settings, metrics=metrics, model=model, insurers=insurers, http_client=http_client
        ) as runtime:
            app.state.settings = settings
            app.state.store = runtime.store
            app.state.models = runtime.models
            app.state.gateway = runtime.gateway
            app.state.processor = runtime.processor
            app.state.classify_limiter = anyio.CapacityLimiter(settings.classify_threads)
            yield

    app = FastAPI(
        title="asyncgate",
        version="0.1.0",
        summary="Classify failed insurer calls; keep async-eligible orders and execute them again.",
        lifespan=lifespan,
        responses={400: {"description": "bad request (unknown insurer, unparsable body, bad cursor)"}},
    )
    app.state.metrics = metrics
    install_error_handlers(app)
    for router in (classify.router, orders.router, ops.router):
        app.include_router(router)
    app.add_middleware(BodyLimit, default=settings.max_body_bytes, per_path=ROUTE_BODY_LIMITS)
    app.add_middleware(Observe, metrics=metrics)
    return app
