"""The insurer gateway: call or query an insurer by name through its adapter and one pooled HTTP client.

One `httpx.AsyncClient` (from `make_http_client`, opened in the app's lifespan) is shared by every
insurer; timeouts are set per request from each insurer's config. The gateway looks up the insurer
(UnknownInsurer for a name the registry lacks) and hands the call to the adapter the insurer names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from service.gateway.adapters import ADAPTERS, CallResult, InsurerAdapter, QueryResult
from service.gateway.registry import InsurerConfig, InsurerRegistry

USER_AGENT = "asyncgate/0.1"
#: The client's default timeout; every gateway request overrides it with the insurer's own.
DEFAULT_TIMEOUT = httpx.Timeout(5.0, connect=2.0)


def make_http_client(
    *, max_connections: int = 200, max_keepalive: int = 50, trust_env: bool = True
) -> httpx.AsyncClient:
    """One pooled client for all insurers: no redirects followed, per-request timeouts.

    `trust_env` keeps httpx's reading of HTTP(S)_PROXY / NO_PROXY / SSL_CERT_FILE, which an
    operator behind an egress proxy needs; tests may turn it off.
    """
    return httpx.AsyncClient(
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_keepalive),
        timeout=DEFAULT_TIMEOUT,
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT},
        trust_env=trust_env,
    )


class InsurerGateway:
    """Calls insurers by name; results, never exceptions, for anything an insurer does."""

    def __init__(
        self,
        registry: InsurerRegistry,
        client: httpx.AsyncClient,
        *,
        adapters: Mapping[str, InsurerAdapter] = ADAPTERS,
    ) -> None:
        self.registry = registry
        self.client = client
        self._adapters = adapters

    def insurer(self, name: str) -> InsurerConfig:
        """The insurer's config; raises UnknownInsurer."""
        return self.registry.get(name)

    async def call(self, insurer: str, order_id: str, operation: str, payload: dict[str, Any]) -> CallResult:
        """One synchronous call of `operation` for `order_id` (Idempotency-Key `{order_id}:{operation}`)."""
        config = self.registry.get(insurer)
        adapter = self._adapter(config)
        return await adapter.call(self.client, config, order_id=order_id, operation=operation, payload=payload)

    async def query(self, insurer: str, order_id: str, operation: str) -> QueryResult:
        """Ask whether the insurer completed `operation` for `order_id`."""
        config = self.registry.get(insurer)
        adapter = self._adapter(config)
        return await adapter.query(self.client, config, order_id=order_id, operation=operation)

    def _adapter(self, config: InsurerConfig) -> InsurerAdapter:
        try:
            return self._adapters[config.adapter]
        except KeyError:
            raise LookupError(f"insurer {config.name!r}: no adapter named {config.adapter!r}") from None
