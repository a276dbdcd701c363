"""Plain frozen records that the store takes and returns, their mapping from rows, and the keyset cursor codec.

Callers never see SQLAlchemy rows: an `OrderRecord` carries every column of `orders` plus, when
asked for, `attempt_log` (the order's attempts, oldest first). Its `attempts` field is the column:
the number of insurer calls made so far (queries not counted).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, overload

from sqlalchemy.engine import RowMapping

from service.store.errors import InvalidCursor
from service.store.tables import OrderState

#: "skip": a call not made because the insurer's circuit breaker was open (outcome "skipped").
AttemptKind = Literal["call", "query", "skip"]
#: success/failure/unknown for calls; completed/not_found for queries; skipped for skips.
AttemptOutcome = Literal["success", "failure", "unknown", "completed", "not_found", "skipped"]
#: The order-level summary of its last call or query.
#: The outcome of the order's last call: `not_sent` while its only steps were skips (the insurer has
#: never seen it, so nothing needs a query), None before anything was recorded (a call may be in flight).
LastOutcome = Literal["success", "failure", "unknown", "not_sent"]


@dataclass(frozen=True, slots=True)
class NewAttempt:
    """One call or query to an insurer, as the caller observed and classified it."""

    kind: AttemptKind
    outcome: AttemptOutcome
    latency_ms: float | None = None
    error_code: str | None = None
    error_message: str | None = None
    http_status: int | None = None
    async_eligible: bool | None = None
    probability: float | None = None
    category: str | None = None
    model_version: str | None = None
    explanation: Any = None
    exploration: bool | None = None
    decided_by: str | None = None
    rule_id: int | None = None


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """A stored attempt row."""

    id: int
    order_pk: int
    at: dt.datetime
    kind: AttemptKind
    outcome: AttemptOutcome
    latency_ms: float | None
    error_code: str | None
    error_message: str | None
    http_status: int | None
    async_eligible: bool | None
    probability: float | None
    category: str | None
    model_version: str | None
    explanation: Any
    actor: str
    exploration: bool | None = None
    #: "model" or "rule" (None on attempts without a classification, or written before rules existed)
    decided_by: str | None = None
    rule_id: int | None = None


@dataclass(frozen=True, slots=True)
class EventFacts:
    """What a transition's event says about the order (docs/contract.md §8), from values its writer holds:
    `attempts` after the step, the insurer's `result`, and `failure` (service/events/payload.py's
    `failure_summary`) for a final failure."""

    order_id: str
    insurer: str
    operation: str
    attempts: int
    result: Any = None
    failure: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class TransitionRecord:
    """A stored state change; `from_state` is None for the order's creation."""

    id: int
    order_pk: int
    at: dt.datetime
    from_state: OrderState | None
    to_state: OrderState
    reason: str
    actor: str


@dataclass(frozen=True, slots=True)
class OrderRecord:
    """A stored order; `attempt_log` is None unless the method was asked to include attempts."""

    pk: int
    order_id: str
    insurer: str
    operation: str
    payload: dict[str, Any]
    request_hash: str
    state: OrderState
    attempts: int
    next_attempt_at: dt.datetime | None
    lease_owner: str | None
    lease_until: dt.datetime | None
    last_outcome: LastOutcome | None
    category: str | None
    result: Any
    first_failure_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime
    attempt_log: tuple[AttemptRecord, ...] | None = None


@dataclass(frozen=True, slots=True)
class FirstFailure:
    """An order's first failed (or unknown) call, with what became of the order since (the learning loop's row).

    `later_calls` counts the calls made after that failure (re-executions); `later_attempts` counts
    calls and status queries.
    """

    order_pk: int
    order_id: str
    insurer: str
    operation: str
    state: OrderState
    created_at: dt.datetime
    updated_at: dt.datetime
    attempt: AttemptRecord
    later_calls: int
    later_attempts: int


#: The fields of a rule that an operator sets (service/rules.py validates them): four match fields, then the decision.
RULE_FIELDS = ("insurer", "operation", "error_code", "message_contains", "decision", "category", "reason")


@dataclass(frozen=True, slots=True)
class NewRule:
    """A validated rule to store (service.rules.RuleDraft makes them)."""

    insurer: str | None
    operation: str | None
    error_code: str | None
    message_contains: str | None
    decision: str
    category: str | None
    reason: str

    def content(self) -> tuple[str | None, ...]:
        """The operator's fields, in RULE_FIELDS order: two rules with equal content are the same rule."""
        return tuple(getattr(self, name) for name in RULE_FIELDS)


@dataclass(frozen=True, slots=True)
class RuleRecord:
    """A stored rule; `deleted_at` is set once it was removed (it no longer applies)."""

    rule_id: int
    insurer: str | None
    operation: str | None
    error_code: str | None
    message_contains: str | None
    decision: str
    category: str | None
    reason: str
    created_at: dt.datetime
    created_by: str
    hits: int = 0
    #: of the hits, how many the model alone would have decided the other way
    overrides: int = 0
    deleted_at: dt.datetime | None = None
    deleted_by: str | None = None

    def content(self) -> tuple[str | None, ...]:
        return tuple(getattr(self, name) for name in RULE_FIELDS)


