"""claim_due: which orders are due, in which order, and that concurrent workers never share one."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from service.store import LeaseLost, OrderState, OrderStore, create_db_engine, migrate
from service.store.queries import claim_statement
from service.store.tables import orders
from tests.service.store.conftest import T0, at, bulk_orders, failure, finish, reserve


def test_claims_only_due_unleased_async_orders(store: OrderStore) -> None:
    reserve(store, "due")  # lease_s=0: free and due from T0
    reserve(store, "held", lease_s=3600)  # the API still holds it
    finish(store, reserve(store, "later"), OrderState.ASYNC_PROCESSING, now=T0)  # due at T0+1h
    finish(store, reserve(store, "failed"), OrderState.FAILED)
    finish(store, reserve(store, "done"), OrderState.SUCCEEDED)
    claimed = store.claim_due("w1", batch=10, lease_s=30, now=at(1))
    assert [o.order_id for o in claimed] == ["due"]
    [order] = claimed
    assert (order.lease_owner, order.lease_until) == ("w1", at(31))
    assert order.attempts == 0  # claims do not count as calls
    assert store.claim_due("w2", batch=10, lease_s=30, now=at(2)) == []  # leased to w1 now


def test_claims_oldest_due_first_within_the_batch(store: OrderStore) -> None:
    for i, seconds in enumerate([50, 10, 40, 20, 30]):
        reserve(store, f"P{i}", now=at(seconds))
    first = store.claim_due("w1", batch=3, lease_s=30, now=at(100))
    assert [o.next_attempt_at for o in first] == [at(10), at(20), at(30)]
    rest = store.claim_due("w2", batch=3, lease_s=30, now=at(100))
    assert [o.order_id for o in rest] == ["P2", "P0"]


def test_due_boundary_is_inclusive_for_the_schedule(store: OrderStore) -> None:
    order = reserve(store, "P1", lease_s=10)
    store.release(order.pk, "api", next_attempt_at=at(20))
    assert store.claim_due("w1", batch=1, lease_s=30, now=at(19)) == []
    assert [o.order_id for o in store.claim_due("w1", batch=1, lease_s=30, now=at(20))] == ["P1"]


def test_expired_lease_is_claimed_again_and_the_old_holder_loses_it(store: OrderStore) -> None:
    reserve(store, "P1")
    [mine] = store.claim_due("w1", batch=1, lease_s=30, now=at(1))
    assert store.claim_due("w2", batch=1, lease_s=30, now=at(31)) == []  # lease_until == now: still held
    [taken] = store.claim_due("w2", batch=1, lease_s=30, now=at(32))
    assert taken.pk == mine.pk
    assert taken.lease_owner == "w2"
    with pytest.raises(LeaseLost):
        store.record_attempt(
            mine.pk,
            failure(),
            new_state=OrderState.FAILED,
            next_attempt_at=None,
            lease_owner="w1",
            reason="x",
            actor="worker:w1",
            now=at(33),
            count_call=True,
        )


def test_claim_compares_instants_whatever_the_offset(store: OrderStore) -> None:
    reserve(store, "P1")
    shanghai = dt.timezone(dt.timedelta(hours=8))
    assert store.claim_due("w1", batch=1, lease_s=30, now=at(-1).astimezone(shanghai)) == []
    [order] = store.claim_due("w1", batch=1, lease_s=30, now=at(1).astimezone(shanghai))
    assert order.lease_until == at(31)
    assert order.lease_until.tzinfo is dt.UTC


def test_naive_times_are_refused(store: OrderStore) -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        store.claim_due("w1", batch=1, lease_s=30, now=dt.datetime(2026, 11, 24, 10, 0))
    with pytest.raises(ValueError, match="naive datetime"):
        store.reserve("P1", "acme", "pay", {}, "h", lease_owner="api", lease_s=1, now=dt.datetime(2026, 1, 1))
    assert store.get("P1") is None


def test_concurrent_workers_never_claim_an_order_twice(engine: sa.Engine, store: OrderStore) -> None:
    bulk_orders(engine, 400, prefix="C", next_attempt_at=T0)
    claims: dict[str, list[int]] = {f"w{i}": [] for i in range(4)}
    barrier = threading.Barrier(len(claims))
    errors: list[BaseException] = []

    def work(worker: str) -> None:
        try:
            barrier.wait()
            while batch := store.claim_due(worker, batch=10, lease_s=300, now=at(1)):
                assert len(batch) <= 10
                claims[worker].extend(o.pk for o in batch)
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(w,)) for w in claims]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    every = [pk for pks in claims.values() for pk in pks]
    assert len(every) == 400
    assert len(set(every)) == 400
    with engine.connect() as conn:
        owners = dict(conn.execute(sa.select(orders.c.id, orders.c.lease_owner)).all())
    assert all(owners[pk] == worker for worker, pks in claims.items() for pk in pks)


def test_batch_must_be_positive(store: OrderStore) -> None:
    with pytest.raises(ValueError, match="batch"):
        store.claim_due("w1", batch=0, lease_s=30, now=T0)


@pytest.mark.postgres
def test_claim_query_uses_the_partial_index_on_postgresql(pg_url: str) -> None:
    engine = create_db_engine(pg_url)
    migrate(engine)
    store = OrderStore(engine)
    bulk_orders(engine, 3000, prefix="S", state=OrderState.SUCCEEDED, next_attempt_at=None)
    bulk_orders(engine, 400, prefix="F", state=OrderState.FAILED, next_attempt_at=None)
    bulk_orders(engine, 200, prefix="L", next_attempt_at=at(3600))  # waiting, not yet due
    bulk_orders(engine, 20, prefix="D", next_attempt_at=T0)
    statement = claim_statement("w1", batch=10, lease_until=at(30), now=at(1))
    plan: list[str] = []

    def explain(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> tuple[str, Any]:
        return f"EXPLAIN {sql}", params

    with engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE orders")
        event.listen(conn, "before_cursor_execute", explain, retval=True)
        plan = [row[0] for row in conn.execute(statement)]
        conn.rollback()
    text = "\n".join(plan)
    assert "ix_orders_due" in text, text
    assert "Seq Scan on orders" not in text, text
    assert "LockRows" in text, text  # FOR UPDATE SKIP LOCKED is there
    assert len(store.claim_due("w1", batch=50, lease_s=30, now=at(1))) == 20
    engine.dispose()
