"""The /process write path: reserve, record_attempt, record_query, release and extend_lease."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from service.store import LeaseLost, NewAttempt, OrderConflict, OrderState, OrderStore
from service.store.tables import attempts, orders, transitions
from tests.service.store.conftest import T0, at, count, failure, reserve


def test_reserve_creates_a_leased_order_due_when_the_lease_ends(store: OrderStore) -> None:
    order, created = store.reserve(
        "P2026112400001",
        "acme",
        "underwrite",
        {"a": [1, 2]},
        "f" * 64,
        lease_owner="api:1",
        lease_s=30,
        now=T0,
    )
    assert created
    assert (order.order_id, order.insurer, order.operation) == ("P2026112400001", "acme", "underwrite")
    assert order.payload == {"a": [1, 2]}
    assert order.state is OrderState.ASYNC_PROCESSING
    assert order.attempts == 0
    assert order.lease_owner == "api:1"
    assert order.lease_until == order.next_attempt_at == at(30)
    assert order.created_at == order.updated_at == T0
    assert (order.last_outcome, order.category, order.result, order.first_failure_at) == (
        None,
        None,
        None,
        None,
    )
    [transition] = store.transitions("P2026112400001")
    assert (transition.from_state, transition.to_state, transition.reason) == (
        None,
        OrderState.ASYNC_PROCESSING,
        "received",
    )
    assert (transition.actor, transition.at) == ("api:1", T0)


def test_reserve_again_with_the_same_hash_returns_the_stored_order(engine: sa.Engine, store: OrderStore) -> None:
    first = reserve(store, "P1")
    again, created = store.reserve(
        "P1", "acme", "underwrite", {"order_id": "P1"}, "h" * 64, lease_owner="api:2", lease_s=99, now=at(5)
    )
    assert not created
    assert again == first
    assert (count(engine, orders), count(engine, transitions)) == (1, 1)


def test_reserve_with_another_hash_is_a_conflict(engine: sa.Engine, store: OrderStore) -> None:
    reserve(store, "P1")
    with pytest.raises(OrderConflict, match="'P1' already exists with a different request body") as caught:
        store.reserve("P1", "acme", "underwrite", {"x": 1}, "other", lease_owner="api", lease_s=5, now=T0)
    assert caught.value.order_id == "P1"
    assert count(engine, orders) == 1


def _race(n: int, action: Callable[[int], Any]) -> list[Any]:
    """Run action(i) in n threads released together; each result or raised exception, by i."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = action(i)
        except Exception as error:  # collected for the assertions
            results[i] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_concurrent_reserves_create_the_order_once(engine: sa.Engine, store: OrderStore) -> None:
    results = _race(
        8, lambda i: store.reserve("RACE", "acme", "pay", {}, "h", lease_owner=f"api:{i}", lease_s=5, now=T0)
    )
    assert all(isinstance(r, tuple) for r in results), results
    assert sum(created for _, created in results) == 1
    assert len({order.pk for order, _ in results}) == 1
    assert (count(engine, orders), count(engine, transitions)) == (1, 1)


def test_concurrent_reserves_with_different_bodies_conflict(engine: sa.Engine, store: OrderStore) -> None:
    results = _race(
        6, lambda i: store.reserve("RACE", "acme", "pay", {}, f"h{i}", lease_owner="api", lease_s=5, now=T0)
    )
    assert sum(isinstance(r, tuple) and r[1] for r in results) == 1
    assert sum(isinstance(r, OrderConflict) for r in results) == 5
    assert count(engine, orders) == 1


def test_record_attempt_success_writes_attempt_order_and_transition(engine: sa.Engine, store: OrderStore) -> None:
    order = reserve(store, "P1", lease_s=30)
    call = NewAttempt(kind="call", outcome="success", latency_ms=12.5, http_status=200)
    done = store.record_attempt(
        order.pk,
        call,
        new_state=OrderState.SUCCEEDED,
        next_attempt_at=None,
        lease_owner="api",
        reason="insurer succeeded",
        actor="api",
        result={"policy_no": "X-1"},
        now=at(1),
        count_call=True,
    )
    assert done.state is OrderState.SUCCEEDED
    assert (done.attempts, done.last_outcome, done.result) == (1, "success", {"policy_no": "X-1"})
    assert (done.lease_owner, done.lease_until, done.next_attempt_at) == (None, None, None)
    assert (done.first_failure_at, done.updated_at, done.created_at) == (None, at(1), T0)
    assert done.attempt_log is not None
    [logged] = done.attempt_log
    assert (logged.kind, logged.outcome, logged.latency_ms, logged.http_status) == (
        "call",
        "success",
        12.5,
        200,
    )
    assert (logged.at, logged.actor, logged.order_pk) == (at(1), "api", order.pk)
    assert [(t.from_state, t.to_state, t.reason) for t in store.transitions("P1")][1:] == [
        (OrderState.ASYNC_PROCESSING, OrderState.SUCCEEDED, "insurer succeeded")
    ]
    assert store.get("P1") == done


