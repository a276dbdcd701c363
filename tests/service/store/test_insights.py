"""The console's store queries on SQLite and PostgreSQL: order search, hourly activity, failure sample, backlog."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from service.store import InvalidCursor, OrderRecord, OrderState, OrderStore
from service.store.insights import MAX_PAGE
from service.store.records import decode_cursor, encode_cursor
from service.store.tables import orders
from tests.service.console.seed import insurer_of, seed_orders, story_of
from tests.service.store.conftest import reserve

NOW = dt.datetime(2026, 11, 24, 12, 0, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)


@pytest.fixture
def seeded(store: OrderStore) -> dict[str, list[str]]:
    return seed_orders(store, now=NOW, count=60)


def _ids(page: tuple[list[OrderRecord], str | None]) -> list[str]:
    return [o.order_id for o in page[0]]


def test_search_pages_newest_first_with_a_cursor(store: OrderStore, seeded: dict[str, list[str]]) -> None:
    first, cursor = store.insights.search_orders(limit=25)
    assert [o.order_id for o in first] == [f"P-CON-{i:04d}" for i in range(59, 34, -1)]
    assert first[0].attempt_log is None, "the table does not load attempts"
    second, cursor2 = store.insights.search_orders(limit=25, cursor=cursor)
    third, cursor3 = store.insights.search_orders(limit=25, cursor=cursor2)
    assert len(second) == 25 and len(third) == 10 and cursor3 is None
    assert len({o.order_id for o in first + second + third}) == 60


def test_search_combines_state_insurer_operation_and_time(store: OrderStore, seeded: dict[str, list[str]]) -> None:
    # FAILED orders are stories 3 and 5
    failed_acme = _ids(store.insights.search_orders(state=OrderState.FAILED, insurer="acme", limit=100))
    expected = [f"P-CON-{i:04d}" for i in range(59, -1, -1) if story_of(i) in (3, 5) and insurer_of(i) == "acme"]
    assert failed_acme == expected and len(expected) == 7
    dead_beta = _ids(store.insights.search_orders(state=OrderState.DEAD, insurer="beta", limit=3))
    assert dead_beta == [f"P-CON-{i:04d}" for i in (58, 40, 22)]
    # order i is created (60 - i) × 10 min before NOW: the last hour holds orders 54..59
    recent = _ids(store.insights.search_orders(created_from=NOW - HOUR, created_to=NOW, limit=100))
    assert recent == [f"P-CON-{i:04d}" for i in range(59, 53, -1)]
    pay = _ids(store.insights.search_orders(operation="pay", created_from=NOW - HOUR, limit=100))
    assert pay == ["P-CON-0058", "P-CON-0055"]


def test_order_id_prefix_search_is_exact_about_like_wildcards(store: OrderStore) -> None:
    for order_id in ("AB_1", "AB_2", "ABx1", "AB%9", "AC_1"):
        reserve(store, order_id)
    assert _ids(store.insights.search_orders(order_id_prefix="AB_", limit=10)) == ["AB_1", "AB_2"]
    assert _ids(store.insights.search_orders(order_id_prefix="AB%", limit=10)) == ["AB%9"]
    assert set(_ids(store.insights.search_orders(order_id_prefix="AB", limit=10))) == {"AB%9", "ABx1", "AB_1", "AB_2"}
    page, cursor = store.insights.search_orders(order_id_prefix="AB_", limit=1)
    assert [o.order_id for o in page] == ["AB_1"] and cursor is not None
    assert _ids(store.insights.search_orders(order_id_prefix="AB_", limit=1, cursor=cursor)) == ["AB_2"]


def test_cursors_are_checked(store: OrderStore) -> None:
    assert decode_cursor(encode_cursor("P:1.x|y"), order_id=True) == "P:1.x|y"
    at = dt.datetime(2026, 11, 24, 10, 0, tzinfo=dt.UTC)
    assert decode_cursor(encode_cursor((at, 7))) == (at, 7)
    with pytest.raises(InvalidCursor):  # one codec, two kinds of key: neither is taken for the other
        store.insights.search_orders(order_id_prefix="P", cursor=encode_cursor((at, 7)))
    with pytest.raises(InvalidCursor):
        store.list_orders(cursor=encode_cursor("P:1"))
    with pytest.raises(InvalidCursor):
        store.insights.search_orders(cursor="not-a-cursor")
    with pytest.raises(InvalidCursor):
        store.insights.search_orders(order_id_prefix="P", cursor="xyz")
    with pytest.raises(ValueError, match="limit"):
        store.insights.search_orders(limit=MAX_PAGE + 1)


def test_activity_counts_per_hour_and_insurer(store: OrderStore, seeded: dict[str, list[str]]) -> None:
    buckets = store.insights.activity(since=NOW - 24 * HOUR, until=NOW)
    assert sum(b.received for b in buckets) == 60
    assert {b.insurer for b in buckets} == {"acme", "beta", "gamma"}
    assert all(b.hour.minute == 0 and b.hour.tzinfo is not None for b in buckets)
    # every order's story decides whether it went async: stories 1, 2, 4, 5 of 0..5
    assert sum(b.went_async for b in buckets) == 40
    last_hour = [b for b in buckets if b.hour == NOW - HOUR]
    assert sum(b.received for b in last_hour) == 6  # orders 54..59, created 11:00..11:50
    assert store.insights.activity(since=NOW, until=NOW + HOUR) == []
    with pytest.raises(ValueError, match="window"):
        store.insights.activity(since=NOW - 40 * 24 * HOUR, until=NOW)


def test_failure_sample_reads_failed_calls_in_the_window(store: OrderStore, seeded: dict[str, list[str]]) -> None:
    sample = store.insights.failure_sample(since=NOW - 24 * HOUR, until=NOW, orders_limit=1000)
    # stories 1 (1 failure), 2 (1), 3 (1), 4 (3), 5 (2) per 6 orders: 8 failed calls × 10
    assert len(sample) == 80
    assert [o.at for o in sample] == sorted((o.at for o in sample), reverse=True)
    dead = [o for o in sample if o.order_state is OrderState.DEAD]
    assert len(dead) == 30 and {o.order_attempts for o in dead} == {3}
    assert {o.outcome for o in dead} == {"unknown"}
    limited = store.insights.failure_sample(since=NOW - 24 * HOUR, until=NOW, orders_limit=5)
    assert len({o.order_pk for o in limited}) == 5
    assert store.insights.failure_sample(since=NOW - 2 * HOUR, until=NOW - HOUR, orders_limit=1000) == [
        o for o in sample if NOW - 2 * HOUR <= o.at < NOW - HOUR
    ]


def test_backlog_counts_due_async_orders(store: OrderStore, seeded: dict[str, list[str]]) -> None:
    backlog = store.insights.backlog(now=NOW)
    assert backlog.due == 10
    assert backlog.oldest_due_at == NOW - dt.timedelta(seconds=1)
    assert store.insights.backlog(now=NOW - dt.timedelta(seconds=2)).due == 0


def test_console_indexes_exist(engine: sa.Engine) -> None:
    indexes = {ix["name"]: ix["column_names"] for ix in sa.inspect(engine).get_indexes("orders")}
    assert indexes["ix_orders_state_created"] == ["state", "created_at", "id"]
    assert indexes["ix_orders_insurer_created"] == ["insurer", "created_at", "id"]
    assert indexes["ix_orders_failed_updated"] == ["updated_at"]


def test_the_failure_window_reads_its_partial_index(engine: sa.Engine) -> None:
    """Only orders that failed once are in `ix_orders_failed_updated`; the failure sample's query names
    that predicate, so the planner can use the index (and must, with sequential scans off)."""
    since = NOW - dt.timedelta(hours=1)
    query = (
        sa.select(orders.c.id)
        .where(orders.c.updated_at >= since, orders.c.first_failure_at.is_not(None))
        .order_by(orders.c.updated_at.desc())
        .limit(10)
    )
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text("SET enable_seqscan = off"))
            compiled = query.compile(conn, compile_kwargs={"literal_binds": True})
            plan = "\n".join(conn.execute(sa.text(f"EXPLAIN {compiled}")).scalars())
        else:
            compiled = query.compile(conn, compile_kwargs={"literal_binds": True})
            plan = "\n".join(str(row[-1]) for row in conn.execute(sa.text(f"EXPLAIN QUERY PLAN {compiled}")))
    assert "ix_orders_failed_updated" in plan, plan
