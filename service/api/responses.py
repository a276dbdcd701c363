"""JSONResponse serialized with orjson (FastAPI's JSONBytes is deprecated; this is the same idea)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse


class JSONBytes(JSONResponse):
    """A JSONResponse (so the OpenAPI schema shows the route's response_model, not a string)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)
