"""The event document of docs/contract.md §8, built from what the transition's caller already holds.

`event_document(...)` is pure (no clock, no randomness, no I/O): the event id and the time are
passed in, so the same inputs always give the same document, and a caller can build it before the
statement that writes both the transition and the event. `encode_document` gives the bytes that are
stored, served by the feed and signed for the webhook: the same bytes every time the event is sent.
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any, Final

import orjson

EVENT_TYPE: Final = "order.state_changed"
#: States in which the order's `failure` is reported (a final answer: the platform stops waiting).
FINAL_FAILURE_STATES: Final = frozenset({"FAILED", "DEAD"})


def new_event_id(now: dt.datetime) -> str:
    """`evt_` + 12 hex digits of milliseconds since the epoch + 20 random hex digits (80 bits):
    unique without a database round trip, and roughly time-ordered when read by eye."""
    millis = int(now.timestamp() * 1000)
    return f"evt_{millis:012x}{secrets.token_hex(10)}"


def format_time(value: dt.datetime) -> str:
    """UTC with milliseconds and a Z: 2026-12-02T10:00:00.123Z."""
    return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def failure_summary(
    *, error_code: str | None, error_message: str | None, http_status: int | None, category: str | None
) -> dict[str, Any]:
    """The `failure` of an event: the last failure's code, message, HTTP status and category."""
    return {"error_code": error_code, "error_message": error_message, "http_status": http_status, "category": category}


def event_document(
    *,
    event_id: str,
    order_id: str,
    insurer: str,
    operation: str,
    from_state: str | None,
    to_state: str,
    attempts: int,
    result: Any,
    failure: dict[str, Any] | None,
    at: dt.datetime,
) -> dict[str, Any]:
    """The event for one transition (from_state None: the order's creation).

    `result` is the insurer's data (SUCCEEDED), `failure` the last failure (FAILED, DEAD); each is
    null in the other states, whatever the caller passes, so a document never claims more than the
    state says.
    """
    return {
        "event_id": event_id,
        "type": EVENT_TYPE,
        "order_id": order_id,
        "from_state": from_state,
        "to_state": to_state,
        "at": format_time(at),
        "order": {
            "state": to_state,
            "insurer": insurer,
            "operation": operation,
            "attempts": attempts,
            "result": result if to_state == "SUCCEEDED" else None,
            "failure": failure if to_state in FINAL_FAILURE_STATES else None,
        },
    }


def encode_document(document: dict[str, Any]) -> str:
    """The document as compact JSON text (UTF-8 when encoded), the exact body every delivery sends."""
    return orjson.dumps(document).decode("utf-8")
