"""The console's read-only pages: Overview, Orders (table and one order's timeline), Failures, Rules, Model.

Each page reads the store through OrderStore's bounded console queries (`store.insights`, service/store/insights.py)
in a worker thread and renders a template; nothing here writes. Every page needs the `read` role
when API keys are configured.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Final
from urllib.parse import urlencode

import anyio.to_thread
from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from model.schema import CATEGORIES, OPERATIONS
from service.api.auth import Role
from service.api.deps import HealthDep, LearningDep, ModelsDep, SettingsDep, StoreDep
from service.console.access import Access, require
from service.console.activity import ActivityCache
from service.console.failures import group_failures, live_calibration, top_codes
from service.console.peers import drift, resilience
from service.console.render import Renderer
from service.console.views import (
    activity_chart,
    activity_totals,
    calibration_chart,
    card_facts,
    codes_chart,
    gate_metrics,
    headline,
)
from service.store import InvalidCursor, OrderRecord, OrderState

router = APIRouter(prefix="/console", include_in_schema=False)

WINDOWS_H: Final = (6, 24, 72, 168)
PAGE_SIZES: Final = (25, 50, 100, 200)
#: Orders with a failure read for the failures page and the live calibration (the latest ones in the window).
FAILURE_SAMPLE: Final = 2000
CALIBRATION_DAYS: Final = 7


def _reader(request: Request) -> Access:
    return require(request, Role.READ, "Viewing the console")


def _renderer(request: Request) -> Renderer:
    renderer: Renderer = request.app.state.console
    return renderer


ReaderDep = Annotated[Access, Depends(_reader)]
RendererDep = Annotated[Renderer, Depends(_renderer)]
HoursQuery = Annotated[int, Query(ge=1, le=720)]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _insurers(request: Request, *more: str) -> list[str]:
    gateway = getattr(request.app.state, "gateway", None)
    names = set(gateway.registry.names()) if gateway is not None else set()
    return sorted(names.union(more))


@router.get("")
@router.get("/")
async def overview(
    request: Request,
    _: ReaderDep,
    page: RendererDep,
    store: StoreDep,
    models: ModelsDep,
    health: HealthDep,
    settings: SettingsDep,
    hours: HoursQuery = 24,
) -> Response:
    """Orders by state now, the due backlog, throughput and async rate per insurer, breakers, the model."""
    now = _now()
    since = (now - dt.timedelta(hours=hours)).replace(minute=0, second=0, microsecond=0)

    activity: ActivityCache = request.app.state.console_activity

    def read() -> tuple[Any, ...]:
        reads = store.insights
        return store.counts_by_state(), reads.backlog(now=now), activity.read(reads, since=since, now=now)

    counts, backlog, buckets = await anyio.to_thread.run_sync(read)
    insurers = _insurers(request, *(b.insurer for b in buckets))
    card = models.current.card
    return page.page(
        request,
        "overview.html",
        "overview",
        hours=hours,
        windows=WINDOWS_H,
        counts=counts,
        total=sum(counts.values()),
        backlog=backlog,
        totals_by=activity_totals(buckets),
        chart=activity_chart(buckets, since, now, insurers),
        resilience=resilience(health, settings, insurers),
        model_version=models.current.version,
        threshold=models.current.threshold,
        headline=headline(card),
    )


def _parse_time(text: str | None, field: str, errors: list[str]) -> dt.datetime | None:
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        errors.append(f"{field}: {text!r} is not a date and time (YYYY-MM-DDTHH:MM)")
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


@router.get("/orders")
async def orders_page(
    request: Request,
    _: ReaderDep,
    page: RendererDep,
    store: StoreDep,
    state: Annotated[str, Query(max_length=32)] = "",
    insurer: Annotated[str, Query(max_length=128)] = "",
    operation: Annotated[str, Query(max_length=64)] = "",
    q: Annotated[str, Query(max_length=64)] = "",
    created_from: Annotated[str, Query(alias="from", max_length=40)] = "",
    created_to: Annotated[str, Query(alias="to", max_length=40)] = "",
    cursor: Annotated[str | None, Query(max_length=400)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Response:
    """A filtered page of orders, newest first (order id prefix search: by order id)."""
    errors: list[str] = []
    wanted_state = None
    if state:
        try:
            wanted_state = OrderState(state)
        except ValueError:
            errors.append(f"state: {state!r} is not one of {', '.join(s.value for s in OrderState)}")
    start = _parse_time(created_from, "from", errors)
    end = _parse_time(created_to, "to", errors)
    found: list[OrderRecord] = []
    next_cursor: str | None = None
    if not errors:
        try:
            found, next_cursor = await anyio.to_thread.run_sync(
                lambda: store.insights.search_orders(
                    state=wanted_state,
                    insurer=insurer.strip() or None,
                    operation=operation.strip() or None,
                    created_from=start,
                    created_to=end,
                    order_id_prefix=q.strip() or None,
                    limit=limit,
                    cursor=cursor,
                )
            )
        except InvalidCursor as error:
            errors.append(str(error))
    filters = {"state": state, "insurer": insurer, "operation": operation, "q": q}
    filters |= {"from": created_from, "to": created_to, "limit": str(limit)}
    query = {name: value for name, value in filters.items() if value}
    return page.page(
        request,
        "orders.html",
        "orders",
        status_code=400 if errors else 200,
        orders=found,
        next_url=f"?{urlencode(query | {'cursor': next_cursor})}" if next_cursor else None,
        first_url=f"?{urlencode(query)}",
        first_page=cursor is None,
        filters=filters,
        errors=errors,
        states=[s.value for s in OrderState],
        insurers=_insurers(request),
        operations=OPERATIONS,
        page_sizes=PAGE_SIZES,
    )


@router.get("/orders/{order_id}")
async def order_page(
    request: Request, access: ReaderDep, page: RendererDep, store: StoreDep, order_id: str, requeued: bool = False
) -> Response:
    """One order: its facts, and a timeline of its attempts and state changes; requeue for FAILED/DEAD."""
    return await render_order(request, page, store, access, order_id, notice="Requeued." if requeued else None)


async def render_order(
    request: Request,
    page: Renderer,
    store: Any,
    access: Access,
    order_id: str,
    *,
    notice: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    def read() -> tuple[Any, Any, Any]:
        order = store.get(order_id)
        if order is None:
            return None, [], []
        return order, store.transitions(order_id), store.events.of_order(order.pk)

    order, transitions, order_events = await anyio.to_thread.run_sync(read)
    if order is None:
        return page.page(request, "missing.html", "orders", status_code=404, what=f"order {order_id!r}")
    events = [("attempt", a.at, a) for a in order.attempt_log or ()]
    events += [("transition", t.at, t) for t in transitions]
    events += [("event", e.at, e) for e in order_events]  # docs/contract.md §8: each move's event and its delivery
    rank = {"attempt": 0, "transition": 1, "event": 2}
    events.sort(key=lambda e: (e[1], rank[e[0]]))  # an attempt, then the move it caused, then the move's event
    return page.page(
        request,
        "order.html",
        "orders",
        status_code=status_code,
        order=order,
        events=events,
        requeuable=order.state in (OrderState.FAILED, OrderState.DEAD),
        can_requeue=access.can_admin,
        notice=notice,
        error=error,
    )


@router.get("/failures")
async def failures_page(
    request: Request,
    access: ReaderDep,
    page: RendererDep,
    store: StoreDep,
    hours: HoursQuery = 24,
    sample: Annotated[int, Query(ge=100, le=20_000)] = FAILURE_SAMPLE,
) -> Response:
    """Failed calls in the window grouped by normalized template; disagreements between model and outcome first."""
    now = _now()
    since = now - dt.timedelta(hours=hours)
    observations = await anyio.to_thread.run_sync(
        lambda: store.insights.failure_sample(since=since, until=now, orders_limit=sample)
    )
    groups = group_failures(observations)
    codes = top_codes(observations)
    return page.page(
        request,
        "failures.html",
        "failures",
        hours=hours,
        windows=WINDOWS_H,
        sample=sample,
        failures=len(observations),
        orders=len({o.order_pk for o in observations}),
        groups=groups[:100],
        more_groups=max(0, len(groups) - 100),
        disagreeing=sum(1 for g in groups if g.disagrees),
        codes=codes,
        chart=codes_chart(codes),
        can_pin=access.can_admin,
        categories=CATEGORIES,
    )


@router.get("/rules")
async def rules_page(
    request: Request,
    access: ReaderDep,
    page: RendererDep,
    store: StoreDep,
    created: int | None = None,
    removed: int | None = None,
) -> Response:
    """The live operators' rules with their hits, the latest changes, and (admin) a form to add one."""
    notice = f"Rule {created} added." if created else f"Rule {removed} removed." if removed else None
    return await render_rules(request, page, store, access, notice=notice)


