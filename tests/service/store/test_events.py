"""The events outbox (docs/contract.md §8) in the store: one event per transition, written with it or not
at all; the feed's pages and cursor; delivery claims (head of line per order, leases), answers and
redeliver. Each test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from typing import Any

import pytest
import sqlalchemy as sa

from service.store import InvalidCursor, LeaseLost, NewAttempt, OrderState, OrderStore, queries
from service.store.events import START, EventNotFound, EventPending, EventRecord
from service.store.tables import events, transitions
from tests.service.store.conftest import T0, at, count, failure, finish, reserve


def read_feed(store: OrderStore, *, after: str | None, limit: int, want: int) -> tuple[list[str], str]:
    """One feed page, asked again until it has `want` events: on PostgreSQL the horizon waits for every
    write transaction of the cluster, and other tests' transactions may hold it back for a moment."""
    deadline = time.monotonic() + 30
    while True:
        page, cursor = store.events.feed(after=after, limit=limit)
        if len(page) >= want or time.monotonic() > deadline:
            return page, cursor
        time.sleep(0.05)


def documents(store: OrderStore, order_pk: int) -> list[dict[str, Any]]:
    return [json.loads(e.body) for e in store.events.of_order(order_pk)]


def test_each_transition_writes_one_event_with_the_contract_document(store: OrderStore, engine: sa.Engine) -> None:
    order = reserve(store, "P1", now=T0, lease_s=30)
    done = store.record_attempt(
        order.pk,
        NewAttempt(kind="call", outcome="success"),
        new_state=OrderState.SUCCEEDED,
        next_attempt_at=None,
        lease_owner="api",
        reason="insurer succeeded",
        actor="api",
        result={"policy_no": "POL-1"},
        now=at(1.5),
        count_call=True,
    )
    assert done.state is OrderState.SUCCEEDED
    created, succeeded = documents(store, order.pk)
    assert created == {
        "event_id": created["event_id"],
        "type": "order.state_changed",
        "order_id": "P1",
        "from_state": None,
        "to_state": "ASYNC_PROCESSING",
        "at": "2026-11-24T10:00:00.000Z",
        "order": {
            "state": "ASYNC_PROCESSING",
            "insurer": "acme",
            "operation": "underwrite",
            "attempts": 0,
            "result": None,
            "failure": None,
        },
    }
    assert succeeded["from_state"] == "ASYNC_PROCESSING" and succeeded["to_state"] == "SUCCEEDED"
    assert succeeded["at"] == "2026-11-24T10:00:01.500Z"
    assert succeeded["order"] == {
        "state": "SUCCEEDED",
        "insurer": "acme",
        "operation": "underwrite",
        "attempts": 1,
        "result": {"policy_no": "POL-1"},
        "failure": None,
    }
    assert all(re.fullmatch(r"evt_[0-9a-f]{32}", d["event_id"]) for d in (created, succeeded))
    assert created["event_id"] != succeeded["event_id"]
    assert count(engine, events) == count(engine, transitions) == 2


def test_a_final_failure_event_carries_the_last_failure(store: OrderStore) -> None:
    order = reserve(store, "P1", lease_s=30)
    store.record_attempt(
        order.pk,
        failure("invalid_id", error_code="E2001", error_message="身份证号码格式不正确", http_status=200),
        new_state=OrderState.FAILED,
        next_attempt_at=None,
        lease_owner="api",
        reason="final failure",
        actor="api",
        now=at(1),
        count_call=True,
    )
    last = documents(store, order.pk)[-1]
    assert last["order"]["failure"] == {
        "error_code": "E2001",
        "error_message": "身份证号码格式不正确",
        "http_status": 200,
        "category": "invalid_id",
    }
    assert last["order"]["result"] is None and last["order"]["attempts"] == 1


def test_a_kept_order_reports_no_failure_and_a_step_without_a_state_change_no_event(store: OrderStore) -> None:
    order = reserve(store, "P1", lease_s=30)
    kept = finish(store, order, OrderState.ASYNC_PROCESSING, now=at(1))  # the state does not change
    assert kept.state is OrderState.ASYNC_PROCESSING
    assert len(store.events.of_order(order.pk)) == 1


def test_requeue_writes_its_event(store: OrderStore) -> None:
    order = reserve(store, "P1", lease_s=30)
    finish(store, order, OrderState.FAILED, now=at(1))
    store.requeue("P1", actor="console", now=at(2))
    moves = [(d["from_state"], d["to_state"], d["order"]["attempts"]) for d in documents(store, order.pk)]
    assert moves == [
        (None, "ASYNC_PROCESSING", 0),
        ("ASYNC_PROCESSING", "FAILED", 1),
        ("FAILED", "ASYNC_PROCESSING", 0),
    ]