@dataclass(frozen=True, slots=True)
class RuleChange:
    """One entry of the rules' history: a rule `created` or `deleted`, by whom and when."""

    change_id: int
    rule_id: int
    action: str
    at: dt.datetime
    actor: str
    rule: RuleRecord


def rule_from_row(row: RowMapping) -> RuleRecord:
    """A RuleRecord from a row of `rules`."""
    return RuleRecord(
        rule_id=row["id"],
        insurer=row["insurer"],
        operation=row["operation"],
        error_code=row["error_code"],
        message_contains=row["message_contains"],
        decision=row["decision"],
        category=row["category"],
        reason=row["reason"],
        created_at=row["created_at"],
        created_by=row["created_by"],
        hits=int(row["hits"]),
        overrides=int(row["overrides"]),
        deleted_at=row["deleted_at"],
        deleted_by=row["deleted_by"],
    )


def order_from_row(row: Mapping[Any, Any], attempt_log: tuple[AttemptRecord, ...] | None = None) -> OrderRecord:
    """An OrderRecord from a row of `orders`."""
    return OrderRecord(
        pk=row["id"],
        order_id=row["order_id"],
        insurer=row["insurer"],
        operation=row["operation"],
        payload=row["payload"],
        request_hash=row["request_hash"],
        state=OrderState(row["state"]),
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        lease_owner=row["lease_owner"],
        lease_until=row["lease_until"],
        last_outcome=row["last_outcome"],
        category=row["category"],
        result=row["result"],
        first_failure_at=row["first_failure_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        attempt_log=attempt_log,
    )


def attempt_from_row(row: Mapping[Any, Any]) -> AttemptRecord:
    """An AttemptRecord from a row of `attempts`."""
    return AttemptRecord(
        id=row["id"],
        order_pk=row["order_pk"],
        at=row["at"],
        kind=row["kind"],
        outcome=row["outcome"],
        latency_ms=row["latency_ms"],
        error_code=row["error_code"],
        error_message=row["error_message"],
        http_status=row["http_status"],
        async_eligible=row["async_eligible"],
        probability=row["probability"],
        category=row["category"],
        model_version=row["model_version"],
        explanation=row["explanation"],
        actor=row["actor"],
        exploration=row["exploration"],
        decided_by=row["decided_by"],
        rule_id=row["rule_id"],
    )


def transition_from_row(row: RowMapping) -> TransitionRecord:
    """A TransitionRecord from a row of `transitions`."""
    return TransitionRecord(
        id=row["id"],
        order_pk=row["order_pk"],
        at=row["at"],
        from_state=None if row["from_state"] is None else OrderState(row["from_state"]),
        to_state=OrderState(row["to_state"]),
        reason=row["reason"],
        actor=row["actor"],
    )


#: An order's place in a keyset-paged list: (created_at, pk) in the lists newest first (GET /orders,
#: the console's orders table), its order_id in the console's order-id search.
TimeKey = tuple[dt.datetime, int]
#: The tag of an order_id cursor (a time cursor starts with a year, never with this).
_ORDER_ID_TAG: Final = "id"


def encode_cursor(key: TimeKey | str) -> str:
    """The opaque cursor pointing just past `key`: the key's fields joined by "|", base64url, unpadded."""
    if isinstance(key, str):
        raw = f"{_ORDER_ID_TAG}|{key}"
    else:
        created_at, pk = key
        raw = f"{created_at.astimezone(dt.UTC).isoformat()}|{pk}"
    return base64.urlsafe_b64encode(raw.encode()).decode("ascii").rstrip("=")


@overload
def decode_cursor(cursor: str, *, order_id: Literal[False] = False) -> TimeKey: ...


@overload
def decode_cursor(cursor: str, *, order_id: Literal[True]) -> str: ...


def decode_cursor(cursor: str, *, order_id: bool = False) -> TimeKey | str:
    """The key in a cursor made by `encode_cursor` (an order_id with `order_id`, else (created_at, pk));
    InvalidCursor for anything else, including a cursor of the other kind."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("utf-8")
        if order_id:
            tag, found = raw.split("|", 1)
            if tag != _ORDER_ID_TAG:
                raise ValueError("not an order_id cursor")
            return found
        stamp, pk_text = raw.split("|")
        created_at = dt.datetime.fromisoformat(stamp)
        pk = int(pk_text)
    except (binascii.Error, UnicodeDecodeError, ValueError) as error:
        raise InvalidCursor(cursor) from error
    if created_at.tzinfo is None or pk < 1 or not pk_text.isdigit():
        raise InvalidCursor(cursor)
    return created_at, pk
