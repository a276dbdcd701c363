"""Domain exceptions → HTTP answers, registered once in create_app (nothing below the routers
raises HTTPException)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError

from model.artifact import ArtifactError
from service.api.responses import JSONBytes
from service.gateway import UnknownInsurer
from service.processing import PayloadTooLarge
from service.store import InvalidCursor, InvalidTransition, OrderConflict, OrderNotFound, StoreUnavailable

STATUS: dict[type[Exception], int] = {
    UnknownInsurer: 400,
    InvalidCursor: 400,
    OrderNotFound: 404,
    OrderConflict: 409,
    InvalidTransition: 409,
    ArtifactError: 409,
    PayloadTooLarge: 413,
    StoreUnavailable: 503,
}


def install_error_handlers(app: FastAPI) -> None:
    async def handle(request: Request, exc: Exception) -> JSONBytes:
        status = next(code for kind, code in STATUS.items() if isinstance(exc, kind))
        headers = {"Retry-After": "1"} if status == 503 else None
        return JSONBytes({"detail": str(exc)}, status_code=status, headers=headers)

    async def invalid(request: Request, exc: Exception) -> JSONBytes:
        """422 naming each field at fault. The echoed input may hold NaN or Infinity (Python's JSON parser
        takes them), which FastAPI's own handler cannot serialize (a 500); orjson writes them as null."""
        assert isinstance(exc, RequestValidationError)
        return JSONBytes({"detail": jsonable_encoder(exc.errors())}, status_code=422)

    for kind in STATUS:
        app.add_exception_handler(kind, handle)
    app.add_exception_handler(RequestValidationError, invalid)
