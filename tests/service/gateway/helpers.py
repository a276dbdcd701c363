"""Helpers for gateway unit tests: an insurer config and a runner over httpx.MockTransport."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx

from service.gateway import CallResult, GenericJsonAdapter, InsurerConfig, QueryResult

Handler = Callable[[httpx.Request], httpx.Response]
BASE_URL = "http://insurer.test/api"


def make_insurer(**overrides: Any) -> InsurerConfig:
    fields: dict[str, Any] = {"name": "acme", "base_url": BASE_URL, "timeout_s": 3.0}
    fields.update(overrides)
    return InsurerConfig(**fields)


def run_call(
    handler: Handler,
    *,
    insurer: InsurerConfig | None = None,
    order_id: str = "P2026112400001",
    operation: str = "underwrite",
    payload: dict[str, Any] | None = None,
) -> CallResult:
    async def main() -> CallResult:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await GenericJsonAdapter().call(
                client,
                insurer or make_insurer(),
                order_id=order_id,
                operation=operation,
                payload=payload if payload is not None else {"amount": 100},
            )

    return asyncio.run(main())


def run_query(
    handler: Handler,
    *,
    insurer: InsurerConfig | None = None,
    order_id: str = "P2026112400001",
    operation: str = "underwrite",
) -> QueryResult:
    async def main() -> QueryResult:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await GenericJsonAdapter().query(
                client, insurer or make_insurer(), order_id=order_id, operation=operation
            )

    return asyncio.run(main())


def raising(exc: Exception) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


def answering(status: int, body: bytes | str, content_type: str = "application/json") -> Handler:
    content = body.encode("utf-8") if isinstance(body, str) else body

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=content, headers={"Content-Type": content_type})

    return handler
