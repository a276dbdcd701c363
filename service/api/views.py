"""Store records → response bodies (the contract's order and /process shapes)."""

from __future__ import annotations

from typing import Any, Literal

from service.api.schemas import AttemptOut, FailureOut, OrderOut, ProcessResponse, TransitionOut
from service.processing import NEXT_ACTION
from service.store import AttemptRecord, OrderRecord, OrderState, TransitionRecord


def _dict_or_none(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def decided_by(a: AttemptRecord) -> Literal["model", "rule"] | None:
    """Who classified the attempt; attempts classified before rules existed were the model's."""
    if a.decided_by == "rule":
        return "rule"
    return "model" if a.async_eligible is not None and a.kind == "call" else None


def attempt_out(a: AttemptRecord) -> AttemptOut:
    return AttemptOut(
        at=a.at,
        kind=a.kind,
        latency_ms=a.latency_ms,
        outcome=a.outcome,
        error_code=a.error_code,
        error_message=a.error_message,
        http_status=a.http_status,
        async_eligible=a.async_eligible,
        probability=a.probability,
        category=a.category,
        model_version=a.model_version,
        explanation=a.explanation if isinstance(a.explanation, list) else None,
        actor=a.actor,
        exploration=bool(a.exploration),
        decided_by=decided_by(a),
        rule_id=a.rule_id,
    )


def order_out(order: OrderRecord, transitions: list[TransitionRecord] | None = None) -> OrderOut:
    return OrderOut(
        order_id=order.order_id,
        state=order.state.value,
        next_action=NEXT_ACTION[order.state],
        insurer=order.insurer,
        operation=order.operation,
        created_at=order.created_at,
        updated_at=order.updated_at,
        next_attempt_at=order.next_attempt_at,
        attempt_count=order.attempts,
        last_outcome=order.last_outcome,
        category=order.category,
        result=_dict_or_none(order.result),
        attempts=[attempt_out(a) for a in order.attempt_log or ()],
        transitions=None
        if transitions is None
        else [
            TransitionOut(
                at=t.at,
                from_state=t.from_state.value if t.from_state else None,
                to_state=t.to_state.value,
                reason=t.reason,
                actor=t.actor,
            )
            for t in transitions
        ],
    )


def last_failure(order: OrderRecord) -> FailureOut | None:
    """The latest failed, unknown or skipped (circuit open) call of an order that has not succeeded."""
    if order.state is OrderState.SUCCEEDED:
        return None
    for a in reversed(order.attempt_log or ()):
        if (a.kind == "call" and a.outcome in ("failure", "unknown")) or a.kind == "skip":
            return FailureOut(
                error_code=a.error_code,
                error_message=a.error_message,
                http_status=a.http_status,
                latency_ms=a.latency_ms,
                async_eligible=a.async_eligible,
                probability=a.probability,
                category=a.category,
                model_version=a.model_version,
                outcome=a.outcome,
                explanation=a.explanation if isinstance(a.explanation, list) else None,
                exploration=bool(a.exploration),
                decided_by=decided_by(a),
                rule_id=a.rule_id,
            )
    return None


def process_response(order: OrderRecord) -> ProcessResponse:
    return ProcessResponse(
        order_id=order.order_id,
        state=order.state.value,
        next_action=NEXT_ACTION[order.state],
        result=_dict_or_none(order.result) if order.state is OrderState.SUCCEEDED else None,
        attempts=order.attempts,
        failure=last_failure(order),
    )