async def render_rules(
    request: Request,
    page: Renderer,
    store: Any,
    access: Access,
    *,
    notice: str | None = None,
    errors: list[str] | None = None,
    form: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    def read() -> tuple[Any, Any]:
        return store.rules.live_rules()[1], store.rules.rule_history(limit=50)

    live, history = await anyio.to_thread.run_sync(read)
    return page.page(
        request,
        "rules.html",
        "rules",
        status_code=status_code,
        rules=live,
        history=history,
        can_change=access.can_admin,
        notice=notice,
        errors=errors or [],
        form=form or {},
        categories=CATEGORIES,
        operations=OPERATIONS,
    )


@router.get("/model")
async def model_page(
    request: Request, access: ReaderDep, page: RendererDep, store: StoreDep, models: ModelsDep, learning: LearningDep
) -> Response:
    """The serving model's card, its evaluation metrics, live calibration against outcomes, drift figures."""
    now = _now()
    current = models.current
    observations = await anyio.to_thread.run_sync(
        lambda: store.insights.failure_sample(
            since=now - dt.timedelta(days=CALIBRATION_DAYS), until=now, orders_limit=FAILURE_SAMPLE
        )
    )
    bins = live_calibration(observations)
    figures = await drift(learning, allowed=access.can_admin)
    return page.page(
        request,
        "model.html",
        "model",
        version=current.version,
        facts=card_facts(current.card),
        metrics=gate_metrics(current.card),
        calibration=bins,
        chart=calibration_chart(bins),
        calibration_days=CALIBRATION_DAYS,
        drift=figures,
    )
