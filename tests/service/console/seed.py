"""Seeds a store with a known mix of orders through OrderStore's own write methods (no SQL of its own).

    seed_orders(store, now=..., count=60) -> {"SUCCEEDED": [...ids], "FAILED": [...], ...}

Order i is created (count - i) × 10 minutes before `now`, for insurer `insurer_of(i)`, and follows
story `story_of(i)`: 0 a synchronous success; 1 a busy failure still waiting; 2 a busy failure that
succeeded later; 3 a final failure (bad ID number); 4 three timeouts and DEAD; 5 a "processing"
failure whose retry failed definitively. Every insurer gets 2 of every 6 orders and, over 18
orders, every story. The browser tests, the page tests and the store tests share it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from typing import Any

from service.store import NewAttempt, OrderState, OrderStore

INSURERS = ("acme", "beta", "gamma")
OPERATIONS = ("underwrite", "pay", "issue_policy")
BUSY = "系统繁忙，请稍后再试 (流水号 {n:012d})"
PROCESSING = "交易处理中，请稍后查询"
FINAL = "身份证号码格式不正确: 110101199003071234"
TIMEOUT = "ReadTimeout: timed out after 2000 ms (order {order_id})"
EXPLAIN_ASYNC = [
    {"kind": "text", "feature": "text:'系统繁忙'", "weight": 1.42, "span": "系统繁忙"},
    {"kind": "text", "feature": "text:'timed out'", "weight": 1.1, "span": "timed out"},
    {"kind": "status", "feature": "status=503", "weight": 0.61},
]
EXPLAIN_FINAL = [
    {"kind": "text", "feature": "text:'身份证号码'", "weight": -2.1, "span": "身份证号码"},
    {"kind": "code", "feature": "insurer_code=acme|e2001", "weight": -0.4},
]


def _failure(message: str, *, code: str | None, status: int | None, p: float, category: str) -> NewAttempt:
    eligible = p >= 0.35
    return NewAttempt(
        kind="call",
        outcome="failure" if status is not None else "unknown",
        latency_ms=2001.5 if status is None else 180.0,
        error_code=code,
        error_message=message,
        http_status=status,
        async_eligible=eligible,
        probability=p,
        category=category,
        model_version="seed-model",
        explanation=EXPLAIN_ASYNC if eligible else EXPLAIN_FINAL,
    )


SUCCESS = NewAttempt(kind="call", outcome="success", latency_ms=95.0)


def insurer_of(i: int) -> str:
    return INSURERS[(i + i // 6) % 3]


def story_of(i: int) -> int:
    return i % 6


def _story(i: int, order_id: str) -> list[tuple[NewAttempt, OrderState]]:
    busy = _failure(BUSY.format(n=i), code="E1001", status=503, p=0.93, category="insurer_busy")
    story = story_of(i)
    if story == 0:
        return [(SUCCESS, OrderState.SUCCEEDED)]
    if story == 1:
        return [(busy, OrderState.ASYNC_PROCESSING)]
    if story == 2:
        return [(busy, OrderState.ASYNC_PROCESSING), (SUCCESS, OrderState.SUCCEEDED)]
    if story == 3:
        final = _failure(FINAL, code="E2001", status=200, p=0.04, category="validation")
        return [(final, OrderState.FAILED)]
    if story == 4:
        timeout = _failure(TIMEOUT.format(order_id=order_id), code=None, status=None, p=0.97, category="timeout")
        return [(timeout, OrderState.ASYNC_PROCESSING)] * 2 + [(timeout, OrderState.DEAD)]
    processing = _failure(PROCESSING, code="E3003", status=200, p=0.88, category="pending_unknown")
    final = _failure(FINAL, code="E2001", status=200, p=0.04, category="validation")
    return [(processing, OrderState.ASYNC_PROCESSING), (final, OrderState.FAILED)]


def seed_orders(
    store: OrderStore, *, now: dt.datetime, count: int = 60, prefix: str = "P-CON-"
) -> dict[str, list[str]]:
    """Create `count` orders (see the module docstring); returns their order ids by final state."""
    by_state: dict[str, list[str]] = {state.value: [] for state in OrderState}
    for i in range(count):
        order_id = f"{prefix}{i:04d}"
        created = now - dt.timedelta(minutes=10 * (count - i))
        payload: dict[str, Any] = {"premium": 100 + i}
        digest = hashlib.sha256(order_id.encode()).hexdigest()
        insurer, operation = insurer_of(i), OPERATIONS[i % len(OPERATIONS)]
        order, _ = store.reserve(
            order_id, insurer, operation, payload, digest, lease_owner="seed", lease_s=60, now=created
        )
        steps: Sequence[tuple[NewAttempt, OrderState]] = _story(i, order_id)
        for n, (attempt, state) in enumerate(steps):
            at = created + dt.timedelta(minutes=2 * n, seconds=1)
            last = n + 1 == len(steps)
            # an order left waiting is due a second ago (the backlog); one re-executed next is due at once
            due = (now - dt.timedelta(seconds=1) if last else at) if state is OrderState.ASYNC_PROCESSING else None
            store.record_attempt(
                order.pk,
                attempt,
                new_state=state,
                next_attempt_at=due,
                lease_owner="seed",
                reason=f"seeded step {n + 1}",
                actor="api" if n == 0 else "worker:seed",
                now=at,
                count_call=True,
            )
            if not last:  # the worker claims it again (the only order due at that moment)
                claimed = store.claim_due("seed", batch=1, lease_s=60, now=at + dt.timedelta(seconds=1))
                assert [c.order_id for c in claimed] == [order_id], claimed
        by_state[steps[-1][1].value].append(order_id)
    return by_state
