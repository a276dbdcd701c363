"""The durable path's steps from async code (OrderStore.run_async): the same records as the blocking
path, on SQLite (worker threads) and on PostgreSQL (the asyncpg engine, and FastSteps for the three
per-order statements), with leases, replays, conflicts and outages handled the same way."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import pytest
import sqlalchemy as sa

from service.store import (
    LeaseLost,
    NewAttempt,
    OrderConflict,
    OrderState,
    OrderStore,
    StoreUnavailable,
    create_async_db_engine,
    create_db_engine,
    migrate,
    steps,
)
from service.store.fastpath import FastSteps
from service.store.tables import attempts, events, transitions
from tests.service.store.conftest import T0, at, count

T = TypeVar("T")


Runner = Callable[[Callable[[OrderStore], Awaitable[Any]]], Any]


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("postgresql+fast", marks=pytest.mark.postgres),
    ]
)
def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """SQLite (steps in threads); PostgreSQL through the asyncpg engine alone, or with FastSteps."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state/asyncgate.db"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def run(request: pytest.FixtureRequest, engine: sa.Engine, db_url: str) -> Runner:
    """`run(flow)`: await `flow(store)` in a fresh event loop on a store with the async parts the runtime
    gives it: none on SQLite; the asyncpg engine, with FastSteps or not, on PostgreSQL."""
    fast = request.node.callspec.params["db_url"] == "postgresql+fast"

    def runner(flow: Callable[[OrderStore], Awaitable[T]]) -> T:
        async def main() -> T:  # engines and pools belong to the event loop that opened them
            async_engine = create_async_db_engine(db_url)
            pool = await FastSteps.open(db_url, size=2) if fast else None
            try:
                return await flow(OrderStore(engine, async_engine, pool))
            finally:
                if pool is not None:
                    await pool.close()
                if async_engine is not None:
                    await async_engine.dispose()

        return anyio.run(main)

    return runner


def _reserve(order_id: str, request_hash: str = "h" * 64, owner: str = "api") -> dict[str, Any]:
    return {
        "order_id": order_id,
        "insurer": "acme",
        "operation": "underwrite",
        "payload": {"order_id": order_id, "名": "张三", "premium": 1.5, "tags": [1, None]},
        "request_hash": request_hash,
        "lease_owner": owner,
        "lease_s": 30.0,
        "now": T0,
    }


def _failure() -> NewAttempt:
    return NewAttempt(
        kind="call",
        outcome="failure",
        latency_ms=12.5,
        error_code="E1",
        error_message="系统繁忙\x00",
        http_status=503,
        async_eligible=True,
        probability=0.93,
        category="insurer_busy",
        model_version="m1",
        explanation=[{"kind": "text", "span": "系统繁忙", "weight": 1.2}],
        decided_by="model",
    )


def test_reserve_record_and_query_match_the_blocking_path(run: Runner, store: OrderStore, engine: sa.Engine) -> None:
    async def flow(store: OrderStore) -> tuple[Any, ...]:
        reserved, created = await store.run_async(steps.reserve, **_reserve("A1"))
        as_reserved = await store.run_async(steps.get, "A1", with_attempts=False)
        kept = await store.run_async(
            steps.record_attempt,
            reserved.pk,
            _failure(),
            new_state=OrderState.ASYNC_PROCESSING,
            next_attempt_at=at(60),
            lease_owner="api",
            reason="async-eligible (insurer_busy)",
            actor="api",
            now=at(1),
            count_call=True,
            full_log=False,
            held=reserved,
        )
        as_kept = await store.run_async(steps.get, "A1", with_attempts=False)
        [claimed] = await store.run_async(steps.claim_due, "w1", batch=5, lease_s=30, now=at(61))
        query = NewAttempt(kind="query", outcome="not_found", http_status=404, latency_ms=2.0)
        queried = await store.run_async(steps.record_query, claimed.pk, query, lease_owner="w1", actor="w1", now=at(62))
        done = await store.run_async(
            steps.record_attempt,
            claimed.pk,
            NewAttempt(kind="call", outcome="success", latency_ms=3.0, http_status=200),
            new_state=OrderState.SUCCEEDED,
            next_attempt_at=None,
            lease_owner="w1",
            reason="insurer succeeded",
            actor="w1",
            result={"policy_no": "P-1", "金额": 10},
            now=at(63),
            count_call=True,
            full_log=False,
            held=claimed,
        )
        released = await store.run_async(steps.release, claimed.pk, "w1")
        return reserved, created, kept, queried, done, released, as_reserved, as_kept

    reserved, created, kept, queried, done, released, as_reserved, as_kept = run(flow)
    # the records the steps return are built from what they wrote and what the database decided: each
    # equals the order read back right after its step
    assert reserved == as_reserved
    assert dataclasses.replace(kept, attempt_log=None) == as_kept
    assert created and (reserved.state, reserved.attempts, reserved.lease_owner) == (
        OrderState.ASYNC_PROCESSING,
        0,
        "api",
    )
    assert reserved.payload == {"order_id": "A1", "名": "张三", "premium": 1.5, "tags": [1, None]}
    assert (reserved.created_at, reserved.lease_until) == (T0, at(30))
    stored = store.get("A1")
    assert stored is not None and stored.attempt_log is not None
    first, logged_query, success = stored.attempt_log
    # each returned log holds the attempt its step wrote, exactly as stored
    assert kept.attempt_log == (first,)
    assert (kept.state, kept.attempts, kept.last_outcome, kept.category) == (
        OrderState.ASYNC_PROCESSING,
        1,
        "failure",
        "insurer_busy",
    )
    assert (kept.first_failure_at, kept.next_attempt_at, kept.lease_owner) == (at(1), at(60), None)
    assert first.error_message == "系统繁忙\ufffd" and first.explanation == _failure().explanation
    assert queried == logged_query and (queried.kind, queried.outcome, queried.actor) == ("query", "not_found", "w1")
    assert done.attempt_log == (success,)
    assert dataclasses.replace(done, attempt_log=None) == store.get("A1", with_attempts=False)
    assert (done.state, done.attempts, done.result, done.first_failure_at) == (
        OrderState.SUCCEEDED,
        2,
        {"policy_no": "P-1", "金额": 10},
        at(1),
    )
    assert released is False  # recording released the lease already
    assert [(t.from_state, t.to_state, t.actor) for t in store.transitions("A1")] == [
        (None, OrderState.ASYNC_PROCESSING, "api"),
        (OrderState.ASYNC_PROCESSING, OrderState.SUCCEEDED, "w1"),
    ]
    assert (count(engine, attempts), count(engine, transitions)) == (3, 2)
    # each transition's event, written by its statement (docs/contract.md §8)
    with engine.connect() as conn:
        bodies = [json.loads(b) for b in conn.execute(sa.select(events.c.body).order_by(events.c.id)).scalars()]
    assert [(e["from_state"], e["to_state"], e["order"]["attempts"]) for e in bodies] == [
        (None, "ASYNC_PROCESSING", 0),
        ("ASYNC_PROCESSING", "SUCCEEDED", 2),
    ]
    assert bodies[1]["order"]["result"] == {"policy_no": "P-1", "金额": 10}
    assert bodies[1]["order"]["insurer"] == "acme" and bodies[1]["order"]["operation"] == "underwrite"


