"""InsurerGateway: looks up the insurer and its adapter; one pooled client for every insurer."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from service.gateway import (
    CallResult,
    InsurerConfig,
    InsurerGateway,
    InsurerRegistry,
    QueryResult,
    UnknownInsurer,
    make_http_client,
)

REGISTRY = InsurerRegistry.from_mapping(
    {
        "acme": {"base_url": "http://acme.test", "timeout_s": 1.0},
        "beta": {"base_url": "http://beta.test/v1", "timeout_s": 4.0},
    }
)


def handler(request: httpx.Request) -> httpx.Response:
    if request.method == "GET":
        return httpx.Response(404)
    body = json.loads(request.content)
    return httpx.Response(200, json={"success": True, "data": {"host": request.url.host, **body}})


def test_call_and_query_route_to_the_named_insurer() -> None:
    async def main() -> tuple[CallResult, CallResult, QueryResult]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            gateway = InsurerGateway(REGISTRY, client)
            a = await gateway.call("acme", "O1", "pay", {"n": 1})
            b = await gateway.call("beta", "O2", "refund", {})
            q = await gateway.query("beta", "O2", "refund")
            return a, b, q

    a, b, q = asyncio.run(main())
    assert a.data == {"host": "acme.test", "order_id": "O1", "operation": "pay", "payload": {"n": 1}}
    assert b.data is not None and b.data["host"] == "beta.test"
    assert (q.completed, q.http_status) == (False, 404)


def test_unknown_insurer_raises_before_any_request() -> None:
    requests: list[httpx.Request] = []

    def recording(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200)

    async def main() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(recording)) as client:
            gateway = InsurerGateway(REGISTRY, client)
            with pytest.raises(UnknownInsurer, match="nobody"):
                await gateway.call("nobody", "O1", "pay", {})
            with pytest.raises(UnknownInsurer, match="nobody"):
                await gateway.query("nobody", "O1", "pay")

    asyncio.run(main())
    assert requests == []


def test_gateway_uses_the_insurers_adapter() -> None:
    calls: list[tuple[str, str]] = []

    class Recording:
        async def call(
            self,
            client: httpx.AsyncClient,
            insurer: InsurerConfig,
            *,
            order_id: str,
            operation: str,
            payload: dict[str, Any],
        ) -> CallResult:
            calls.append((insurer.name, order_id))
            return CallResult("failure", None, "X", "scripted", 500, 1.0)

        async def query(
            self, client: httpx.AsyncClient, insurer: InsurerConfig, *, order_id: str, operation: str
        ) -> QueryResult:
            return QueryResult(None, None, "n/a", None, 0.0)

    async def main() -> CallResult:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await InsurerGateway(REGISTRY, client, adapters={"generic-json": Recording()}).call(
                "acme", "O9", "pay", {}
            )

    assert asyncio.run(main()).error_message == "scripted"
    assert calls == [("acme", "O9")]


def test_make_http_client_is_pooled_and_follows_no_redirects() -> None:
    async def main() -> None:
        client = make_http_client(max_connections=7, max_keepalive=3)
        try:
            assert client.follow_redirects is False
            pool = client._transport._pool  # type: ignore[attr-defined]
            assert (pool._max_connections, pool._max_keepalive_connections) == (7, 3)
            assert client.headers["User-Agent"].startswith("asyncgate/")
        finally:
            await client.aclose()

    asyncio.run(main())
