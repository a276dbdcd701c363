"""Request and response bodies of the HTTP API (docs/contract.md §2), validated at the edge.

Numbers reject booleans (pydantic's lax mode would take `true` for 1), strings have length limits,
and /process payloads are bounded in size and depth; a refused body writes nothing.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from service.jsonvalues import ORJSON_INTS

MAX_PAYLOAD_DEPTH = 32


def _no_bool(value: Any) -> Any:
    """A JSON number or null: booleans and strings (even "503") are refused, as the contract types them."""
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    if isinstance(value, str):
        raise ValueError("must be a number, not a string")
    return value


def _int_or_none(value: Any) -> Any:
    value = _no_bool(value)
    if isinstance(value, float) and (not math.isfinite(value) or value != int(value)):
        raise ValueError("must be an integer")
    return value


def _unpaired_surrogate(text: str) -> str | None:
    """Why `text` is no Unicode text (a JSON "\\ud800" escape decodes to an unpaired surrogate, which can
    be neither stored nor answered as UTF-8), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"has an unpaired surrogate \\u{ord(text[exc.start]):04x} at position {exc.start}"
    return None


def _unicode(value: str | None) -> str | None:
    problem = None if value is None else _unpaired_surrogate(value)
    if problem is not None:
        raise ValueError(problem)
    return value


#: A string that is Unicode text (no unpaired surrogates).
Unicode = AfterValidator(_unicode)

# The bounds sit on the inner type: on the `| None` union they would be applied to None (a TypeError, 500).
HttpStatus = Annotated[Annotated[int, Field(ge=100, le=599)] | None, BeforeValidator(_int_or_none)]
LatencyMs = Annotated[Annotated[float, Field(ge=0, allow_inf_nan=False)] | None, BeforeValidator(_no_bool)]
Name = Annotated[str, Field(max_length=128), Unicode]
OrderId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_\-.:]{1,64}$", examples=["P2026112400001"])]
Operation = Annotated[str, Field(pattern=r"^[A-Za-z0-9_\-]{1,64}$", examples=["underwrite"])]


class ClassifyRequest(BaseModel):
    """One failure of a synchronous call."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "insurer": "acme",
                    "operation": "underwrite",
                    "error_code": "E1001",
                    "error_message": "系统繁忙，请稍后再试",
                    "http_status": 503,
                    "latency_ms": 1840.0,
                }
            ]
        },
    )

    insurer: Name
    operation: Annotated[str, Field(max_length=64), Unicode]
    error_code: Annotated[str | None, Field(max_length=256), Unicode] = None
    error_message: Annotated[str, Field(max_length=65_536), Unicode]
    http_status: HttpStatus = None
    latency_ms: LatencyMs = None


class Contribution(BaseModel):
    """One explanation item, strongest first (docs/contract.md §7); items may carry more keys (a rule's
    `rule_id` and `reason`), kept as given."""

    model_config = ConfigDict(extra="allow")

    kind: Literal["text", "code", "status", "latency", "insurer", "operation", "rule"] | None = None
    feature: str
    weight: float
    span: str | None = Field(None, description="text items: the word or phrase of the message it covers")


DecidedBy = Literal["model", "rule"]


class ClassifyResponse(BaseModel):
    async_eligible: bool
    probability: float
    threshold: float
    category: str | None
    model_version: str
    explanation: list[Contribution]
    decided_by: DecidedBy = "model"
    rule_id: int | None = None


class ClassifyBatchRequest(BaseModel):
    items: Annotated[list[ClassifyRequest], Field(min_length=1, max_length=10_000)]


class ClassifyBatchResponse(BaseModel):
    results: list[ClassifyResponse]


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of a JSON value in containers (a scalar is 0, `{"a": 1}` is 1, `{"a": [1]}` is 2),
    stopping early once past `limit`."""
    stack = [(value, 1)]
    deepest = 0
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, dict | list):
            continue
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        children = item.values() if isinstance(item, dict) else item
        stack.extend((v, depth + 1) for v in children)
    return deepest


