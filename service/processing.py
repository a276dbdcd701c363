"""The /process method and its re-execution: call, classify, decide, record — in one place.

    execute the synchronous operation; if it fails, classify the failure; if the failure is
    async-eligible, keep the order in ASYNC_PROCESSING with its business data so the operation is
    executed again; tell the platform its next business step either way.

`OrderProcessor.process` serves POST /process; `OrderProcessor.reexecute` serves the worker. Every
step on an order (a call, a query, or a skip while the insurer's circuit is open) goes through
`decide`, whose due times all come from the RetryPolicy (service/retry.py), and one recording tail
(`_settle`: the attempt and the move written together, a log line, the transition metric), so the API
and the worker can never disagree on what a failure means. A failure whose outcome is unknown (the
request may have reached the insurer) is always kept async whatever the model says: only a query can
settle it, and the worker queries before it sends again; an order the insurer reports completed
becomes SUCCEEDED without a second call.

Every call's outcome feeds the insurer's circuit breaker (service/health.py, service/breaker.py). While it is open,
`process` records the order as ASYNC_PROCESSING at once without calling (a "skip" attempt, due when
the breaker will let a probe through) and `reexecute` raises CircuitOpen, which the worker answers
by putting the order back untouched.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

import orjson

from model.records import make_failure
from service.errors import AsyncgateError
from service.gateway import CallResult, InsurerGateway, QueryResult
from service.health import InsurerHealth
from service.learning.watch import FailureWatch
from service.metrics import Metrics
from service.retry import RetryPolicy, after_open_circuit, next_attempt_at
from service.rules import RuleBook
from service.scoring import ModelHolder, Verdict
from service.store import AttemptOutcome, LeaseLost, NewAttempt, OrderRecord, OrderState, OrderStore, steps

log = logging.getLogger("asyncgate.processing")
T = TypeVar("T")

NEXT_ACTION = {
    OrderState.SUCCEEDED: "complete",
    OrderState.ASYNC_PROCESSING: "await_async",
    OrderState.FAILED: "return_failure",
    OrderState.DEAD: "return_failure",
}


class CircuitOpen(AsyncgateError):
    """insurer {insurer!r} is not being called: its circuit is open for another {retry_in_s:.1f} s"""

    def __init__(self, insurer: str, retry_in_s: float):
        self.insurer = insurer
        self.retry_in_s = retry_in_s
        super().__init__(insurer=insurer, retry_in_s=retry_in_s)


class PayloadTooLarge(AsyncgateError):
    """payload is {size} bytes as JSON; the limit is {limit} bytes"""

    def __init__(self, size: int, limit: int):
        self.size = size
        self.limit = limit
        super().__init__(size=size, limit=limit)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def request_hash(insurer: str, operation: str, payload: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of what the order asks for (keys sorted)."""
    body = orjson.dumps({"insurer": insurer, "operation": operation, "payload": payload}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(body).hexdigest()


@dataclass(frozen=True)
class CircuitSkip:
    """A step that made no call: the insurer's circuit is open for another `retry_in_s` seconds."""

    insurer: str
    retry_in_s: float


#: What one step on an order told: a call's result, a query's answer, or a skip (circuit open).
Step = CallResult | QueryResult | CircuitSkip


@dataclass(frozen=True)
class Decision:
    """Where the order goes. `send_now`: a query found no trace of the order, so nothing moves and it is
    sent again at once (the query is recorded, the lease kept)."""

    state: OrderState
    next_attempt_at: dt.datetime | None
    reason: str
    send_now: bool = False


def decide(
    step: Step,
    verdict: Verdict | None,
    *,
    calls_made: int,
    first_failure_at: dt.datetime,
    now: dt.datetime,
    policy: RetryPolicy,
    rng: random.Random,
) -> Decision:
    """Where an order goes after a step: SUCCEEDED, FAILED, ASYNC_PROCESSING (+ when), or DEAD.

    `calls_made` counts this step if it is a call or an unanswered query (which backs off and ends in
    DEAD like a call); due times come from the RetryPolicy (service/retry.py)."""
    if isinstance(step, CircuitSkip):
        due = after_open_circuit(policy, retry_in_s=step.retry_in_s, now=now, rng=rng)
        return Decision(OrderState.ASYNC_PROCESSING, due, "circuit open: not called")
    if isinstance(step, QueryResult):
        if step.completed:
            return Decision(OrderState.SUCCEEDED, None, "insurer reports it completed (query)")
        if step.completed is False:
            return Decision(OrderState.ASYNC_PROCESSING, now, "insurer has no trace of it (query): send again", True)
        when = next_attempt_at(policy, attempts=calls_made, first_failure_at=first_failure_at, now=now, rng=rng)
        if when is None:
            return Decision(OrderState.DEAD, None, "re-execution exhausted (query unanswered)")
        return Decision(OrderState.ASYNC_PROCESSING, when, "query could not tell, asking again later")
    if step.outcome == "success":
        return Decision(OrderState.SUCCEEDED, None, "insurer succeeded")
    unknown = step.outcome == "unknown"
    if verdict is not None and not verdict.async_eligible and not unknown and not verdict.exploration:
        return Decision(OrderState.FAILED, None, f"final failure ({verdict.category or 'uncategorized'})")
    when = next_attempt_at(policy, attempts=calls_made, first_failure_at=first_failure_at, now=now, rng=rng)
    if when is None:
        return Decision(OrderState.DEAD, None, f"re-execution exhausted after {calls_made} calls")
    why = (
        "unknown outcome, query before resending"
        if unknown
        else f"exploration: final ({verdict.category}) kept async to learn its outcome"
        if verdict is not None and verdict.exploration
        else f"async-eligible ({verdict.category if verdict else '?'})"
    )
    return Decision(OrderState.ASYNC_PROCESSING, when, why)


def new_attempt(step: Step, verdict: Verdict | None) -> NewAttempt:
    """The attempt row a step writes."""
    if isinstance(step, CircuitSkip):
        return NewAttempt(
            kind="skip",
            outcome="skipped",
            latency_ms=0.0,
            error_message=f"circuit open: insurer {step.insurer} not called after repeated failures",
            async_eligible=True,
            category="circuit_open",
        )
    if isinstance(step, QueryResult):
        return NewAttempt(
            kind="query",
            outcome=query_outcome(step),
            latency_ms=round(step.latency_ms, 3),
            error_message=step.error_message,
            http_status=step.http_status,
        )
    return NewAttempt(
        kind="call",
        outcome=step.outcome,
        latency_ms=round(step.latency_ms, 3),
        error_code=step.error_code,
        error_message=step.error_message,
        http_status=step.http_status,
        async_eligible=None if verdict is None else verdict.async_eligible,
        probability=None if verdict is None else verdict.probability,
        category=None if verdict is None else verdict.category,
        model_version=None if verdict is None else verdict.model_version,
        explanation=None if verdict is None else verdict.explanation,
        exploration=True if verdict is not None and verdict.exploration else None,
        decided_by=None if verdict is None else verdict.decided_by,
        rule_id=None if verdict is None else verdict.rule_id,
    )


def query_outcome(answer: QueryResult) -> AttemptOutcome:
    return "completed" if answer.completed else "not_found" if answer.completed is False else "unknown"


class OrderProcessor:
    """The service layer between the routers/worker and the store, gateway and model."""

    def __init__(
        self,
        store: OrderStore,
        gateway: InsurerGateway,
        models: ModelHolder,
        policy: RetryPolicy,
        metrics: Metrics,
        *,
        lease_s: float,
        max_payload_bytes: int,
        rng: random.Random | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
        health: InsurerHealth,
        watch: FailureWatch | None = None,
        rules: RuleBook | None = None,
    ):
        self.store = store
        self.gateway = gateway
        self.models = models
        self.policy = policy
        self.metrics = metrics
        self.lease_s = lease_s
        self.max_payload_bytes = max_payload_bytes
        self.rng = rng or random.Random()
        self.clock = clock
        self.watch = watch  # drift, shadow scoring and exploration of first failures (service/learning/watch.py)
        self.rules = rules or RuleBook()  # operators' rules (service/rules.py); none by default
        self.health = health  # the insurers' circuit breakers, owned by the runtime (service/health.py)

    @staticmethod
    def call_failed(call: CallResult, verdict: Verdict | None) -> bool:
        """Does this call count against the insurer's health? No answer, an unknown outcome, or a
        failure classified async-eligible; a business rejection is a healthy insurer answering."""
        if call.outcome == "success":
            return False
        return call.outcome == "unknown" or verdict is None or verdict.async_eligible

    def classify_call(
        self, insurer: str, operation: str, call: CallResult, *, first_failure: bool = False
    ) -> Verdict | None:
        """The verdict on a failed call (None for a success): the serving model's, pinned by an operator's
        rule when one matches (RuleBook.classify, as for /classify); the order's first failure also goes
        to the learning loop's watch, which may mark a model-decided verdict for exploration."""
        if call.outcome == "success":
            return None
        failure = make_failure(
            insurer, operation, call.error_code, call.error_message, call.http_status, call.latency_ms
        )
        model = self.models.current
        verdict = self.rules.classify(model, failure)
        self.metrics.classified(verdict)
        if first_failure and self.watch is not None:
            verdict = self.watch.first_failure(model, failure, verdict, unknown=call.outcome == "unknown", rng=self.rng)
        return verdict

    async def process(self, order_id: str, insurer: str, operation: str, payload: dict[str, Any]) -> OrderRecord:
        """POST /process: reserve the order, make the call, record the outcome; or replay a stored order."""
        self.gateway.insurer(insurer)  # UnknownInsurer before anything is written
        size = len(orjson.dumps(payload))
        if size > self.max_payload_bytes:
            raise PayloadTooLarge(size, self.max_payload_bytes)
        digest = request_hash(insurer, operation, payload)
        now = self.clock()
        order, created = await self.store.run_async(
            steps.reserve,
            order_id,
            insurer,
            operation,
            payload,
            digest,
            lease_owner=f"api:{secrets.token_hex(8)}",
            lease_s=self.lease_s,
            now=now,
        )
        if not created:
            self.metrics.replays.inc()
            stored = await self.store.run_async(steps.get, order_id)
            return stored or order
        try:
            if not self.health.allow(insurer):
                self.metrics.short_circuited.labels(insurer=insurer, actor="api").inc()
                return await self._settle(order, CircuitSkip(insurer, self.health.retry_in(insurer)), actor="api")
            return await self._call(order, actor="api")
        except LeaseLost:
            # the call outlived the lease and a worker took the order over: report where it stands
            stored = await self.store.run_async(steps.get, order_id)
            return stored or order

    async def reexecute(self, order: OrderRecord, *, actor: str) -> OrderRecord:
        """The worker's step for one claimed order: query first when the last outcome is unknown.

        CircuitOpen (nothing done) when the insurer's circuit breaker lets no call through now."""
        if not self.health.allow(order.insurer):
            self.metrics.short_circuited.labels(insurer=order.insurer, actor="worker").inc()
            raise CircuitOpen(order.insurer, self.health.retry_in(order.insurer))
        # query first when the last call's outcome is unknown, or when nothing was recorded (a call may
        # have been in flight); never for an order only ever skipped ("not_sent") or answered definitely
        if order.last_outcome in (None, "unknown"):
            answer = await self.gateway.query(order.insurer, order.order_id, order.operation)
            self.metrics.query(order.insurer, query_outcome(answer))
            self.health.record(order.insurer, failed=answer.completed is None)
            settled = await self._settle(order, answer, actor=actor)
            if settled is not None:
                return settled
        return await self._call(order, actor=actor)

    async def _call(self, order: OrderRecord, *, actor: str) -> OrderRecord:
        call = await self.gateway.call(order.insurer, order.order_id, order.operation, order.payload)
        self.metrics.insurer_call(order.insurer, call.outcome, call.latency_ms)
        verdict = self.classify_call(order.insurer, order.operation, call, first_failure=order.first_failure_at is None)
        self.health.record(order.insurer, failed=self.call_failed(call, verdict))
        return await self._settle(order, call, actor=actor, verdict=verdict)

    @overload
    async def _settle(
        self, order: OrderRecord, step: CallResult | CircuitSkip, *, actor: str, verdict: Verdict | None = None
    ) -> OrderRecord: ...

    @overload
    async def _settle(
        self, order: OrderRecord, step: QueryResult, *, actor: str, verdict: Verdict | None = None
    ) -> OrderRecord | None: ...

    async def _settle(
        self, order: OrderRecord, step: Step, *, actor: str, verdict: Verdict | None = None
    ) -> OrderRecord | None:
        """The one recording tail: decide where the order goes, write the attempt and the move, log, count.

        None when the decision is to send again now (a query found no trace): the query is recorded
        and the lease kept for the call that follows."""
        now = self.clock()
        decision = decide(
            step,
            verdict,
            calls_made=order.attempts + 1,
            first_failure_at=order.first_failure_at or now,
            now=now,
            policy=self.policy,
            rng=self.rng,
        )
        attempt = new_attempt(step, verdict)
        lease_owner = order.lease_owner or actor
        if decision.send_now:
            await self.store.run_async(
                steps.record_query, order.pk, attempt, lease_owner=lease_owner, actor=actor, now=now
            )
            return None
        success = attempt.outcome in ("success", "completed")
        recorded = await self.store.run_async(
            steps.record_attempt,
            order.pk,
            attempt,
            new_state=decision.state,
            next_attempt_at=decision.next_attempt_at,
            lease_owner=lease_owner,
            reason=decision.reason,
            actor=actor,
            result=step.data if success and not isinstance(step, CircuitSkip) else None,
            now=now,
            # a call counts, and so does an unanswered query; a skip or a query that settles it does not
            count_call=attempt.kind == "call" or attempt.outcome == "unknown",
            # the returned log holds this step's attempt only (no read): what /process's answer shows
            full_log=False,
            held=order,  # the order as leased to us: its event is built from it (docs/contract.md §8)
        )
        log.info(
            "order %s → %s (%s)",
            order.order_id,
            decision.state.value,
            decision.reason,
            extra={
                "order_id": order.order_id,
                "insurer": order.insurer,
                "state": decision.state.value,
                "step": attempt.kind,
                "outcome": attempt.outcome,
                "category": attempt.category,
                "actor": actor,
            },
        )
        self.metrics.transition(decision.state.value, actor)
        return recorded