def test_a_transaction_that_fails_after_the_event_insert_leaves_no_event(
    store: OrderStore, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The event is part of the transition's transaction: when that rolls back, so does the event."""
    order = reserve(store, "P1", lease_s=30)

    def broken(conn: sa.Connection, order_pks: Any) -> Any:
        raise RuntimeError("the process died before commit")

    monkeypatch.setattr(queries, "attempt_logs", broken)  # the read of the whole log, after the writes
    with pytest.raises(RuntimeError):
        finish(store, order, OrderState.SUCCEEDED, now=at(1))
    assert count(engine, events) == count(engine, transitions) == 1


def test_a_lost_lease_writes_no_event(store: OrderStore, engine: sa.Engine) -> None:
    order = reserve(store, "P1", lease_s=30, owner="api:a")
    with pytest.raises(LeaseLost):
        store.record_attempt(
            order.pk,
            NewAttempt(kind="call", outcome="success"),
            new_state=OrderState.SUCCEEDED,
            next_attempt_at=None,
            lease_owner="api:someone-else",
            reason="x",
            actor="x",
            now=at(1),
            count_call=True,
        )
    assert count(engine, events) == 1


# -- the feed -------------------------------------------------------------------------------------------


def test_the_feed_pages_every_event_once_oldest_first(store: OrderStore) -> None:
    for i in range(7):
        order = reserve(store, f"P{i}", lease_s=30)
        finish(store, order, OrderState.SUCCEEDED, now=at(i + 1))
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(10):
        page, cursor = read_feed(store, after=cursor, limit=3, want=min(3, 14 - len(seen)))
        assert isinstance(cursor, str)
        if not page:
            break
        seen += [json.loads(body)["event_id"] for body in page]
    assert len(seen) == len(set(seen)) == 14
    ordered = [e.event_id for e in sorted(_all_events(store), key=lambda e: e.pk)]
    assert seen == ordered
    again, same = store.events.feed(after=cursor, limit=3)
    assert (again, same) == ([], cursor)  # caught up: the same cursor comes back


def test_the_feed_starts_from_the_first_event_and_answers_a_string_cursor_when_empty(store: OrderStore) -> None:
    assert store.events.feed(after=None, limit=10) == ([], START)
    reserve(store, "P1")
    page, cursor = read_feed(store, after=START, limit=10, want=1)
    assert len(page) == 1 and cursor != START


@pytest.mark.parametrize("cursor", ["", "nope", "ZXYxfGF8Yg", "MjAyNi0xMS0yNFQxMDowMDowMCswMDowMHwx"])
def test_the_feed_refuses_a_cursor_it_did_not_hand_out(store: OrderStore, cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        store.events.feed(after=cursor, limit=10)


# -- delivery --------------------------------------------------------------------------------------------


def _all_events(store: OrderStore) -> list[EventRecord]:
    found = []
    for order_id in ("P0", "P1", "P2", "P3", "P4", "P5", "P6", "Q1", "Q2"):
        order = store.get(order_id, with_attempts=False)
        if order is not None:
            found += store.events.of_order(order.pk)
    return found


def _two_orders_with_two_events_each(store: OrderStore) -> None:
    for order_id in ("Q1", "Q2"):
        finish(store, reserve(store, order_id, lease_s=30), OrderState.SUCCEEDED, now=at(0))


def test_a_claim_takes_only_the_head_of_each_order(store: OrderStore) -> None:
    _two_orders_with_two_events_each(store)
    claimed = store.events.claim_deliveries("d1", batch=10, lease_s=30, now=at(1))
    assert sorted((e.order_id, e.to_state) for e in claimed) == [("Q1", "ASYNC_PROCESSING"), ("Q2", "ASYNC_PROCESSING")]
    assert store.events.claim_deliveries("d2", batch=10, lease_s=30, now=at(2)) == []  # leased heads block the rest
    q1 = next(e for e in claimed if e.order_id == "Q1")
    assert store.events.acknowledge("d1", [(q1.pk, 204)], now=at(3)) == 1
    [following] = store.events.claim_deliveries("d2", batch=10, lease_s=30, now=at(4))
    assert (following.order_id, following.to_state) == ("Q1", "SUCCEEDED")


def test_an_expired_lease_is_claimed_again_and_the_old_owner_can_no_longer_answer(store: OrderStore) -> None:
    reserve(store, "Q1")
    [first] = store.events.claim_deliveries("d1", batch=10, lease_s=5, now=at(1))
    assert store.events.claim_deliveries("d2", batch=10, lease_s=5, now=at(5)) == []
    [again] = store.events.claim_deliveries("d2", batch=10, lease_s=5, now=at(7))
    assert again.pk == first.pk
    assert store.events.acknowledge("d1", [(first.pk, 200)], now=at(8)) == 0
    assert not store.events.delivery_failed(
        "d1", first.pk, status=500, error="x", next_attempt_at=at(9), retry_since=at(0)
    )
    assert store.events.acknowledge("d2", [(first.pk, 200)], now=at(8)) == 1
    assert store.events.get(first.event_id).delivery_state == "delivered"  # type: ignore[union-attr]


def test_an_unacknowledged_try_is_due_again_later_then_failed_and_blocks_its_order(store: OrderStore) -> None:
    finish(store, reserve(store, "Q1", lease_s=30), OrderState.SUCCEEDED, now=at(0))
    [head] = store.events.claim_deliveries("d1", batch=10, lease_s=30, now=at(1))
    assert store.events.delivery_failed(
        "d1", head.pk, status=500, error="HTTP 500: oops", next_attempt_at=at(60), retry_since=at(1)
    )
    assert store.events.get(head.event_id).retry_since == at(1)  # type: ignore[union-attr]  # the age's origin
    assert store.events.claim_deliveries("d1", batch=10, lease_s=30, now=at(59)) == []
    [retried] = store.events.claim_deliveries("d1", batch=10, lease_s=30, now=at(61))
    assert (retried.pk, retried.delivery_attempts, retried.last_status, retried.last_error) == (
        head.pk,
        1,
        500,
        "HTTP 500: oops",
    )
    assert store.events.delivery_failed(
        "d1", head.pk, status=None, error="ConnectError", next_attempt_at=None, retry_since=at(0)
    )
    failed = store.events.get(head.event_id)
    assert failed is not None and failed.delivery_state == "failed" and failed.delivery_attempts == 2
    # the order's next event waits behind the failed one (in order per order)
    assert store.events.claim_deliveries("d1", batch=10, lease_s=30, now=at(3600)) == []
    summary = store.events.summary()
    assert summary.counts == {"pending": 1, "failed": 1}
    assert summary.oldest_pending_at == at(0)
    assert [e.event_id for e in store.events.failed()] == [head.event_id]


def test_redeliver_puts_a_failed_event_back_with_a_fresh_age(store: OrderStore) -> None:
    reserve(store, "Q1")
    [head] = store.events.claim_deliveries("d1", batch=10, lease_s=30, now=at(1))
    store.events.delivery_failed("d1", head.pk, status=503, error="HTTP 503", next_attempt_at=None, retry_since=at(0))
    again = store.events.redeliver(head.event_id, now=at(100))
    assert (again.delivery_state, again.delivery_attempts, again.retry_since, again.age_from(at(200))) == (
        "pending",
        0,
        at(100),
        at(100),
    )
    [claimed] = store.events.claim_deliveries("d1", batch=10, lease_s=30, now=at(101))
    assert claimed.event_id == head.event_id
    with pytest.raises(EventPending):
        store.events.redeliver(head.event_id, now=at(102))
    with pytest.raises(EventNotFound):
        store.events.redeliver("evt_00", now=at(102))


def test_release_gives_leased_events_back_untried(store: OrderStore) -> None:
    reserve(store, "Q1")
    [head] = store.events.claim_deliveries("d1", batch=10, lease_s=30, now=at(1))
    assert store.events.release_deliveries("d1", [head.pk]) == 1
    [again] = store.events.claim_deliveries("d2", batch=10, lease_s=30, now=at(1))
    assert again.pk == head.pk and again.delivery_attempts == 0


def test_claims_respect_the_batch(store: OrderStore) -> None:
    for i in range(5):
        reserve(store, f"P{i}", now=T0 + dt.timedelta(milliseconds=i))
    first = store.events.claim_deliveries("d1", batch=2, lease_s=30, now=at(1))
    second = store.events.claim_deliveries("d2", batch=10, lease_s=30, now=at(1))
    assert [e.order_id for e in first] == ["P0", "P1"]
    assert [e.order_id for e in second] == ["P2", "P3", "P4"]


def test_an_orders_later_events_wait_with_its_head_and_come_back_with_its_redeliver(store: OrderStore) -> None:
    """The claim's helper: while the head backs off, its successors are due no earlier; while it has failed,
    they are not due at all; its redeliver makes them due again (they still go after it)."""
    order = reserve(store, "Q1", lease_s=30)
    finish(store, order, OrderState.SUCCEEDED, now=at(0))
    head, later = store.events.of_order(order.pk)
    [claimed] = store.events.claim_deliveries("d1", batch=10, lease_s=30, now=at(1))
    store.events.delivery_failed(
        "d1", claimed.pk, status=500, error="HTTP 500", next_attempt_at=at(60), retry_since=at(0)
    )
    assert store.events.get(later.event_id).next_attempt_at == at(60)  # type: ignore[union-attr]
    [claimed] = store.events.claim_deliveries("d1", batch=10, lease_s=30, now=at(61))
    store.events.delivery_failed(
        "d1", claimed.pk, status=500, error="HTTP 500", next_attempt_at=None, retry_since=at(0)
    )
    assert store.events.get(later.event_id).next_attempt_at is None  # type: ignore[union-attr]
    store.events.redeliver(head.event_id, now=at(100))
    assert store.events.get(later.event_id).next_attempt_at == at(100)  # type: ignore[union-attr]
    [first] = store.events.claim_deliveries("d1", batch=10, lease_s=30, now=at(101))
    assert first.event_id == head.event_id
    store.events.acknowledge("d1", [(first.pk, 200)], now=at(102))
    [second] = store.events.claim_deliveries("d1", batch=10, lease_s=30, now=at(103))
    assert second.event_id == later.event_id
