"""Insurer adapters: one call or status query over HTTP -> CallResult / QueryResult, never raising for
anything an insurer or the network does.

This is the seam for insurer-specific formats: an adapter is any object with the `call` and `query`
coroutines of `InsurerAdapter`, registered in `ADAPTERS` under the name that the insurers file's
`adapter` field uses. Only programming errors raise (an unserialisable payload, an invalid request).

`generic-json` (docs/contract.md §3) maps what happened to a CallResult like this::

    2xx + {"success": true, "data": {...}}          -> success (data; {} when missing), status
    any status + {"success": false,                 -> failure, the insurer's error_code (as a string
                  "error_code", "error_message"}       or None) and error_message, status
    a 502/504 not in the protocol (a gateway page)  -> unknown, error_message = body text (truncated)
    anything else: HTML, text, malformed JSON,      -> failure, error_message = body text (truncated),
      JSON without "success", 2xx + false w/o msg      error_code None, http_status = the status
    not sent: ConnectError, ConnectTimeout,         -> failure, error_message "Type: exception text",
      PoolTimeout, DNS failure                         error_code None, http_status None
    maybe received: ReadTimeout, WriteTimeout,      -> unknown, same fields as above
      ReadError, RemoteProtocolError, any other
      transport error

`unknown` means the request may have reached the insurer: query before sending it again.
Timeouts: `timeout_s` bounds each phase of the exchange (write, each read, pool wait), the connect
phase has its own, shorter timeout (`InsurerConfig.effective_connect_timeout_s`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol
from urllib.parse import quote

import httpx

if TYPE_CHECKING:
    from service.gateway.registry import InsurerConfig

Outcome = Literal["success", "failure", "unknown"]

#: Longest error_message kept from an insurer's body or message, in characters.
MAX_MESSAGE_CHARS: Final = 2_000
#: Bytes of an answer read at most; a longer body is cut (and is therefore not the protocol).
MAX_BODY_BYTES: Final = 4 * 1024 * 1024
#: Statuses whose non-protocol body is a gateway page: the insurer may have processed the request.
GATEWAY_STATUSES: Final = frozenset({502, 504})
#: Transport errors raised before any byte of the request can have reached the insurer.
NOT_SENT_ERRORS: Final = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.UnsupportedProtocol,
)


@dataclass(frozen=True)
class CallResult:
    """The outcome of one synchronous call, with what the insurer (or the client) said."""

    outcome: Outcome
    data: dict[str, Any] | None
    error_code: str | None
    error_message: str | None
    http_status: int | None
    latency_ms: float


@dataclass(frozen=True)
class QueryResult:
    """Whether the insurer completed an order: True (with data), False (404), None (could not tell)."""

    completed: bool | None
    data: dict[str, Any] | None
    error_message: str | None
    http_status: int | None
    latency_ms: float


class InsurerAdapter(Protocol):
    """Speaks one insurer format; never raises for insurer or network behaviour."""

    async def call(
        self,
        client: httpx.AsyncClient,
        insurer: InsurerConfig,
        *,
        order_id: str,
        operation: str,
        payload: dict[str, Any],
    ) -> CallResult: ...

    async def query(
        self, client: httpx.AsyncClient, insurer: InsurerConfig, *, order_id: str, operation: str
    ) -> QueryResult: ...


@dataclass(frozen=True)
class _Answer:
    status: int
    text: str


class GenericJsonAdapter:
    """The contract's generic-json protocol (docs/contract.md §3)."""

    async def call(
        self,
        client: httpx.AsyncClient,
        insurer: InsurerConfig,
        *,
        order_id: str,
        operation: str,
        payload: dict[str, Any],
    ) -> CallResult:
        """POST {base_url}/{operation} with the Idempotency-Key; see the module table for outcomes."""
        body = json.dumps(
            {"order_id": order_id, "operation": operation, "payload": payload},
            ensure_ascii=False,
            allow_nan=False,
            separators=(",", ":"),
        ).encode("utf-8")
        request = client.build_request(
            "POST",
            f"{insurer.base_url}/{path_segment(operation)}",
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json",
                "Idempotency-Key": idempotency_key(order_id, operation),
            },
            content=body,
            timeout=request_timeout(insurer),
        )
        started = time.perf_counter()
        try:
            answer = await _exchange(client, request)
        except httpx.TransportError as exc:
            if isinstance(exc, httpx.LocalProtocolError):
                raise  # we built an invalid request: a bug, not insurer behaviour
            outcome: Outcome = "failure" if isinstance(exc, NOT_SENT_ERRORS) else "unknown"
            return CallResult(outcome, None, None, exception_text(exc), None, _ms_since(started))
        return interpret_call(answer.status, answer.text, _ms_since(started))

    async def query(
        self, client: httpx.AsyncClient, insurer: InsurerConfig, *, order_id: str, operation: str
    ) -> QueryResult:
        """GET {base_url}/{operation}/{order_id}: 2xx + success true -> True, 404 -> False, else None."""
        request = client.build_request(
            "GET",
            f"{insurer.base_url}/{path_segment(operation)}/{path_segment(order_id)}",
            headers={"Accept": "application/json"},
            timeout=request_timeout(insurer),
        )
        started = time.perf_counter()
        try:
            answer = await _exchange(client, request)
        except httpx.TransportError as exc:
            if isinstance(exc, httpx.LocalProtocolError):
                raise
            return QueryResult(None, None, exception_text(exc), None, _ms_since(started))
        return interpret_query(answer.status, answer.text, _ms_since(started))


