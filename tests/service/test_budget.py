"""The retry budget: token buckets per insurer on a driven clock, and a worker draining a backlog under it."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable

import anyio
import pytest

from service.budget import RetryBudget
from service.gateway import InsurerGateway
from service.health import InsurerHealth
from service.metrics import Metrics
from service.processing import OrderProcessor
from service.runtime import retry_policy
from service.scoring import ModelHolder, ServingModel
from service.store import OrderStore, create_db_engine
from service.worker import Worker, WorkerStats
from tests.service.conftest import Service, busy, registry, success


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_rate() -> None:
    clock = Clock()
    budget = RetryBudget(2.0, 3, clock=clock)
    assert [budget.reserve("acme", max_wait_s=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert budget.reserve("acme", max_wait_s=0.0) is None, "the burst is spent"
    assert budget.reserve("acme", max_wait_s=1.0) == pytest.approx(0.5)
    assert budget.reserve("acme", max_wait_s=1.0) == pytest.approx(1.0)
    assert budget.reserve("acme", max_wait_s=1.0) is None, "nothing is taken past the horizon"
    assert budget.granted == {"acme": 5}
    assert budget.reserve("beta", max_wait_s=0.0) == 0.0, "each insurer has its own bucket"
    clock.now += 100
    assert budget.wait_s("acme") == 0.0
    assert [budget.reserve("acme", max_wait_s=0.0) for _ in range(4)][-1] is None, "saved tokens cap at the burst"


def test_grants_never_exceed_burst_plus_rate_times_time() -> None:
    clock = Clock()
    budget = RetryBudget(5.0, 4, clock=clock)
    start = clock.now
    for _ in range(200):
        budget.reserve("acme", max_wait_s=0.0)
        clock.now += 0.013
    assert budget.granted["acme"] <= 4 + 5.0 * (clock.now - start) + 1e-9


def test_exhausted_and_unlimited() -> None:
    clock = Clock()
    budget = RetryBudget(1.0, 1, clock=clock)
    budget.reserve("acme", max_wait_s=0.0)
    assert budget.exhausted({"acme", "beta"}, max_wait_s=0.5) == {"acme"}
    unlimited = RetryBudget(0.0, 1, clock=clock)
    assert all(unlimited.reserve("acme", max_wait_s=0.0) == 0.0 for _ in range(1000))


def test_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="rate"):
        RetryBudget(-1.0, 1)
    with pytest.raises(ValueError, match="burst"):
        RetryBudget(1.0, 0)


def _drain(service: Service, model: ServingModel, budget: RetryBudget, *, lease_s: float) -> WorkerStats:
    async def main() -> WorkerStats:
        engine = create_db_engine(service.settings.resolved_db_url)
        try:
            store = OrderStore(engine)
            async with service.insurer.http_client() as http:
                metrics = Metrics()
                health = InsurerHealth(None, metrics)
                processor = OrderProcessor(
                    store,
                    InsurerGateway(registry(), http),
                    ModelHolder(model),
                    retry_policy(service.settings),
                    metrics,
                    lease_s=lease_s,
                    max_payload_bytes=65536,
                    health=health,
                )
                worker = Worker(
                    processor,
                    store,
                    health=health,
                    metrics=metrics,
                    worker_id="worker:budget",
                    lease_s=lease_s,
                    poll_s=0.01,
                    budget=budget,
                )
                with anyio.fail_after(30):
                    return await worker.run(once=True)
        finally:
            engine.dispose()

    return anyio.run(main)


@pytest.mark.parametrize("lease_s", [30.0, 0.4], ids=["tokens-wait", "backlog-deferred"])
def test_backlog_drains_in_due_order_within_the_budget(
    start_service: Callable[..., Service], serving_model: ServingModel, lease_s: float
) -> None:
    """A backlog of 10 due orders, a budget of 20/s with a burst of 2: every order is re-executed once,
    oldest due first; with a short lease (a 0.1 s wait horizon) most are put back and claimed again later."""
    service = start_service(retry_base_s=0.001, retry_max_s=0.5)
    order_ids = [f"Q-{n}" for n in range(10)]
    for order_id in order_ids:
        service.insurer.script(order_id, busy(), success())
        assert service.process(order_id).json()["state"] == "ASYNC_PROCESSING"
    due = {order_id: dt.datetime.fromisoformat(service.order(order_id)["next_attempt_at"]) for order_id in order_ids}
    for order_id in order_ids:
        service.wait_until_due(order_id)
    first_calls = len(service.insurer.calls())

    stats = _drain(service, serving_model, RetryBudget(20.0, 2), lease_s=lease_s)

    reexecuted = [json.loads(r.content)["order_id"] for r in service.insurer.calls()[first_calls:]]
    assert reexecuted == sorted(order_ids, key=lambda order_id: due[order_id]), "due order"
    assert (stats.finished, stats.errors) == (10, 0)
    assert {service.order(order_id)["state"] for order_id in order_ids} == {"SUCCEEDED"}
    if lease_s < 1:
        assert stats.deferred > 0
