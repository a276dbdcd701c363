"""Helpers for gateway unit tests: an insurer config and a fake HttpTransport that records what is sent."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from service.gateway import Answer, CallResult, GenericJsonAdapter, InsurerAdapter, InsurerConfig, QueryResult

BASE_URL = "http://insurer.test/api"


@dataclass(frozen=True)
class Sent:
    """One request as an adapter handed it to the transport."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes | None
    timeout_s: float
    connect_timeout_s: float
    pool: str

    def json(self) -> Any:
        assert self.body is not None
        return json.loads(self.body)


Handler = Callable[[Sent], Answer]


@dataclass
class FakeTransport:
    """An HttpTransport whose answers come from `handler` (which may raise NotSent / MaybeReceived)."""

    handler: Handler
    sent: list[Sent] = field(default_factory=list)
    closed: bool = False

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None = None,
        timeout_s: float,
        connect_timeout_s: float,
        pool: str,
    ) -> Answer:
        sent = Sent(method, url, dict(headers), body, timeout_s, connect_timeout_s, pool)
        self.sent.append(sent)
        return self.handler(sent)

    async def aclose(self) -> None:
        self.closed = True


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
    adapter: InsurerAdapter | None = None,
) -> CallResult:
    return asyncio.run(
        (adapter or GenericJsonAdapter()).call(
            FakeTransport(handler),
            insurer or make_insurer(),
            order_id=order_id,
            operation=operation,
            payload=payload if payload is not None else {"amount": 100},
        )
    )


def run_query(
    handler: Handler,
    *,
    insurer: InsurerConfig | None = None,
    order_id: str = "P2026112400001",
    operation: str = "underwrite",
    adapter: InsurerAdapter | None = None,
) -> QueryResult:
    return asyncio.run(
        (adapter or GenericJsonAdapter()).query(
            FakeTransport(handler), insurer or make_insurer(), order_id=order_id, operation=operation
        )
    )


def raising(exc: Exception) -> Handler:
    def handler(sent: Sent) -> Answer:
        raise exc

    return handler


def answer(status: int, body: bytes | str, content_type: str = "application/json", *, cut: bool = False) -> Answer:
    content = body.encode("utf-8") if isinstance(body, str) else body
    charset = None
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.lower() == "charset":
            charset = value.strip('"')
    return Answer(status, content, charset, {"Content-Type": content_type}, cut)


def answering(status: int, body: bytes | str, content_type: str = "application/json") -> Handler:
    def handler(sent: Sent) -> Answer:
        return answer(status, body, content_type)

    return handler


def json_answer(status: int, doc: Any) -> Answer:
    return answer(status, json.dumps(doc, ensure_ascii=False))
