"""The re-execution worker (docs/contract.md §3 and §4), in process, on SQLite and on PostgreSQL:
orders come in through POST /process, the worker runs `once`, and the order and the insurer tell
what happened."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable

import httpx
import pytest

from service.processing import request_hash, utcnow
from service.scoring import ServingModel
from tests.service.conftest import INSURER, SMALL_RETRY, Service, busy, final, raises, run_worker, success


@pytest.fixture
def svc(start_service: Callable[..., Service], db_url: str) -> Service:
    """The service on the parametrized database, with retries due within milliseconds, 3 calls at most."""
    return start_service(db_url=db_url, **SMALL_RETRY)


def moves(order: dict[str, object]) -> list[tuple[object, object]]:
    transitions = order["transitions"]
    assert isinstance(transitions, list)
    return [(t["from_state"], t["to_state"]) for t in transitions]


def test_async_failure_then_success_on_reexecution(svc: Service, serving_model: ServingModel) -> None:
    svc.insurer.script("W1", busy(), success({"policy_no": "POL-W1"}))
    assert svc.process("W1", {"premium": 1200}).json()["state"] == "ASYNC_PROCESSING"
    svc.wait_until_due("W1")
    stats = run_worker(svc, serving_model)
    assert (stats.claimed, stats.finished, stats.by_state) == (1, 1, {"SUCCEEDED": 1})
    order = svc.order("W1")
    assert (order["state"], order["next_action"], order["attempt_count"]) == ("SUCCEEDED", "complete", 2)
    assert order["result"] == {"policy_no": "POL-W1"}
    assert order["next_attempt_at"] is None
    assert [a["outcome"] for a in order["attempts"]] == ["failure", "success"]
    assert order["attempts"][1]["actor"] == "worker:test"
    assert moves(order) == [(None, "ASYNC_PROCESSING"), ("ASYNC_PROCESSING", "SUCCEEDED")]
    first, second = svc.insurer.calls("W1")
    assert second.headers["Idempotency-Key"] == first.headers["Idempotency-Key"] == "W1:underwrite"
    assert json.loads(second.content) == json.loads(first.content)
    assert svc.insurer.queries() == [], "a failure the insurer answered needs no query"
    assert svc.process("W1", {"premium": 1200}).json()["state"] == "SUCCEEDED", "a repeat sees the current state"


def test_always_busy_is_dead_after_max_attempts_then_requeue(svc: Service, serving_model: ServingModel) -> None:
    svc.insurer.script("W2", busy(), busy(), busy(), success())
    svc.process("W2")
    for _ in range(2):
        svc.wait_until_due("W2")
        run_worker(svc, serving_model)
    order = svc.order("W2")
    assert (order["state"], order["next_action"], order["attempt_count"]) == ("DEAD", "return_failure", 3)
    assert order["next_attempt_at"] is None
    assert moves(order)[-1] == ("ASYNC_PROCESSING", "DEAD")
    assert len(svc.insurer.calls("W2")) == 3
    assert run_worker(svc, serving_model).claimed == 0, "a DEAD order is not claimed"

    response = svc.client.post("/orders/W2/requeue")
    assert response.status_code == 200
    assert response.json()["state"] == "ASYNC_PROCESSING"
    run_worker(svc, serving_model)
    order = svc.order("W2")
    assert order["state"] == "SUCCEEDED"
    assert moves(order)[-2:] == [("DEAD", "ASYNC_PROCESSING"), ("ASYNC_PROCESSING", "SUCCEEDED")]
    assert len(svc.insurer.calls("W2")) == 4


def test_unknown_outcome_is_settled_by_a_query_without_a_second_call(svc: Service, serving_model: ServingModel) -> None:
    svc.insurer.script("W3", raises(httpx.ReadTimeout, completes=True))
    body = svc.process("W3").json()
    assert (body["state"], body["failure"]["error_message"]) == ("ASYNC_PROCESSING", "ReadTimeout: timed out")
    svc.wait_until_due("W3")
    run_worker(svc, serving_model)
    order = svc.order("W3")
    assert order["state"] == "SUCCEEDED"
    assert order["result"] == svc.insurer.completed["W3:underwrite"]
    assert len(svc.insurer.calls("W3")) == 1, "the insurer completed it: no second POST"
    assert len(svc.insurer.queries("W3")) == 1
    assert svc.insurer.completions == {"W3:underwrite": 1}
    assert [(a["kind"], a["outcome"]) for a in order["attempts"]] == [("call", "unknown"), ("query", "completed")]
    assert order["attempt_count"] == 1, "a query is not a call"


def test_unknown_outcome_not_found_by_the_query_is_sent_again(svc: Service, serving_model: ServingModel) -> None:
    svc.insurer.script("W4", raises(httpx.ReadTimeout), success())
    svc.process("W4")
    svc.wait_until_due("W4")
    run_worker(svc, serving_model)
    order = svc.order("W4")
    assert order["state"] == "SUCCEEDED"
    assert [(a["kind"], a["outcome"]) for a in order["attempts"]] == [
        ("call", "unknown"),
        ("query", "not_found"),
        ("call", "success"),
    ]
    assert len(svc.insurer.calls("W4")) == 2
    query = svc.insurer.queries("W4")[0]
    assert (query.method, query.url.path) == ("GET", "/api/underwrite/W4")
    assert svc.insurer.completions == {"W4:underwrite": 1}


def test_definitive_failure_on_reexecution_is_failed(svc: Service, serving_model: ServingModel) -> None:
    svc.insurer.script("W5", busy(), final())
    svc.process("W5")
    svc.wait_until_due("W5")
    stats = run_worker(svc, serving_model)
    assert stats.by_state == {"FAILED": 1}
    order = svc.order("W5")
    assert (order["state"], order["next_action"], order["next_attempt_at"]) == ("FAILED", "return_failure", None)
    assert moves(order)[-1] == ("ASYNC_PROCESSING", "FAILED")
    assert order["attempts"][-1]["error_message"] == "身份证号码格式不正确"


def test_once_terminates_when_orders_stay_due(
    start_service: Callable[..., Service], db_url: str, serving_model: ServingModel
) -> None:
    svc = start_service(db_url=db_url, **{**SMALL_RETRY, "retry_max_attempts": 100})
    for order_id in ("W6", "W7"):
        svc.insurer.script(order_id, busy())
        svc.process(order_id)
        svc.wait_until_due(order_id)

    def an_hour_ago() -> dt.datetime:  # the worker schedules the next attempt in the past: due again at once
        return utcnow() - dt.timedelta(hours=1)

    stats = run_worker(svc, serving_model, clock=an_hour_ago)
    assert (stats.claimed, stats.finished, stats.released) == (2, 2, 2)
    assert len(svc.insurer.calls()) == 4, "each order was executed once by this run"
    for order_id in ("W6", "W7"):
        order = svc.order(order_id)
        assert order["state"] == "ASYNC_PROCESSING"
        assert dt.datetime.fromisoformat(order["next_attempt_at"]) < utcnow()


def test_nothing_due_means_nothing_claimed(svc: Service, serving_model: ServingModel) -> None:
    svc.process("W8")
    svc.insurer.script("W9", final())
    svc.process("W9")
    stats = run_worker(svc, serving_model)
    assert (stats.claimed, stats.finished) == (0, 0)
    assert len(svc.insurer.requests) == 2


def _abandoned(svc: Service, order_id: str) -> None:
    """An order whose API process died during its insurer call: reserved, lease run out, no attempt."""
    payload = {"n": 1}
    now = utcnow()
    svc.app.state.store.reserve(
        order_id,
        INSURER,
        "underwrite",
        payload,
        request_hash(INSURER, "underwrite", payload),
        lease_owner="api:died",
        lease_s=0.0,
        now=now - dt.timedelta(seconds=1),
    )


def test_an_abandoned_call_that_the_insurer_completed_is_settled_by_query(
    svc: Service, serving_model: ServingModel
) -> None:
    _abandoned(svc, "W10")
    svc.insurer.complete({"order_id": "W10", "operation": "underwrite"}, {"policy_no": "POL-W10"})
    run_worker(svc, serving_model)
    order = svc.order("W10")
    assert (order["state"], order["result"]) == ("SUCCEEDED", {"policy_no": "POL-W10"})
    assert svc.insurer.calls() == [], "never sent again: the insurer must not complete it twice"
    assert len(svc.insurer.queries("W10")) == 1


def test_an_abandoned_call_unknown_to_the_insurer_is_sent(svc: Service, serving_model: ServingModel) -> None:
    _abandoned(svc, "W11")
    run_worker(svc, serving_model)
    order = svc.order("W11")
    assert order["state"] == "SUCCEEDED"
    assert [(a["kind"], a["outcome"]) for a in order["attempts"]] == [("query", "not_found"), ("call", "success")]
    assert svc.insurer.completions == {"W11:underwrite": 1}


def test_a_continuous_worker_retries_the_same_order_without_losing_its_lease(
    svc: Service, serving_model: ServingModel
) -> None:
    """Regression: a continuous worker used to release an order it had claimed before, mid-flight."""
    svc.insurer.script("W9", busy(), busy(), success({"policy_no": "POL-W9"}))
    svc.process("W9")
    stats = run_worker(svc, serving_model, until=lambda: svc.order("W9")["state"] != "ASYNC_PROCESSING")
    order = svc.order("W9")
    assert (order["state"], order["attempt_count"]) == ("SUCCEEDED", 3)
    assert (stats.errors, stats.released) == (0, 0)
    assert stats.finished == 2
