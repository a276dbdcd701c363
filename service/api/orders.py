"""POST /process and the orders resource: GET /orders/{id}, GET /orders, POST /orders/{id}/requeue."""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Query

from service.api.deps import ProcessorDep, StoreDep
from service.api.responses import JSONBytes
from service.api.schemas import OrderId, OrderOut, OrderPage, ProcessRequest, ProcessResponse, State
from service.api.views import order_out, process_response
from service.processing import utcnow
from service.store import OrderNotFound, OrderState

router = APIRouter(tags=["orders"])

#: Filters are matched as given; a NUL character can be in no stored name (PostgreSQL text cannot hold it).
NO_NUL = r"^[^\x00]*$"


@router.post(
    "/process",
    response_model=ProcessResponse,
    response_class=JSONBytes,
    responses={
        409: {"description": "the order_id exists with a different body"},
        413: {"description": "the payload or the body is over its size limit"},
    },
)
async def process(body: ProcessRequest, processor: ProcessorDep) -> JSONBytes:
    """Make the order's synchronous insurer call; keep it for re-execution when the failure is async-eligible."""
    order = await processor.process(body.order_id, body.insurer, body.operation, body.payload)
    return JSONBytes(process_response(order).model_dump(mode="json"))


@router.get("/orders/{order_id}", response_model=OrderOut, responses={404: {"description": "no such order"}})
async def get_order(order_id: OrderId, store: StoreDep) -> OrderOut:
    """One order with its attempts and state transitions."""
    order = await anyio.to_thread.run_sync(lambda: store.get(order_id))
    if order is None:
        raise OrderNotFound(order_id)
    transitions = await anyio.to_thread.run_sync(lambda: store.transitions(order_id))
    return order_out(order, transitions)


@router.get("/orders", response_model=OrderPage)
async def list_orders(
    store: StoreDep,
    state: State | None = None,
    insurer: Annotated[str | None, Query(max_length=128, pattern=NO_NUL)] = None,
    operation: Annotated[str | None, Query(max_length=64, pattern=NO_NUL)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=256)] = None,
) -> OrderPage:
    """Orders, newest first, filtered; follow `next_cursor` for the next page."""
    orders, next_cursor = await anyio.to_thread.run_sync(
        lambda: store.list_orders(
            state=OrderState(state) if state else None,
            insurer=insurer,
            operation=operation,
            limit=limit,
            cursor=cursor,
        )
    )
    return OrderPage(orders=[order_out(o) for o in orders], next_cursor=next_cursor)


@router.post(
    "/orders/{order_id}/requeue",
    response_model=OrderOut,
    responses={404: {"description": "no such order"}, 409: {"description": "the order is not FAILED or DEAD"}},
)
async def requeue(order_id: OrderId, store: StoreDep) -> OrderOut:
    """Put a FAILED or DEAD order back to ASYNC_PROCESSING, due now."""
    order = await anyio.to_thread.run_sync(lambda: store.requeue(order_id, actor="api", now=utcnow()))
    return order_out(order)
