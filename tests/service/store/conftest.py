"""Store fixtures: each store test runs on SQLite (a file under tmp_path) and on PostgreSQL (own schema)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from service.store import NewAttempt, OrderRecord, OrderState, OrderStore, create_db_engine, migrate
from service.store.tables import orders

T0 = dt.datetime(2026, 11, 24, 10, 0, 0, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    """T0 plus `seconds`."""
    return T0 + dt.timedelta(seconds=seconds)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state/asyncgate.db"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    engine = create_db_engine(db_url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def store(engine: sa.Engine) -> OrderStore:
    return OrderStore(engine)


def reserve(
    store: OrderStore,
    order_id: str,
    *,
    now: dt.datetime = T0,
    lease_s: float = 0.0,
    owner: str = "api",
    insurer: str = "acme",
    operation: str = "underwrite",
    request_hash: str = "h" * 64,
) -> OrderRecord:
    """A new order, due at now+lease_s (lease_s=0: due, and free, as soon as time moves past `now`)."""
    order, created = store.reserve(
        order_id,
        insurer,
        operation,
        {"order_id": order_id},
        request_hash,
        lease_owner=owner,
        lease_s=lease_s,
        now=now,
    )
    assert created
    return order


def failure(category: str = "timeout", **fields: Any) -> NewAttempt:
    return NewAttempt(kind="call", outcome="failure", category=category, async_eligible=True, **fields)


def finish(store: OrderStore, order: OrderRecord, state: OrderState, *, now: dt.datetime = T0) -> OrderRecord:
    """Record one call by the order's lease holder that moves it to `state` (due in 1 h if kept)."""
    assert order.lease_owner is not None
    outcome = NewAttempt(kind="call", outcome="success") if state is OrderState.SUCCEEDED else failure()
    return store.record_attempt(
        order.pk,
        outcome,
        new_state=state,
        next_attempt_at=now + dt.timedelta(hours=1) if state is OrderState.ASYNC_PROCESSING else None,
        lease_owner=order.lease_owner,
        reason="test",
        actor=order.lease_owner,
        now=now,
        count_call=True,
    )


def count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def bulk_orders(
    engine: sa.Engine,
    n: int,
    *,
    prefix: str,
    state: OrderState = OrderState.ASYNC_PROCESSING,
    next_attempt_at: dt.datetime | None = T0,
    created_at: dt.datetime = T0,
) -> None:
    """Insert `n` orders directly (fixture data for volume tests; the store has no bulk insert)."""
    rows = [
        {
            "order_id": f"{prefix}{i:06d}",
            "insurer": "acme",
            "operation": "pay",
            "payload": {"i": i},
            "request_hash": "h",
            "state": state.value,
            "attempts": 1,
            "next_attempt_at": next_attempt_at,
            "created_at": created_at,
            "updated_at": created_at,
        }
        for i in range(n)
    ]
    with engine.begin() as conn:
        conn.execute(sa.insert(orders), rows)
