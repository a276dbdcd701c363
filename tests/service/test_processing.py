"""decide(): where an order goes after one step (call, query, skip) — pure, so every branch is checked without I/O."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest

from service.gateway import CallResult, QueryResult
from service.processing import NEXT_ACTION, CircuitSkip, Step, decide, request_hash
from service.retry import RetryPolicy, after_open_circuit, next_attempt_at
from service.scoring import Verdict
from service.store import OrderState

NOW = dt.datetime(2026, 11, 24, 10, 0, tzinfo=dt.UTC)
POLICY = RetryPolicy(base_s=5.0, max_s=600.0, max_attempts=4, max_age_s=3600.0)


def call(outcome: str, **fields: Any) -> CallResult:
    values: dict[str, Any] = {
        "data": {"policy_no": "P1"} if outcome == "success" else None,
        "error_code": None,
        "error_message": None if outcome == "success" else "系统繁忙",
        "http_status": 200 if outcome == "success" else None,
        "latency_ms": 12.0,
    }
    values.update(fields)
    return CallResult(outcome=outcome, **values)  # type: ignore[arg-type]


def verdict(eligible: bool) -> Verdict:
    return Verdict(
        async_eligible=eligible,
        probability=0.9 if eligible else 0.05,
        threshold=0.35,
        category="insurer_busy" if eligible else "validation",
        model_version="v1",
        explanation=[],
    )


def run(result: Step, v: Verdict | None, *, calls: int = 1, first: dt.datetime = NOW, seed: int = 0) -> Any:
    return decide(result, v, calls_made=calls, first_failure_at=first, now=NOW, policy=POLICY, rng=random.Random(seed))


def test_success_is_succeeded_with_nothing_scheduled() -> None:
    decision = run(call("success"), None)
    assert (decision.state, decision.next_attempt_at) == (OrderState.SUCCEEDED, None)


def test_success_wins_even_on_the_last_allowed_call() -> None:
    assert run(call("success"), None, calls=POLICY.max_attempts).state is OrderState.SUCCEEDED


def test_final_failure_is_failed() -> None:
    decision = run(call("failure"), verdict(False))
    assert (decision.state, decision.next_attempt_at) == (OrderState.FAILED, None)
    assert "validation" in decision.reason


def test_final_failure_is_failed_even_when_attempts_are_exhausted() -> None:
    assert run(call("failure"), verdict(False), calls=POLICY.max_attempts).state is OrderState.FAILED


@pytest.mark.parametrize("calls", [1, 2, 3])
def test_async_failure_is_scheduled_by_the_retry_policy(calls: int) -> None:
    decision = run(call("failure"), verdict(True), calls=calls, seed=calls)
    assert decision.state is OrderState.ASYNC_PROCESSING
    expected = next_attempt_at(POLICY, attempts=calls, first_failure_at=NOW, now=NOW, rng=random.Random(calls))
    assert decision.next_attempt_at == expected
    assert decision.next_attempt_at is not None
    assert NOW <= decision.next_attempt_at <= NOW + dt.timedelta(seconds=POLICY.delay_cap(calls))


@pytest.mark.parametrize("v", [verdict(False), verdict(True), None], ids=["model-final", "model-async", "no-verdict"])
def test_unknown_outcome_is_always_kept_async(v: Verdict | None) -> None:
    decision = run(call("unknown", error_message="ReadTimeout: timed out"), v)
    assert decision.state is OrderState.ASYNC_PROCESSING
    assert decision.next_attempt_at is not None
    assert decision.next_attempt_at >= NOW
    assert "query" in decision.reason


@pytest.mark.parametrize("outcome", ["failure", "unknown"])
def test_exhausted_attempts_are_dead(outcome: str) -> None:
    decision = run(call(outcome), verdict(True), calls=POLICY.max_attempts)
    assert (decision.state, decision.next_attempt_at) == (OrderState.DEAD, None)
    assert str(POLICY.max_attempts) in decision.reason


def test_one_call_short_of_the_limit_is_still_scheduled() -> None:
    assert run(call("failure"), verdict(True), calls=POLICY.max_attempts - 1).state is OrderState.ASYNC_PROCESSING


def test_exhausted_age_is_dead() -> None:
    long_ago = NOW - dt.timedelta(seconds=POLICY.max_age_s + 1)
    decision = run(call("failure"), verdict(True), first=long_ago)
    assert decision.state is OrderState.DEAD


def query(completed: bool | None) -> QueryResult:
    return QueryResult(completed, {"policy_no": "P1"} if completed else None, None, 200, 5.0)


def test_a_completed_query_is_succeeded_without_a_call() -> None:
    decision = run(query(True), None, calls=POLICY.max_attempts)
    assert (decision.state, decision.next_attempt_at, decision.send_now) == (OrderState.SUCCEEDED, None, False)


def test_a_query_that_finds_nothing_sends_again_now() -> None:
    decision = run(query(False), None)
    assert decision.send_now
    assert (decision.state, decision.next_attempt_at) == (OrderState.ASYNC_PROCESSING, NOW)


@pytest.mark.parametrize("calls", [1, 2, 3])
def test_an_unanswered_query_backs_off_like_a_call(calls: int) -> None:
    decision = run(query(None), None, calls=calls, seed=calls)
    expected = next_attempt_at(POLICY, attempts=calls, first_failure_at=NOW, now=NOW, rng=random.Random(calls))
    assert (decision.state, decision.next_attempt_at) == (OrderState.ASYNC_PROCESSING, expected)


def test_an_unanswered_query_on_the_last_attempt_is_dead() -> None:
    decision = run(query(None), None, calls=POLICY.max_attempts)
    assert (decision.state, decision.next_attempt_at) == (OrderState.DEAD, None)


def test_a_skip_is_due_when_the_circuit_lets_a_probe_through() -> None:
    decision = run(CircuitSkip("acme", 30.0), None, seed=7)
    expected = after_open_circuit(POLICY, retry_in_s=30.0, now=NOW, rng=random.Random(7))
    assert (decision.state, decision.next_attempt_at) == (OrderState.ASYNC_PROCESSING, expected)
    assert decision.next_attempt_at is not None
    assert NOW + dt.timedelta(seconds=30) <= decision.next_attempt_at <= NOW + dt.timedelta(seconds=30 + POLICY.base_s)


def test_every_state_has_the_contracts_next_action() -> None:
    assert NEXT_ACTION == {
        OrderState.SUCCEEDED: "complete",
        OrderState.ASYNC_PROCESSING: "await_async",
        OrderState.FAILED: "return_failure",
        OrderState.DEAD: "return_failure",
    }


def test_request_hash_ignores_key_order_but_not_content() -> None:
    a = request_hash("acme", "pay", {"x": 1, "y": {"b": 2, "a": 1}})
    assert a == request_hash("acme", "pay", {"y": {"a": 1, "b": 2}, "x": 1})
    assert a != request_hash("acme", "pay", {"x": 1, "y": {"b": 2, "a": 2}})
    assert a != request_hash("acme", "underwrite", {"x": 1, "y": {"b": 2, "a": 1}})
    assert a != request_hash("beta", "pay", {"x": 1, "y": {"b": 2, "a": 1}})
