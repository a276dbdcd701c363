"""`example-bearer`: asyncgate's generic-json protocol with `Authorization: Bearer <token>` on every request.

The token comes from the environment variable the insurers file names (`token_env`), read once when
the file is loaded; a missing variable fails the service's startup with the insurer's name::

    [insurers.acme]
    base_url = "https://api.acme.example/v2"
    adapter = "example-bearer"
    token_env = "ACME_API_TOKEN"

It keeps every guarantee of docs/adapters.md by building on asyncgate's own pieces: `send` (the
insurer's timeouts and pool), `call_without_answer` (NotSent -> failure, MaybeReceived -> unknown) and
generic-json's `interpret_call` / `interpret_query`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from typing import Any

from service.gateway import CallResult, HttpTransport, InsurerConfig, QueryResult, TransportError
from service.gateway.adapters import (
    answer_text,
    call_without_answer,
    idempotency_key,
    interpret_call,
    interpret_query,
    path_segment,
    send,
)

__all__ = ["BearerJsonAdapter"]


class BearerJsonAdapter:
    """generic-json plus a bearer token (this module's docstring)."""

    option_keys = frozenset({"token_env"})

    def check_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        name = options.get("token_env")
        if not isinstance(name, str) or not name:
            raise ValueError("needs 'token_env', the name of the environment variable holding the API token")
        token = os.environ.get(name)
        if not token:
            raise ValueError(f"the environment variable {name!r} (token_env) is not set or empty")
        return {"token_env": name, "token": _Token(token)}

    async def call(
        self,
        transport: HttpTransport,
        insurer: InsurerConfig,
        *,
        order_id: str,
        operation: str,
        payload: dict[str, Any],
    ) -> CallResult:
        body = json.dumps({"order_id": order_id, "operation": operation, "payload": payload}, ensure_ascii=False)
        headers = {
            **_auth(insurer),
            "Content-Type": "application/json",
            "Idempotency-Key": idempotency_key(order_id, operation),
        }
        started = time.perf_counter()
        url = f"{insurer.base_url}/{path_segment(operation)}"
        try:
            answer = await send(transport, insurer, "POST", url, headers=headers, body=body.encode())
        except TransportError as exc:
            return call_without_answer(exc, _ms(started))
        return interpret_call(answer.status, answer_text(answer), _ms(started))

    async def query(
        self, transport: HttpTransport, insurer: InsurerConfig, *, order_id: str, operation: str
    ) -> QueryResult:
        started = time.perf_counter()
        url = f"{insurer.base_url}/{path_segment(operation)}/{path_segment(order_id)}"
        try:
            answer = await send(transport, insurer, "GET", url, headers=_auth(insurer))
        except TransportError as exc:
            return QueryResult(None, None, exc.text, None, _ms(started))
        return interpret_query(answer.status, answer_text(answer), _ms(started))


class _Token:
    """The token, never shown by a repr."""

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "_Token(***)"


def _auth(insurer: InsurerConfig) -> dict[str, str]:
    token = insurer.options["token"]
    assert isinstance(token, _Token)
    return {"Authorization": f"Bearer {token.value}"}


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000.0, 3)
