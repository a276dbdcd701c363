"""The circuit breaker: its state machine on a driven clock, and /process and the worker behind it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import anyio
import pytest

from service.breaker import BreakerPolicy, Breakers, BreakerState, CircuitBreaker
from service.gateway import InsurerGateway
from service.health import InsurerHealth
from service.metrics import Metrics
from service.processing import OrderProcessor
from service.runtime import retry_policy
from service.scoring import ModelHolder, ServingModel
from service.store import OrderStore, create_db_engine
from service.worker import Worker, WorkerStats
from tests.service.conftest import BUSY_MESSAGE, Service, busy, final, registry, success


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


POLICY = BreakerPolicy(window=5, failures=3, cooldown_s=10.0, probes=1)


def test_opens_after_threshold_of_recent_failures() -> None:
    breaker = CircuitBreaker(POLICY, clock=Clock())
    for failed in (True, False, True):
        assert breaker.allow()[0]
        assert breaker.record(failed) is None
    assert breaker.state is BreakerState.CLOSED
    assert breaker.record(True) == (BreakerState.OPEN, "3 of the last 4 calls failed")
    assert breaker.allow() == (False, None)


def test_old_failures_slide_out_of_the_window() -> None:
    breaker = CircuitBreaker(POLICY, clock=Clock())
    for failed in (True, True, False, False, False, False, True):  # the first two are pushed out
        breaker.record(failed)
    assert breaker.state is BreakerState.CLOSED


def test_half_open_lets_one_probe_through_and_closes_on_success() -> None:
    clock = Clock()
    breaker = CircuitBreaker(POLICY, clock=clock)
    for _ in range(3):
        breaker.record(True)
    clock.now += 9.9
    assert not breaker.allow()[0]
    assert breaker.retry_in() == pytest.approx(0.1)
    clock.now += 0.1
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow() == (True, "cooldown of 10 s over: probing")
    assert not breaker.allow()[0], "one probe at a time"
    assert breaker.record(False) == (BreakerState.CLOSED, "a probe succeeded")
    assert breaker.allow() == (True, None)
    breaker.record(True)
    breaker.record(True)
    assert breaker.state.value == "closed", "closing starts an empty window"


def test_failed_probe_opens_again_for_a_full_cooldown() -> None:
    clock = Clock()
    breaker = CircuitBreaker(POLICY, clock=clock)
    for _ in range(3):
        breaker.record(True)
    clock.now += 10
    assert breaker.allow()[0]
    assert breaker.record(True) == (BreakerState.OPEN, "a probe failed")
    clock.now += 5
    assert not breaker.allow()[0]
    assert breaker.retry_in() == pytest.approx(5.0)


def test_a_lost_probe_frees_its_slot_after_a_cooldown() -> None:
    clock = Clock()
    breaker = CircuitBreaker(POLICY, clock=clock)
    for _ in range(3):
        breaker.record(True)
    clock.now += 10
    assert breaker.allow()[0]  # its caller dies: no record
    clock.now += 10
    assert breaker.allow()[0]


def test_disabled_breaker_never_opens() -> None:
    breaker = CircuitBreaker(BreakerPolicy(failures=0), clock=Clock())
    for _ in range(50):
        breaker.record(True)
    assert breaker.allow() == (True, None)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"window": 0}, "window"),
        ({"window": 5, "failures": 6}, "failures"),
        ({"cooldown_s": 0}, "cooldown"),
        ({"probes": 0}, "probes"),
    ],
)
def test_policy_refuses_nonsense(fields: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BreakerPolicy(**fields)  # type: ignore[arg-type]


def test_breakers_are_per_insurer_and_report_changes() -> None:
    changes: list[tuple[str, str, str]] = []
    clock = Clock()
    breakers = Breakers(POLICY, clock=clock, on_change=lambda i, a, b, why: changes.append((i, a.value, b.value)))
    for _ in range(3):
        breakers.record("acme", failed=True)
    assert breakers.blocked() == {"acme"}
    assert breakers.allow("beta")
    clock.now += 10
    assert breakers.blocked() == set()
    assert breakers.allow("acme")
    breakers.record("acme", failed=False)
    assert changes == [("acme", "closed", "open"), ("acme", "open", "half_open"), ("acme", "half_open", "closed")]


# -- behind /process and the worker --------------------------------------------------------------

# The service's breakers run on the real monotonic clock (create_app takes no clock), so these tests use
# margins that load cannot break. An open circuit must stay open while a test looks at it: a cooldown
# longer than the test's own time limit (300 s) cannot run out under it, however slow the machine is
# (with 0.3 s, a loaded machine let the cooldown pass before the short-circuited order was sent).
# The probe test must see the cooldown over: sleeping past it only needs a lower bound on elapsed
# time, which a slow machine can only make longer. The state machine itself is tested on a driven clock above.
BREAKER = {
    "insurer_guard": "breaker",
    "breaker_window": 4,
    "breaker_failures": 3,
    "breaker_cooldown_s": 600.0,
    "retry_base_s": 0.001,
}
SHORT_COOLDOWN_S = 0.3


def _circuit_gauge(service: Service) -> str:
    lines: list[str] = service.client.get("/metrics").text.splitlines()
    return next(line for line in lines if line.startswith('asyncgate_insurer_circuit_state{insurer="acme"}'))


def test_open_circuit_records_async_at_once_without_calling(
    start_service: Callable[..., Service], caplog: pytest.LogCaptureFixture
) -> None:
    service = start_service(**BREAKER, retry_max_s=0.002)
    for n in range(3):
        service.insurer.script(f"B-{n}", busy())
        assert service.process(f"B-{n}").json()["state"] == "ASYNC_PROCESSING"
    assert len(service.insurer.calls()) == 3
    assert _circuit_gauge(service).endswith(" 2.0")
    assert any("circuit for insurer acme: closed → open" in r.getMessage() for r in caplog.records)

    answer = service.process("SKIPPED-1").json()
    assert (answer["state"], answer["next_action"], answer["attempts"]) == ("ASYNC_PROCESSING", "await_async", 0)
    assert answer["failure"]["outcome"] == "skipped"
    assert answer["failure"]["category"] == "circuit_open"
    assert service.insurer.calls("SKIPPED-1") == [], "the insurer is spared"
    order = service.order("SKIPPED-1")
    assert [a["kind"] for a in order["attempts"]] == ["skip"]
    assert (
        'asyncgate_insurer_short_circuited_total{actor="api",insurer="acme"} 1.0' in service.client.get("/metrics").text
    )
    # a business rejection is a healthy insurer: it is not what keeps the circuit open
    service.insurer.script("FINAL-1", final())
    assert service.process("FINAL-1").json()["attempts"] == 0


def test_an_order_only_ever_skipped_is_sent_without_a_query(
    start_service: Callable[..., Service], serving_model: ServingModel
) -> None:
    """The insurer never saw an order whose only step was a skip: re-executing it needs no query."""
    from tests.service.conftest import run_worker

    service = start_service(**BREAKER, retry_max_s=0.002)
    for n in range(3):
        service.insurer.script(f"B-{n}", busy())
        service.process(f"B-{n}")
    service.insurer.script("SKIPPED-2", success({"policy_no": "P-S2"}))
    assert service.process("SKIPPED-2").json()["failure"]["outcome"] == "skipped"
    assert service.order("SKIPPED-2")["last_outcome"] == "not_sent"
    import sqlalchemy as sa

    from service.store.tables import orders

    engine = create_db_engine(service.settings.resolved_db_url)
    with engine.begin() as conn:  # the cooldown has passed: the order is due
        due = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        conn.execute(sa.update(orders).where(orders.c.order_id == "SKIPPED-2").values(next_attempt_at=due))
    engine.dispose()
    run_worker(service, serving_model)  # a worker whose own circuit is closed
    order = service.order("SKIPPED-2")
    assert order["state"] == "SUCCEEDED"
    assert [a["kind"] for a in order["attempts"]] == ["skip", "call"]
    assert service.insurer.queries("SKIPPED-2") == [], "no needless query to a struggling insurer"


def test_half_open_probe_closes_the_circuit(start_service: Callable[..., Service]) -> None:
    import time

    service = start_service(**{**BREAKER, "breaker_cooldown_s": SHORT_COOLDOWN_S}, retry_max_s=0.002)
    for n in range(3):
        service.insurer.script(f"B-{n}", busy())
        service.process(f"B-{n}")
    assert _circuit_gauge(service).endswith(" 2.0"), "open (the gauge changes only with the state machine)"
    time.sleep(SHORT_COOLDOWN_S + 0.05)  # at least the cooldown has passed since the circuit opened
    probe = service.process("PROBE-1").json()
    assert (probe["state"], probe["attempts"]) == ("SUCCEEDED", 1)
    assert _circuit_gauge(service).endswith(" 0.0")
    assert service.process("AFTER-1").json()["state"] == "SUCCEEDED"


def test_worker_leaves_orders_of_an_open_circuit_in_place(
    start_service: Callable[..., Service], serving_model: ServingModel
) -> None:
    service = start_service(retry_max_s=0.002, retry_base_s=0.001)
    for n in range(3):
        service.insurer.script(f"W-{n}", busy(), success())
        assert service.process(f"W-{n}").json()["failure"]["error_message"] == BUSY_MESSAGE
        service.wait_until_due(f"W-{n}")
    calls_before = len(service.insurer.calls())

    async def main() -> tuple[WorkerStats, int, WorkerStats]:
        engine = create_db_engine(service.settings.resolved_db_url)
        try:
            store = OrderStore(engine)
            async with service.insurer.http_client() as http:
                clock = Clock()
                metrics = Metrics()
                health = InsurerHealth(POLICY, metrics, clock=clock)
                processor = OrderProcessor(
                    store,
                    InsurerGateway(registry(), http),
                    ModelHolder(serving_model),
                    retry_policy(service.settings),
                    metrics,
                    lease_s=30.0,
                    max_payload_bytes=65536,
                    health=health,
                )
                for _ in range(3):
                    health.record("acme", failed=True)
                parts = {"health": health, "metrics": metrics, "lease_s": 30.0, "poll_s": 0.01}
                held = await Worker(processor, store, worker_id="worker:a", **parts).run(once=True)
                calls_held = len(service.insurer.calls())
                clock.now += POLICY.cooldown_s  # half-open: one probe, it succeeds, the circuit closes
                done = await Worker(processor, store, worker_id="worker:b", **parts).run(once=True)
                return held, calls_held, done
        finally:
            engine.dispose()

    held, calls_held, done = anyio.run(main)
    assert (held.claimed, held.finished) == (0, 0), "an open circuit's orders are not even claimed"
    assert calls_held == calls_before
    assert (done.claimed, done.finished, done.errors) == (3, 3, 0)
    assert {service.order(f"W-{n}")["state"] for n in range(3)} == {"SUCCEEDED"}
