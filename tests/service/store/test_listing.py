"""Reading and operating: get, list_orders (keyset pages), requeue, transitions, counts, hostile strings."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from service.store import (
    InvalidCursor,
    InvalidTransition,
    NewAttempt,
    OrderNotFound,
    OrderRecord,
    OrderState,
    OrderStore,
)
from service.store.tables import orders
from tests.service.store.conftest import T0, at, count, failure, finish, reserve


def _walk(store: OrderStore, limit: int, **filters: Any) -> list[list[OrderRecord]]:
    pages: list[list[OrderRecord]] = []
    cursor = None
    while True:
        page, cursor = store.list_orders(limit=limit, cursor=cursor, **filters)
        pages.append(page)
        if cursor is None:
            return pages
        assert len(pages) < 100, "pagination does not end"


def test_get_returns_none_or_the_order_with_its_attempts(store: OrderStore) -> None:
    assert store.get("missing") is None
    order = reserve(store, "P1", lease_s=30)
    store.record_query(
        order.pk, NewAttempt(kind="query", outcome="not_found"), lease_owner="api", actor="api", now=at(1)
    )
    finish(store, order, OrderState.ASYNC_PROCESSING, now=at(2))
    full = store.get("P1")
    assert full is not None and full.attempt_log is not None
    assert [(a.kind, a.at) for a in full.attempt_log] == [("query", at(1)), ("call", at(2))]
    bare = store.get("P1", with_attempts=False)
    assert bare is not None
    assert bare.attempt_log is None
    assert bare.attempts == full.attempts == 1


def test_pages_walk_every_order_once_newest_first(engine: sa.Engine, store: OrderStore) -> None:
    expected = []
    for i in range(23):
        # groups of three share a created_at, so the id breaks ties
        order = reserve(store, f"P{i:02d}", now=at(i // 3), lease_s=30)
        if i % 4 == 0:
            order = finish(store, order, OrderState.FAILED, now=at(i // 3))
        expected.append(order)
    pages = _walk(store, limit=5)
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    walked = [o for page in pages for o in page]
    assert [o.pk for o in walked] == [o.pk for o in sorted(expected, key=lambda o: (o.created_at, o.pk), reverse=True)]
    by_id = {o.order_id: o for o in walked}
    for order in expected:
        assert by_id[order.order_id].attempt_log == (order.attempt_log or ())


def test_a_page_that_ends_exactly_at_the_last_order_has_no_cursor(store: OrderStore) -> None:
    for i in range(4):
        reserve(store, f"P{i}", now=at(i))
    page, cursor = store.list_orders(limit=4)
    assert len(page) == 4
    assert cursor is None
    assert store.list_orders(limit=3)[1] is not None


def test_filters_combine_and_survive_paging(store: OrderStore) -> None:
    for i in range(12):
        order = reserve(store, f"P{i:02d}", now=at(i), insurer="acme" if i % 2 else "zeta", operation="pay")
        if i % 3 == 0:
            finish(store, order, OrderState.FAILED, now=at(i))
    reserve(store, "Q1", now=at(50), insurer="acme", operation="refund")
    failed = [o.order_id for page in _walk(store, limit=2, state=OrderState.FAILED) for o in page]
    assert failed == ["P09", "P06", "P03", "P00"]
    acme_failed = [o.order_id for page in _walk(store, limit=1, state=OrderState.FAILED, insurer="acme") for o in page]
    assert acme_failed == ["P09", "P03"]
    refunds, cursor = store.list_orders(operation="refund")
    assert ([o.order_id for o in refunds], cursor) == (["Q1"], None)
    assert store.list_orders(insurer="nobody") == ([], None)


def test_a_page_fetches_attempts_in_one_query(engine: sa.Engine, store: OrderStore) -> None:
    for i in range(6):
        finish(store, reserve(store, f"P{i}", lease_s=30), OrderState.ASYNC_PROCESSING)
    selects: list[str] = []

    def spy(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        if sql.lstrip().upper().startswith("SELECT"):
            selects.append(sql)

    event.listen(engine, "before_cursor_execute", spy)
    try:
        page, _ = store.list_orders(limit=5)
    finally:
        event.remove(engine, "before_cursor_execute", spy)
    assert len(page) == 5
    assert all(o.attempt_log is not None and len(o.attempt_log) == 1 for o in page)
    assert len(selects) == 2


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "not base64 at all!",
        base64.urlsafe_b64encode(b"no separator").decode(),
        base64.urlsafe_b64encode(b"2026-11-24T10:00:00+00:00|x").decode(),
        base64.urlsafe_b64encode(b"2026-11-24T10:00:00|5").decode(),  # naive time
        base64.urlsafe_b64encode(b"2026-11-24T10:00:00+00:00|-5").decode(),
        base64.urlsafe_b64encode(b"yesterday|5").decode(),
        base64.urlsafe_b64encode(b"a|b|c").decode(),
        base64.urlsafe_b64encode(b"\xff\xfe|1").decode(),
    ],
)
def test_invalid_cursor(store: OrderStore, cursor: str) -> None:
    with pytest.raises(InvalidCursor, match="Invalid list cursor") as caught:
        store.list_orders(cursor=cursor)
    assert caught.value.cursor == cursor


def test_list_limit_is_bounded(store: OrderStore) -> None:
    for limit in (0, -1, 1001):
        with pytest.raises(ValueError, match="limit"):
            store.list_orders(limit=limit)


@pytest.mark.parametrize("final", [OrderState.FAILED, OrderState.DEAD])
def test_requeue_puts_a_finished_order_back_in_the_schedule(store: OrderStore, final: OrderState) -> None:
    order = reserve(store, "P1", lease_s=30)
    finish(store, order, final, now=at(1))
    requeued = store.requeue("P1", actor="operator", now=at(100))
    assert requeued.state is OrderState.ASYNC_PROCESSING
    assert (requeued.next_attempt_at, requeued.lease_owner, requeued.updated_at) == (at(100), None, at(100))
    # a fresh retry budget; the attempt log keeps the history
    assert (requeued.attempts, requeued.first_failure_at) == (0, None)
    assert len(requeued.attempt_log or ()) == 1
    last = store.transitions("P1")[-1]
    assert (last.from_state, last.to_state, last.reason, last.actor) == (
        final,
        OrderState.ASYNC_PROCESSING,
        "requeued",
        "operator",
    )
    assert [o.order_id for o in store.claim_due("w1", batch=5, lease_s=30, now=at(100))] == ["P1"]


@pytest.mark.parametrize("final", [OrderState.SUCCEEDED, OrderState.ASYNC_PROCESSING])
def test_requeue_refuses_other_states(engine: sa.Engine, store: OrderStore, final: OrderState) -> None:
    order = reserve(store, "P1", lease_s=30)
    finish(store, order, final, now=at(1))
    before = store.get("P1")
    with pytest.raises(InvalidTransition, match=f"'P1' is {final.value}: it cannot go to ASYNC_PROCESSING"):
        store.requeue("P1", actor="operator", now=at(2))
    assert store.get("P1") == before


def test_requeue_and_transitions_of_a_missing_order(store: OrderStore) -> None:
    with pytest.raises(OrderNotFound, match="'nope' does not exist"):
        store.requeue("nope", actor="operator", now=T0)
    with pytest.raises(OrderNotFound):
        store.transitions("nope")


def test_transitions_record_the_whole_history(store: OrderStore) -> None:
    order = reserve(store, "P1", lease_s=30)
    finish(store, order, OrderState.DEAD, now=at(1))
    store.requeue("P1", actor="operator", now=at(2))
    history = store.transitions("P1")
    assert [(t.from_state, t.to_state, t.at) for t in history] == [
        (None, OrderState.ASYNC_PROCESSING, T0),
        (OrderState.ASYNC_PROCESSING, OrderState.DEAD, at(1)),
        (OrderState.DEAD, OrderState.ASYNC_PROCESSING, at(2)),
    ]


def test_counts_by_state_lists_every_state(store: OrderStore) -> None:
    assert store.counts_by_state() == {"SUCCEEDED": 0, "FAILED": 0, "ASYNC_PROCESSING": 0, "DEAD": 0}
    finish(store, reserve(store, "A", lease_s=30), OrderState.SUCCEEDED)
    finish(store, reserve(store, "B", lease_s=30), OrderState.FAILED)
    reserve(store, "C")
    reserve(store, "D")
    assert store.counts_by_state() == {"SUCCEEDED": 1, "FAILED": 1, "ASYNC_PROCESSING": 2, "DEAD": 0}
    store.ping()


HOSTILE = [
    "'; DROP TABLE orders; --",
    'Robert"); DELETE FROM attempts; --',
    "%s %(x)s :param ? $1 \\x00 \\ \\\\",
    "系统繁忙，请稍后再试 🚀 مرحبا \u202e",
    "' OR '1'='1",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_strings_are_stored_verbatim(engine: sa.Engine, store: OrderStore, text: str) -> None:
    order_id = text[:64]
    payload = {text: [text, {"nested": text}]}
    order, created = store.reserve(
        order_id, text[:128], text[:64], payload, text[:64], lease_owner=text[:160], lease_s=30, now=T0
    )
    assert created
    attempt = failure(
        category=text[:64],
        error_code=text,
        error_message=text,
        model_version=text[:128],
        explanation=[{"token": text, "weight": 0.5}],
    )
    store.record_query(
        order.pk,
        NewAttempt(kind="query", outcome="not_found", error_message=text),
        lease_owner=text[:160],
        actor=text[:160],
        now=at(1),
    )
    store.record_attempt(
        order.pk,
        attempt,
        new_state=OrderState.FAILED,
        next_attempt_at=None,
        lease_owner=text[:160],
        reason=text[:200],
        actor=text[:160],
        result={"echo": text},
        now=at(2),
        count_call=True,
    )
    stored = store.get(order_id)
    assert stored is not None and stored.attempt_log is not None
    assert (stored.insurer, stored.operation, stored.request_hash) == (text[:128], text[:64], text[:64])
    assert (stored.payload, stored.result, stored.category) == (payload, {"echo": text}, text[:64])
    query, call = stored.attempt_log
    assert (query.error_message, query.actor) == (text, text[:160])
    assert (call.error_code, call.error_message, call.category, call.model_version) == (
        text,
        text,
        text[:64],
        text[:128],
    )
    assert call.explanation == [{"token": text, "weight": 0.5}]
    assert store.transitions(order_id)[-1].reason == text[:200]
    listed, _ = store.list_orders(insurer=text[:128])
    assert [o.order_id for o in listed] == [order_id]
    assert count(engine, orders) == 1
