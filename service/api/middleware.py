"""Pure ASGI middleware (no BaseHTTPMiddleware: it costs ~3x throughput): body limits and observation.

- `BodyLimit`: 413 for a body over its route's limit — from Content-Length before reading a byte,
  or while streaming a body that announced none.
- `Observe`: request latency per route template into Metrics, and a debug log line per request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

import orjson
from prometheus_client import Histogram
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.metrics import Metrics

log = logging.getLogger("asyncgate.http")


async def _send_413(send: Send, limit: int) -> None:
    body = orjson.dumps({"detail": f"request body is larger than the limit of {limit} bytes"})
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    def __init__(self, app: ASGIApp, *, default: int, per_path: Mapping[str, int]):
        self.app = app
        self.default = default
        self.per_path = dict(per_path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.per_path.get(scope["path"], self.default)
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    announced = int(value)
                except ValueError:
                    announced = -1
                if announced > limit:
                    await _send_413(send, limit)
                    return
                break
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, f"request body is larger than the limit of {limit} bytes")
            return message

        await self.app(scope, limited, send)


class Observe:
    def __init__(self, app: ASGIApp, *, metrics: Metrics):
        self.app = app
        self.metrics = metrics
        # the histogram child per (method, route template, status): a small set, looked up per request
        self._children: dict[tuple[str, str, str], Histogram] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            elapsed = time.perf_counter() - started
            key = (scope["method"], template, str(status))
            child = self._children.get(key)
            if child is None:
                child = self._children[key] = self.metrics.requests.labels(*key)
            child.observe(elapsed)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s %s %d %.1fms", scope["method"], scope["path"], status, elapsed * 1000)
