"""The parts a running asyncgate process needs, opened and closed together.

`open_runtime(settings)` is used by the API's lifespan and by the worker command alike: the
database engine (migrated), the order store, the serving model, the insurer transport (aiohttp,
pooled per insurer) and gateway, metrics, the insurers' health (adaptive throttle or circuit
breakers) and the retry budget, both shared with the other processes through the order database
(`shared_state`: a background sync in this runtime's task group), the learning loop, the
operators' rules and the OrderProcessor that ties them together. `role` says whether the process
makes orders' first calls ("api", serve) or re-executes them ("worker"). With a webhook configured,
the order events' delivery loop (service/events/delivery.py), which both `serve` and `worker` run.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import anyio.to_thread

from service.breaker import BreakerPolicy
from service.budget import RetryBudget, SharedRetryBudget
from service.config import Settings
from service.events.delivery import deliverer_from_settings
from service.gateway import HttpTransport, InsurerGateway, InsurerRegistry, load_insurers, make_transport
from service.health import InsurerHealth
from service.learning.loop import Learning, open_learning
from service.metrics import Metrics
from service.processing import OrderProcessor
from service.retry import RetryPolicy
from service.rules import RuleBook
from service.scoring import ModelHolder, ServingModel
from service.store import OrderStore, create_async_db_engine, create_db_engine, migrate
from service.store.fastpath import FastSteps
from service.store.insurer_state import InsurerStateStore
from service.throttle import ThrottlePolicy

if TYPE_CHECKING:
    import httpx


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    store: OrderStore
    models: ModelHolder
    gateway: InsurerGateway
    metrics: Metrics
    processor: OrderProcessor
    health: InsurerHealth  # the insurers' circuit breakers: the processor's, the worker's, the console's
    learning: Learning  # hot reload, drift, shadow scoring, exploration (service/learning/loop.py)
    rules: RuleBook  # operators' rules, kept in step with the database (service/rules.py)
    budget: RetryBudget  # the retry budget (the fleet's with shared_state): the worker's, the console's


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(
        base_s=settings.retry_base_s,
        max_s=settings.retry_max_s,
        max_attempts=settings.retry_max_attempts,
        max_age_s=settings.retry_max_age_s,
    )


def breaker_policy(settings: Settings) -> BreakerPolicy:
    return BreakerPolicy(
        window=settings.breaker_window,
        failures=settings.breaker_failures,
        cooldown_s=settings.breaker_cooldown_s,
        probes=settings.breaker_probes,
    )


def insurer_registry(settings: Settings) -> InsurerRegistry:
    path = settings.resolved_insurers_file
    return load_insurers(path) if path is not None else InsurerRegistry.from_mapping({})


@asynccontextmanager
async def open_runtime(
    settings: Settings,
    *,
    metrics: Metrics | None = None,
    model: ServingModel | None = None,
    insurers: InsurerRegistry | None = None,
    http_client: HttpTransport | httpx.AsyncClient | None = None,
    role: Literal["api", "worker"] = "api",
) -> AsyncIterator[Runtime]:
    """Open everything; `http_client` (tests: a fake transport or an httpx.MockTransport client) replaces
    the insurer transport, and its owner closes it."""
    metrics = metrics or Metrics()
    registry = insurers if insurers is not None else insurer_registry(settings)
    engine = create_db_engine(
        settings.resolved_db_url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow
    )
    fast: FastSteps | None = None
    async_engine = create_async_db_engine(
        settings.resolved_db_url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow
    )
    try:
        await anyio.to_thread.run_sync(migrate, engine)
        if async_engine is not None:
            fast = await FastSteps.open(settings.resolved_db_url, size=settings.db_pool_size)
        store = OrderStore(engine, async_engine, fast)
        serving: ServingModel = (
            model
            if model is not None
            else await anyio.to_thread.run_sync(ServingModel.from_dir, settings.resolved_model_dir)
        )
        holder = ModelHolder(serving)
        metrics.watch_orders(store.counts_by_state)
        metrics.set_model(serving.version)
        own_client = http_client is None
        client = http_client or make_transport(connections_per_insurer=settings.http_max_connections)
        deliverer = deliverer_from_settings(settings, store.events, metrics)  # before anything starts
        rules = RuleBook()
        await anyio.to_thread.run_sync(lambda: rules.load(store, force=True))
        stack = AsyncExitStack()
        try:
            tasks = await stack.enter_async_context(anyio.create_task_group())
            stack.push_async_callback(rules.close, store)  # the last hits flushed once the poll has stopped
            stack.callback(tasks.cancel_scope.cancel)
            tasks.start_soon(rules.run, store, settings.rules_poll_s)
            learning = await stack.enter_async_context(open_learning(settings, store, holder, metrics))
            gateway = InsurerGateway(registry, client)
            health = InsurerHealth(
                breaker_policy(settings),
                metrics,
                guard=settings.insurer_guard,
                throttle=ThrottlePolicy(
                    accept_multiplier=settings.throttle_k,
                    window_s=settings.throttle_window_s,
                    min_requests=settings.throttle_min_requests,
                ),
                first_calls=role == "api",
                stale_s=settings.shared_stale_s,
            )
            budget: RetryBudget
            if settings.shared_state:
                shared = InsurerStateStore(engine)
                budget = SharedRetryBudget(
                    settings.retry_rate_per_s,
                    settings.retry_burst,
                    share=settings.retry_budget_share,
                    first_call_rate=health.first_call_rate,
                    period_s=settings.shared_sync_s,
                )
                tasks.start_soon(health.run_sync, shared, settings.shared_sync_s)
                tasks.start_soon(budget.run, shared)
            else:
                budget = RetryBudget(settings.retry_rate_per_s, settings.retry_burst)
            health.budget_figures = budget.figures
            metrics.watch_insurers(health.figures, budget.figures)
            processor = OrderProcessor(
                store,
                gateway,
                holder,
                retry_policy(settings),
                metrics,
                lease_s=settings.lease_s,
                max_payload_bytes=settings.max_payload_bytes,
                rng=random.Random(),
                health=health,
                watch=learning.watch,
                rules=rules,
            )
            if deliverer is not None:
                metrics.watch_events(store.events.summary)
                tasks.start_soon(deliverer.run)
            yield Runtime(settings, store, holder, gateway, metrics, processor, health, learning, rules, budget)
        finally:
            await stack.aclose()
            if own_client:
                await client.aclose()
    finally:
        if fast is not None:
            await fast.close()
        if async_engine is not None:
            await async_engine.dispose()
        engine.dispose()
