"""Insurer adapters: one call or status query over the HTTP seam -> CallResult / QueryResult, never raising
for anything an insurer or the network does.

An adapter is any object with the `call` and `query` coroutines of `InsurerAdapter`, registered under a
name in the entry-point group `asyncgate.adapters` (built-ins too: pyproject.toml) and named by the
insurers file's `adapter` field; docs/adapters.md is its contract. It reaches insurers only through
`HttpTransport` (transport.py), whose two exceptions say whether the request can have arrived. Only
programming errors raise (an unserialisable payload, an invalid URL).

`generic-json` (docs/contract.md §3) maps what happened to a CallResult like this::

    2xx + {"success": true, "data": {...}}          -> success (data; {} when missing), status
    any status + {"success": false,                 -> failure, the insurer's error_code (as a string
                  "error_code", "error_message"}       or None) and error_message, status
    a 502/504 not in the protocol (a gateway page)  -> unknown, error_message = body text (truncated)
    anything else: HTML, text, malformed JSON,      -> failure, error_message = body text (truncated),
      JSON without "success", 2xx + false w/o msg,     error_code None, http_status = the status
      a body cut at MAX_BODY_BYTES
    NotSent: ConnectError, ConnectTimeout,          -> failure, error_message "Kind: detail",
      PoolTimeout (refused, DNS, pool wait)            error_code None, http_status None
    MaybeReceived: ReadTimeout, WriteTimeout,       -> unknown, same fields as above
      ReadError, RemoteProtocolError

`unknown` means the request may have reached the insurer: query before sending it again.
Timeouts: `timeout_s` bounds each phase of the exchange (each read, the pool wait), the connect
phase has its own, shorter timeout (`InsurerConfig.effective_connect_timeout_s`); transport.py has
the exact per-phase mapping.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol
from urllib.parse import quote

from service.gateway.transport import Answer, HttpTransport, NotSent, TransportError

if TYPE_CHECKING:
    from service.gateway.registry import InsurerConfig

Outcome = Literal["success", "failure", "unknown"]

#: Longest error_message kept from an insurer's body or message, in characters.
MAX_MESSAGE_CHARS: Final = 2_000
#: Statuses whose non-protocol body is a gateway page: the insurer may have processed the request.
GATEWAY_STATUSES: Final = frozenset({502, 504})


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
    """Whether the insurer completed an order: True (with data), False (not found), None (could not tell)."""

    completed: bool | None
    data: dict[str, Any] | None
    error_message: str | None
    http_status: int | None
    latency_ms: float


class InsurerAdapter(Protocol):
    """Speaks one insurer format; never raises for insurer or network behaviour (docs/adapters.md).

    `option_keys` are the insurers-file keys it reads beyond the common ones; `check_options`
    validates them when the file is loaded (ValueError with the problem) and returns them as kept.
    """

    option_keys: frozenset[str]

    def check_options(self, options: Mapping[str, Any]) -> dict[str, Any]: ...

    async def call(
        self,
        transport: HttpTransport,
        insurer: InsurerConfig,
        *,
        order_id: str,
        operation: str,
        payload: dict[str, Any],
    ) -> CallResult: ...

    async def query(
        self, transport: HttpTransport, insurer: InsurerConfig, *, order_id: str, operation: str
    ) -> QueryResult: ...


class GenericJsonAdapter:
    """The contract's generic-json protocol (docs/contract.md §3)."""

    option_keys: frozenset[str] = frozenset()

    def check_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """generic-json reads no option."""
        return dict(options)

    async def call(
        self,
        transport: HttpTransport,
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
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Idempotency-Key": idempotency_key(order_id, operation),
        }
        url = f"{insurer.base_url}/{path_segment(operation)}"
        started = time.perf_counter()
        try:
            answer = await send(transport, insurer, "POST", url, headers=headers, body=body)
        except TransportError as exc:
            return call_without_answer(exc, _ms_since(started))
        return interpret_call(answer.status, answer_text(answer), _ms_since(started))

    async def query(
        self, transport: HttpTransport, insurer: InsurerConfig, *, order_id: str, operation: str
    ) -> QueryResult:
        """GET {base_url}/{operation}/{order_id}: 2xx + success true -> True, 404 -> False, else None."""
        url = f"{insurer.base_url}/{path_segment(operation)}/{path_segment(order_id)}"
        started = time.perf_counter()
        try:
            answer = await send(transport, insurer, "GET", url, headers={"Accept": "application/json"})
        except TransportError as exc:
            return QueryResult(None, None, exc.text, None, _ms_since(started))
        return interpret_query(answer.status, answer_text(answer), _ms_since(started))


async def send(
    transport: HttpTransport,
    insurer: InsurerConfig,
    method: Literal["GET", "POST"],
    url: str,
    *,
    headers: Mapping[str, str],
    body: bytes | None = None,
) -> Answer:
    """One exchange with the insurer's timeouts and pool; NotSent / MaybeReceived propagate."""
    return await transport.request(
        method,
        url,
        headers=headers,
        body=body,
        timeout_s=insurer.timeout_s,
        connect_timeout_s=insurer.effective_connect_timeout_s,
        pool=insurer.name,
    )


def call_without_answer(exc: TransportError, latency_ms: float) -> CallResult:
    """No answer: a failure when the request never left (NotSent), unknown when it may have arrived."""
    outcome: Outcome = "failure" if isinstance(exc, NotSent) else "unknown"
    return CallResult(outcome, None, None, exc.text, None, latency_ms)


def answer_text(answer: Answer) -> str:
    """The body as text; a body cut at MAX_BODY_BYTES keeps its text but can never parse as a protocol."""
    text = answer.text
    return f"{text}\n[cut at {len(answer.body)} bytes]" if answer.cut else text


def idempotency_key(order_id: str, operation: str) -> str:
    """The Idempotency-Key header of a call: `{order_id}:{operation}`."""
    return f"{order_id}:{operation}"


def path_segment(value: str) -> str:
    """`value` as one URL path segment: contract order ids (A-Z a-z 0-9 _ - . :) stay literal,
    anything else is percent-encoded, and "." / ".." are encoded so no client normalises them away."""
    segment = quote(value, safe=":")
    return segment.replace(".", "%2E") if segment in (".", "..") else segment


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
