"""Domain exceptions → HTTP answers, registered once in create_app (nothing below the routers
raises HTTPException).

The table maps asyncgate's own errors (AsyncgateError, service/errors.py) that a request can meet,
and model's ArtifactError family, which stays outside that base because model/ imports nothing of
ours. The answer's `detail` is the error's message. Any other error is a 500.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError

from model.artifact import ArtifactError
from service.api.responses import JSONBytes
from service.gateway import UnknownInsurer
from service.jsonvalues import encodable
from service.learning.reload import ModelRejected
from service.processing import PayloadTooLarge
from service.store import (
    InvalidCursor,
    InvalidTransition,
    OrderConflict,
    OrderNotFound,
    RuleNotFound,
    StoreUnavailable,
)
from service.store.events import EventNotFound, EventPending

#: First match wins: a subclass before its base.
STATUS: dict[type[Exception], int] = {
    UnknownInsurer: 400,
    InvalidCursor: 400,
    OrderNotFound: 404,
    RuleNotFound: 404,
    EventNotFound: 404,
    OrderConflict: 409,
    InvalidTransition: 409,
    EventPending: 409,
    ModelRejected: 409,
    ArtifactError: 409,
    PayloadTooLarge: 413,
    StoreUnavailable: 503,
}


#: How deep an echoed input is shown; deeper containers read "…" (orjson stops at 255 levels).
_ECHO_DEPTH = 16


def _escaped(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _json_safe(value: Any) -> Any:
    """`value` as orjson takes it (service/jsonvalues.py), unpaired surrogates escaped, containers
    deeper than _ECHO_DEPTH cut to "…"."""
    return encodable(value, text=_escaped, max_depth=_ECHO_DEPTH)


def install_error_handlers(app: FastAPI) -> None:
    async def handle(request: Request, exc: Exception) -> JSONBytes:
        status = next(code for kind, code in STATUS.items() if isinstance(exc, kind))
        headers = {"Retry-After": "1"} if status == 503 else None
        return JSONBytes({"detail": str(exc)}, status_code=status, headers=headers)

    async def invalid(request: Request, exc: Exception) -> JSONBytes:
        """422 naming each field at fault. The echoed input may hold NaN or Infinity (Python's JSON parser
        takes them), which FastAPI's own handler cannot serialize (a 500), or integers beyond 64 bits:
        those are echoed as null and as text; unpaired surrogates escaped, and deep nesting cut short
        (before FastAPI's encoder, which would recurse through it)."""
        assert isinstance(exc, RequestValidationError)
        return JSONBytes({"detail": _json_safe(jsonable_encoder(_json_safe(exc.errors())))}, status_code=422)

    for kind in STATUS:
        app.add_exception_handler(kind, handle)
    app.add_exception_handler(RequestValidationError, invalid)