def _unstorable(value: Any, path: str = "payload") -> str | None:
    """What makes a JSON value unstorable, at its first such place, or None: NaN or Infinity (Python's
    JSON parser accepts them), integers beyond 64 bits, unpaired surrogates in strings or keys."""
    stack = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return f"{where} is NaN or Infinity, which JSON does not allow"
        if isinstance(item, int) and not isinstance(item, bool) and item not in ORJSON_INTS:
            return f"{where} is an integer beyond 64 bits"
        if isinstance(item, str) and (problem := _unpaired_surrogate(item)) is not None:
            return f"{where} {problem}"
        if isinstance(item, dict):
            for k, v in item.items():
                if (problem := _unpaired_surrogate(k)) is not None:
                    return f"a key of {where} {problem}"
                stack.append((v, f"{where}.{k}"))
        elif isinstance(item, list):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(item))
    return None


class ProcessRequest(BaseModel):
    """An order's synchronous call to make through asyncgate."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "order_id": "P2026112400001",
                    "insurer": "acme",
                    "operation": "underwrite",
                    "payload": {"product": "term-life-20", "premium": 1200},
                }
            ]
        },
    )

    order_id: OrderId
    insurer: Annotated[str, Field(min_length=1, max_length=128), Unicode]
    operation: Operation
    payload: dict[str, Any]

    @field_validator("payload")
    @classmethod
    def _bounded_depth(cls, payload: dict[str, Any]) -> dict[str, Any]:
        if _depth(payload, MAX_PAYLOAD_DEPTH) > MAX_PAYLOAD_DEPTH:
            raise ValueError(f"payload is nested deeper than {MAX_PAYLOAD_DEPTH} levels")
        problem = _unstorable(payload)
        if problem is not None:
            raise ValueError(problem)
        return payload


NextAction = Literal["complete", "await_async", "return_failure"]
State = Literal["SUCCEEDED", "FAILED", "ASYNC_PROCESSING", "DEAD"]


class FailureOut(BaseModel):
    error_code: str | None
    error_message: str | None
    http_status: int | None
    latency_ms: float | None
    async_eligible: bool | None
    probability: float | None
    category: str | None
    model_version: str | None
    outcome: str | None = None
    explanation: list[Contribution] | None = None
    exploration: bool = False  # a final verdict kept async to learn its outcome (docs/learning-loop.md)
    decided_by: DecidedBy | None = None  # null when nothing was classified (a circuit-open skip)
    rule_id: int | None = None


class ProcessResponse(BaseModel):
    order_id: str
    state: State
    next_action: NextAction
    result: dict[str, Any] | None
    attempts: int
    failure: FailureOut | None


class AttemptOut(BaseModel):
    at: dt.datetime
    kind: str
    latency_ms: float | None
    outcome: str
    error_code: str | None
    error_message: str | None
    http_status: int | None
    async_eligible: bool | None
    probability: float | None
    category: str | None
    model_version: str | None
    explanation: list[Contribution] | None = None
    actor: str
    exploration: bool = False  # a final verdict kept async to learn its outcome (docs/learning-loop.md)
    decided_by: DecidedBy | None = None  # null on attempts without a classification (success, query, skip)
    rule_id: int | None = None


class TransitionOut(BaseModel):
    at: dt.datetime
    from_state: str | None
    to_state: str
    reason: str
    actor: str


class OrderOut(BaseModel):
    order_id: str
    state: State
    next_action: NextAction
    insurer: str
    operation: str
    created_at: dt.datetime
    updated_at: dt.datetime
    next_attempt_at: dt.datetime | None
    attempt_count: int
    last_outcome: str | None
    category: str | None
    result: dict[str, Any] | None
    attempts: list[AttemptOut]
    transitions: list[TransitionOut] | None = None


class OrderPage(BaseModel):
    orders: list[OrderOut]
    next_cursor: str | None


class ModelReloaded(BaseModel):
    model_version: str