def idempotency_key(order_id: str, operation: str) -> str:
    """The Idempotency-Key header of a call: `{order_id}:{operation}`."""
    return f"{order_id}:{operation}"


def path_segment(value: str) -> str:
    """`value` as one URL path segment: contract order ids (A-Z a-z 0-9 _ - . :) stay literal,
    anything else is percent-encoded, and "." / ".." are encoded so no client normalises them away."""
    segment = quote(value, safe=":")
    return segment.replace(".", "%2E") if segment in (".", "..") else segment


def request_timeout(insurer: InsurerConfig) -> httpx.Timeout:
    """Per-request timeouts: timeout_s for write, read and pool; the connect timeout separately."""
    return httpx.Timeout(insurer.timeout_s, connect=insurer.effective_connect_timeout_s)


def exception_text(exc: BaseException) -> str:
    """`Type: message` (e.g. `ReadTimeout: timed out`); httpx timeouts often carry no message, and then
    say `timed out`, like the socket error underneath; other exceptions without one give just `Type`."""
    text = str(exc).strip()
    name = type(exc).__name__
    if not text and isinstance(exc, httpx.TimeoutException):
        text = "timed out"
    return f"{name}: {text}"[:MAX_MESSAGE_CHARS] if text else name


def interpret_call(status: int, text: str, latency_ms: float) -> CallResult:
    """Map an answer (status, body text) to a CallResult per docs/contract.md §3."""
    doc = _json_object(text)
    if doc is not None:
        flag = doc.get("success")
        if flag is True and 200 <= status < 300:
            return CallResult("success", _data(doc.get("data")), None, None, status, latency_ms)
        if flag is False and doc.get("error_message") is not None:
            code, message = _code(doc.get("error_code")), _message(doc["error_message"])
            return CallResult("failure", None, code, message, status, latency_ms)
    outcome: Outcome = "unknown" if status in GATEWAY_STATUSES else "failure"
    return CallResult(outcome, None, None, _truncate(text), status, latency_ms)


def interpret_query(status: int, text: str, latency_ms: float) -> QueryResult:
    """Map a query answer to a QueryResult: completed True / False (404) / None (anything else)."""
    if status == 404:
        return QueryResult(False, None, None, status, latency_ms)
    doc = _json_object(text)
    if 200 <= status < 300 and doc is not None and doc.get("success") is True:
        return QueryResult(True, _data(doc.get("data")), None, status, latency_ms)
    body = _truncate(text)
    message = f"HTTP {status}: {body}" if body else f"HTTP {status} with an empty body"
    return QueryResult(None, None, message[:MAX_MESSAGE_CHARS], status, latency_ms)


async def _exchange(client: httpx.AsyncClient, request: httpx.Request) -> _Answer:
    """Send the request and read at most MAX_BODY_BYTES of the answer; transport errors propagate."""
    response = await client.send(request, stream=True)
    try:
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size >= MAX_BODY_BYTES:
                break
        body = b"".join(chunks)[:MAX_BODY_BYTES]
    except httpx.DecodingError as exc:  # a body we cannot decompress is still an answer
        return _Answer(response.status_code, exception_text(exc))
    finally:
        await response.aclose()
    return _Answer(response.status_code, decode_body(body, response.charset_encoding))


def decode_body(body: bytes, charset: str | None) -> str:
    """Body bytes to text: the declared charset, else UTF-8 (BOM allowed), else GB18030, else lossy UTF-8."""
    if charset:
        try:
            return body.decode(charset, errors="replace")
        except LookupError:
            pass
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return body.decode(encoding)
        except UnicodeDecodeError:
            continue
    return body.decode("utf-8", errors="replace")


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _data(value: Any) -> dict[str, Any]:
    """The success data: an object as is, missing/null as {}, any other JSON value under "value"."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    return {"value": value}


def _code(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def _message(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text[:MAX_MESSAGE_CHARS]


def _truncate(text: str) -> str:
    return text.strip()[:MAX_MESSAGE_CHARS]


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000.0, 3)


ADAPTERS: Final[dict[str, InsurerAdapter]] = {"generic-json": GenericJsonAdapter()}