def test_a_skip_before_any_call_marks_the_order_not_sent(run: Runner) -> None:
    skip = NewAttempt(kind="skip", outcome="skipped", async_eligible=True, category="circuit_open")

    async def flow(store: OrderStore) -> Any:
        order, _ = await store.run_async(steps.reserve, **_reserve("S1"))
        return await store.run_async(
            steps.record_attempt,
            order.pk,
            skip,
            new_state=OrderState.ASYNC_PROCESSING,
            next_attempt_at=at(5),
            lease_owner="api",
            reason="circuit open: not called",
            actor="api",
            now=at(1),
            count_call=False,
            full_log=False,
        )

    skipped = run(flow)
    assert (skipped.last_outcome, skipped.attempts, skipped.first_failure_at) == ("not_sent", 0, None)


def test_replays_conflicts_and_lost_leases(run: Runner, engine: sa.Engine) -> None:
    async def flow(store: OrderStore) -> tuple[Any, ...]:
        first, created = await store.run_async(steps.reserve, **_reserve("R1"))
        again, created_again = await store.run_async(steps.reserve, **_reserve("R1", owner="api:other"))
        with pytest.raises(OrderConflict):
            await store.run_async(steps.reserve, **_reserve("R1", request_hash="x" * 64))
        with pytest.raises(LeaseLost):
            await store.run_async(
                steps.record_attempt,
                first.pk,
                _failure(),
                new_state=OrderState.FAILED,
                next_attempt_at=None,
                lease_owner="someone-else",
                reason="x",
                actor="x",
                now=at(1),
                count_call=True,
                full_log=False,
            )
        with pytest.raises(LeaseLost):
            await store.run_async(
                steps.record_query,
                first.pk,
                NewAttempt(kind="query", outcome="unknown"),
                lease_owner="someone-else",
                actor="x",
                now=at(1),
            )
        return first, created, again, created_again

    first, created, again, created_again = run(flow)
    assert created and not created_again
    assert again.pk == first.pk and again.lease_owner == "api"  # the stored order, untouched
    assert (count(engine, attempts), count(engine, transitions)) == (0, 1)


def test_concurrent_reserves_of_one_order_id_create_it_once(run: Runner) -> None:
    async def flow(store: OrderStore) -> list[bool]:
        created: list[bool] = []

        async def one(i: int) -> None:
            _, made = await store.run_async(steps.reserve, **_reserve("C1", owner=f"api:{i}"))
            created.append(made)

        async with anyio.create_task_group() as group:
            for i in range(8):
                group.start_soon(one, i)
        return created

    created = run(flow)
    assert sorted(created) == [False] * 7 + [True]


@pytest.mark.postgres
def test_fast_steps_report_a_lost_server_as_unavailable(pg_url: str) -> None:
    """A pooled connection the server dropped (a restart, a failover) is StoreUnavailable, and the
    pool recovers on the next call."""
    engine = create_db_engine(pg_url)
    migrate(engine)

    async def flow() -> tuple[BaseException | None, bool]:
        pool = await FastSteps.open(pg_url, size=1)
        store = OrderStore(engine, None, pool)
        try:
            await store.run_async(steps.reserve, **_reserve("U0"))
            pid = await pool._pool.fetchval("SELECT pg_backend_pid()")  # the pool's one connection
            with engine.begin() as conn:
                conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            caught: BaseException | None = None
            try:
                await store.run_async(steps.reserve, **_reserve("U1"))
            except StoreUnavailable as error:
                caught = error
            _, created = await store.run_async(steps.reserve, **_reserve("U2"))
            return caught, created
        finally:
            await pool.close()

    try:
        caught, created = anyio.run(flow)
    finally:
        engine.dispose()
    assert isinstance(caught, StoreUnavailable)
    assert created
