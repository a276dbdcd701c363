"""InsurerGateway: looks up the insurer and its adapter; one transport, a pool per insurer."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import httpx
import pytest

from service.gateway import (
    AiohttpTransport,
    Answer,
    CallResult,
    HttpxTransport,
    InsurerConfig,
    InsurerGateway,
    InsurerRegistry,
    QueryResult,
    UnknownInsurer,
    as_transport,
    make_transport,
)
from service.gateway.transport import USER_AGENT
from tests.service.gateway.helpers import FakeTransport, Sent, answer, json_answer

REGISTRY = InsurerRegistry.from_mapping(
    {
        "acme": {"base_url": "http://acme.test", "timeout_s": 1.0},
        "beta": {"base_url": "http://beta.test/v1", "timeout_s": 4.0},
    }
)


def handler(request: Sent) -> Answer:
    if request.method == "GET":
        return answer(404, "")
    host = request.url.split("/")[2]
    return json_answer(200, {"success": True, "data": {"host": host, "pool": request.pool, **request.json()}})


def test_call_and_query_route_to_the_named_insurer() -> None:
    async def main() -> tuple[CallResult, CallResult, QueryResult]:
        gateway = InsurerGateway(REGISTRY, FakeTransport(handler))
        a = await gateway.call("acme", "O1", "pay", {"n": 1})
        b = await gateway.call("beta", "O2", "refund", {})
        q = await gateway.query("beta", "O2", "refund")
        return a, b, q

    a, b, q = asyncio.run(main())
    assert a.data == {"host": "acme.test", "pool": "acme", "order_id": "O1", "operation": "pay", "payload": {"n": 1}}
    assert b.data is not None and (b.data["host"], b.data["pool"]) == ("beta.test", "beta")
    assert (q.completed, q.http_status) == (False, 404)


def test_unknown_insurer_raises_before_any_request() -> None:
    transport = FakeTransport(handler)

    async def main() -> None:
        gateway = InsurerGateway(REGISTRY, transport)
        with pytest.raises(UnknownInsurer, match="nobody"):
            await gateway.call("nobody", "O1", "pay", {})
        with pytest.raises(UnknownInsurer, match="nobody"):
            await gateway.query("nobody", "O1", "pay")

    asyncio.run(main())
    assert transport.sent == []


def test_gateway_uses_the_insurers_adapter() -> None:
    calls: list[tuple[str, str]] = []

    class Recording:
        option_keys: frozenset[str] = frozenset()

        def check_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
            return dict(options)

        async def call(
            self,
            transport: Any,
            insurer: InsurerConfig,
            *,
            order_id: str,
            operation: str,
            payload: dict[str, Any],
        ) -> CallResult:
            calls.append((insurer.name, order_id))
            return CallResult("failure", None, "X", "scripted", 500, 1.0)

        async def query(self, transport: Any, insurer: InsurerConfig, *, order_id: str, operation: str) -> QueryResult:
            return QueryResult(None, None, "n/a", None, 0.0)

    async def main() -> CallResult:
        return await InsurerGateway(REGISTRY, FakeTransport(handler), adapters={"generic-json": Recording()}).call(
            "acme", "O9", "pay", {}
        )

    assert asyncio.run(main()).error_message == "scripted"
    assert calls == [("acme", "O9")]


def test_registry_adapters_are_the_gateways_by_default() -> None:
    assert set(REGISTRY.adapters) == {"generic-json"}
    gateway = InsurerGateway(REGISTRY, FakeTransport(handler))
    assert gateway._adapter(REGISTRY["acme"]) is REGISTRY.adapters["generic-json"]


def test_an_httpx_client_is_wrapped_as_a_transport() -> None:
    def mock(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"success": True, "data": {"ua": request.headers.get("user-agent", "")}})

    async def main() -> CallResult:
        async with httpx.AsyncClient(transport=httpx.MockTransport(mock)) as client:
            gateway = InsurerGateway(REGISTRY, client)
            assert isinstance(gateway.transport, HttpxTransport)
            return await gateway.call("acme", "O1", "pay", {})

    assert asyncio.run(main()).outcome == "success"
    fake = FakeTransport(handler)
    assert as_transport(fake) is fake


def test_make_transport_pools_per_insurer_with_no_redirects_and_a_user_agent() -> None:
    async def main() -> None:
        transport = make_transport(connections_per_insurer=7, trust_env=False)
        try:
            assert isinstance(transport, AiohttpTransport)
            acme, beta = transport.session("acme"), transport.session("beta")
            assert acme is transport.session("acme") and acme is not beta, "one session (pool) per insurer"
            assert acme.connector is not None and acme.connector.limit == 7
            assert acme.headers["User-Agent"] == USER_AGENT and USER_AGENT.startswith("asyncgate/")
            assert acme.trust_env is False
            assert make_transport().trust_env is True
        finally:
            await transport.aclose()
        assert acme.closed and beta.closed

    asyncio.run(main())
