"""The yardstick: a bare FastAPI POST /classify that parses the contract's body and returns a constant.

Started exactly like the service in the benchmarks (`uvicorn bench.bare_app:create_app --factory`,
one worker), so the ratio between the two is what asyncgate adds: validation rules, middleware,
dependencies, scoring, metrics and the response.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import FastAPI
from pydantic import BaseModel

#: The contract's response shape, always the same answer.
CONSTANT: Final[dict[str, Any]] = {
    "async_eligible": True,
    "probability": 0.97,
    "threshold": 0.35,
    "category": "insurer_busy",
    "model_version": "constant",
    "explanation": [],
}


class FailureBody(BaseModel):
    """The /classify request body of the contract, with plain types and no extra rules."""

    insurer: str
    operation: str
    error_code: str | None = None
    error_message: str
    http_status: int | None = None
    latency_ms: float | None = None


def create_app() -> FastAPI:
    app = FastAPI(title="bare classify")

    @app.post("/classify", response_model=None)
    async def classify(body: FailureBody) -> dict[str, Any]:
        return CONSTANT

    @app.get("/readyz", response_model=None)
    async def ready() -> dict[str, str]:
        return {"status": "ready"}

    return app