def test_record_attempt_failures_keep_the_first_failure_time(engine: sa.Engine, store: OrderStore) -> None:
    order = reserve(store, "P1", lease_s=30)
    first = store.record_attempt(
        order.pk,
        failure("timeout", error_message="ReadTimeout", probability=0.99, model_version="m1", explanation=["x"]),
        new_state=OrderState.ASYNC_PROCESSING,
        next_attempt_at=at(60),
        lease_owner="api",
        reason="async-eligible failure",
        actor="api",
        now=at(2),
        count_call=True,
    )
    assert (first.state, first.attempts, first.next_attempt_at) == (OrderState.ASYNC_PROCESSING, 1, at(60))
    assert (first.last_outcome, first.category, first.first_failure_at) == ("failure", "timeout", at(2))
    assert first.lease_owner is None
    assert count(engine, transitions) == 1  # the state did not change: no transition
    [claimed] = store.claim_due("w1", batch=5, lease_s=30, now=at(61))
    second = store.record_attempt(
        claimed.pk,
        NewAttempt(kind="call", outcome="unknown", category="connection"),
        new_state=OrderState.ASYNC_PROCESSING,
        next_attempt_at=at(200),
        lease_owner="w1",
        reason="retry",
        actor="worker:w1",
        now=at(62),
        count_call=True,
    )
    assert (second.attempts, second.last_outcome, second.category) == (2, "unknown", "connection")
    assert second.first_failure_at == at(2)
    assert second.attempt_log is not None
    assert [(a.outcome, a.actor) for a in second.attempt_log] == [
        ("failure", "api"),
        ("unknown", "worker:w1"),
    ]
    assert second.attempt_log[0].explanation == ["x"]
    assert second.attempt_log[1].explanation is None


def test_record_attempt_without_counting_a_call(store: OrderStore) -> None:
    order = reserve(store, "P1", lease_s=30)
    done = store.record_attempt(
        order.pk,
        NewAttempt(kind="query", outcome="completed"),
        new_state=OrderState.SUCCEEDED,
        next_attempt_at=None,
        lease_owner="api",
        reason="insurer had completed it",
        actor="api",
        result={"ok": True},
        now=at(1),
        count_call=False,
    )
    assert (done.attempts, done.last_outcome, done.state) == (0, "success", OrderState.SUCCEEDED)


def test_record_attempt_by_a_lost_lease_writes_nothing(engine: sa.Engine, store: OrderStore) -> None:
    order = reserve(store, "P1", lease_s=30)
    before = store.get("P1")
    with pytest.raises(LeaseLost, match="no longer leased to 'w-old'") as caught:
        store.record_attempt(
            order.pk,
            failure(),
            new_state=OrderState.FAILED,
            next_attempt_at=None,
            lease_owner="w-old",
            reason="x",
            actor="worker:w-old",
            now=at(1),
            count_call=True,
        )
    assert caught.value.order_pk == order.pk
    assert store.get("P1") == before
    assert (count(engine, attempts), count(engine, transitions)) == (0, 1)


def test_record_attempt_is_all_or_nothing(engine: sa.Engine, store: OrderStore) -> None:
    order = reserve(store, "P1", lease_s=30)
    before = store.get("P1")
    unstorable = failure(explanation=object())  # fails on the attempt insert, after the order update
    with pytest.raises((sa.exc.StatementError, TypeError)):  # the driver decides how it reports it
        store.record_attempt(
            order.pk,
            unstorable,
            new_state=OrderState.FAILED,
            next_attempt_at=None,
            lease_owner="api",
            reason="x",
            actor="api",
            now=at(1),
            count_call=True,
        )
    assert store.get("P1") == before
    assert (count(engine, attempts), count(engine, transitions)) == (0, 1)


def test_record_attempt_keeping_the_order_needs_a_next_time(store: OrderStore) -> None:
    order = reserve(store, "P1", lease_s=30)
    with pytest.raises(ValueError, match="needs a next_attempt_at"):
        store.record_attempt(
            order.pk,
            failure(),
            new_state=OrderState.ASYNC_PROCESSING,
            next_attempt_at=None,
            lease_owner="api",
            reason="x",
            actor="api",
            now=at(1),
            count_call=True,
        )


def test_record_query_keeps_the_lease(engine: sa.Engine, store: OrderStore) -> None:
    order = reserve(store, "P1", lease_s=30)
    query = NewAttempt(kind="query", outcome="not_found", http_status=404, latency_ms=3.0)
    logged = store.record_query(order.pk, query, lease_owner="api", actor="api", now=at(1))
    assert (logged.kind, logged.outcome, logged.http_status, logged.at) == ("query", "not_found", 404, at(1))
    after = store.get("P1")
    assert after is not None
    assert (after.lease_owner, after.lease_until, after.attempts, after.last_outcome) == (
        "api",
        at(30),
        0,
        None,
    )
    assert after.attempt_log == (logged,)
    with pytest.raises(LeaseLost):
        store.record_query(order.pk, query, lease_owner="someone-else", actor="x", now=at(2))
    with pytest.raises(ValueError, match="kind 'query'"):
        store.record_query(order.pk, failure(), lease_owner="api", actor="api", now=at(2))
    assert count(engine, attempts) == 1


def test_release_drops_the_lease_and_can_reschedule(store: OrderStore) -> None:
    order = reserve(store, "P1", lease_s=30)
    assert not store.release(order.pk, "not-the-owner")
    assert store.release(order.pk, "api", next_attempt_at=at(5))
    released = store.get("P1")
    assert released is not None
    assert (released.lease_owner, released.lease_until, released.next_attempt_at) == (None, None, at(5))
    assert released.state is OrderState.ASYNC_PROCESSING
    assert not store.release(order.pk, "api")  # no longer held
    assert [o.order_id for o in store.claim_due("w1", batch=5, lease_s=30, now=at(5))] == ["P1"]


def test_extend_lease_only_for_the_holder(store: OrderStore) -> None:
    order = reserve(store, "P1", lease_s=30)
    assert store.extend_lease(order.pk, "api", lease_s=60, now=at(20))
    assert not store.extend_lease(order.pk, "w9", lease_s=600, now=at(20))
    extended = store.get("P1")
    assert extended is not None
    assert (extended.lease_owner, extended.lease_until) == ("api", at(80))
    assert store.claim_due("w1", batch=5, lease_s=30, now=at(60)) == []  # still held
    assert len(store.claim_due("w1", batch=5, lease_s=30, now=at(81))) == 1
