"""The insurer gateway: call or query an insurer by name through its adapter and the HTTP transport.

One `AiohttpTransport` (from `make_transport`, opened in the app's lifespan and closed there) serves
every insurer, each from its own connection pool; timeouts are set per request from each insurer's
config. The gateway looks up the insurer (UnknownInsurer for a name the registry lacks) and hands the
call to the adapter the insurer names (loaded with the insurers file, plugins.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from service.gateway.adapters import CallResult, InsurerAdapter, QueryResult
from service.gateway.registry import InsurerConfig, InsurerRegistry
from service.gateway.transport import (
    DEFAULT_CONNECTIONS_PER_INSURER,
    AiohttpTransport,
    HttpTransport,
    HttpxTransport,
)

if TYPE_CHECKING:
    import httpx


def make_transport(
    *, connections_per_insurer: int = DEFAULT_CONNECTIONS_PER_INSURER, trust_env: bool = True
) -> AiohttpTransport:
    """The service's transport: aiohttp, a pool of `connections_per_insurer` per insurer, no redirects.

    `trust_env` keeps the reading of HTTP(S)_PROXY / NO_PROXY (and ~/.netrc), which an operator behind
    an egress proxy needs; tests may turn it off.
    """
    return AiohttpTransport(connections_per_insurer=connections_per_insurer, trust_env=trust_env)


def as_transport(client: HttpTransport | httpx.AsyncClient) -> HttpTransport:
    """`client` as a transport: an `httpx.AsyncClient` (the tests' MockTransport ones) is wrapped."""
    if isinstance(client, AiohttpTransport | HttpxTransport):
        return client
    import httpx

    if isinstance(client, httpx.AsyncClient):
        return HttpxTransport(client)
    return client


class InsurerGateway:
    """Calls insurers by name; results, never exceptions, for anything an insurer does."""

    def __init__(
        self,
        registry: InsurerRegistry,
        transport: HttpTransport | httpx.AsyncClient,
        *,
        adapters: Mapping[str, InsurerAdapter] | None = None,
    ) -> None:
        self.registry = registry
        self.transport = as_transport(transport)
        self._adapters = registry.adapters if adapters is None else adapters

    def insurer(self, name: str) -> InsurerConfig:
        """The insurer's config; raises UnknownInsurer."""
        return self.registry.get(name)

    async def call(self, insurer: str, order_id: str, operation: str, payload: dict[str, Any]) -> CallResult:
        """One synchronous call of `operation` for `order_id` (Idempotency-Key `{order_id}:{operation}`)."""
        config = self.registry.get(insurer)
        adapter = self._adapter(config)
        return await adapter.call(self.transport, config, order_id=order_id, operation=operation, payload=payload)

    async def query(self, insurer: str, order_id: str, operation: str) -> QueryResult:
        """Ask whether the insurer completed `operation` for `order_id`."""
        config = self.registry.get(insurer)
        adapter = self._adapter(config)
        return await adapter.query(self.transport, config, order_id=order_id, operation=operation)

    def _adapter(self, config: InsurerConfig) -> InsurerAdapter:
        try:
            return self._adapters[config.adapter]
        except KeyError:
            raise LookupError(f"insurer {config.name!r}: no adapter named {config.adapter!r}") from None
