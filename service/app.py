"""create_app(settings): the FastAPI application; the lifespan opens the runtime (database, model, HTTP client).

Nothing is opened at import. Tests pass their own Settings (and may pass a ServingModel or an
InsurerRegistry to skip loading them from disk).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio
from fastapi import FastAPI

from service.api import admin, classify, events, ops, orders, rules
from service.api.auth import ApiKeyAuth, ApiKeys
from service.api.errors import install_error_handlers
from service.api.middleware import BodyLimit, Observe
from service.config import Settings
from service.console import install_console
from service.gateway import HttpTransport, InsurerRegistry
from service.metrics import Metrics
from service.runtime import open_runtime
from service.scoring import ServingModel

if TYPE_CHECKING:
    import httpx

#: Body limits per route (bytes): a /process payload is at most 64 KiB; a /classify message at most
#: 65,536 characters, which is up to 384 KiB as JSON (6 bytes per character written as a \uXXXX escape).
ROUTE_BODY_LIMITS = {"/process": 192 * 1024, "/classify": 512 * 1024}


def create_app(
    settings: Settings,
    *,
    model: ServingModel | None = None,
    insurers: InsurerRegistry | None = None,
    http_client: HttpTransport | httpx.AsyncClient | None = None,
) -> FastAPI:
    metrics = Metrics()
    keys = ApiKeys.parse(settings.api_keys) if settings.api_keys else None  # ApiKeysError before anything opens
    responses: dict[int | str, dict[str, str]] = {
        400: {"description": "bad request (unknown insurer, unparsable body, bad cursor)"},
        413: {"description": "the request body is over the limit"},
        503: {"description": "the database is unavailable; retry (Retry-After)"},
    }
    if keys is not None:
        responses[401] = {"description": "missing or invalid API key (Authorization: Bearer <key>)"}
        responses[403] = {"description": "the API key's role does not allow this"}

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
            app.state.health = runtime.health
            app.state.learning = runtime.learning
            app.state.rules = runtime.rules
            app.state.classify_limiter = anyio.CapacityLimiter(settings.classify_threads)
            yield

    app = FastAPI(
        title="asyncgate",
        version="0.1.0",
        summary="Classify failed insurer calls; keep async-eligible orders and execute them again.",
        lifespan=lifespan,
        responses=responses,
    )
    app.state.metrics = metrics
    install_error_handlers(app)
    for router in (classify.router, orders.router, ops.router, admin.router, rules.router, events.router):
        app.include_router(router)
    install_console(app, settings)  # /console: the operations console (HTML; its own login cookie)
    app.add_middleware(BodyLimit, default=settings.max_body_bytes, per_path=ROUTE_BODY_LIMITS)
    if keys is not None:  # outside the body limit: a refused request's body is never read
        app.add_middleware(ApiKeyAuth, keys=keys)
    app.add_middleware(Observe, metrics=metrics)
    return app
