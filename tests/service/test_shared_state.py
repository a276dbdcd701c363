"""Shared insurer state (docs/architecture.md, "Shared insurer state"): several processes' InsurerHealth
and retry budgets on one database see one figure, a dead process's counts expire with the window, the
fleet never takes more than its budget, and an unreachable database falls back to the local view.

Each test runs on SQLite (one file) and PostgreSQL (own schema); "processes" are separate objects
with their own engine, as separate processes would have.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest
import sqlalchemy as sa

from service.breaker import BreakerPolicy, BreakerState
from service.budget import SharedRetryBudget
from service.health import InsurerHealth
from service.metrics import Metrics
from service.store import StoreUnavailable, create_db_engine, migrate, steps
from service.store.insurer_state import CircuitClose, CircuitRow, CircuitTrip, InsurerStateStore, Traffic
from service.throttle import ThrottlePolicy

POLICY = ThrottlePolicy(accept_multiplier=2.0, window_s=120.0, buckets=24, min_requests=20)
T0 = 1_800_000_000.0  # a wall-clock time, whole bucket


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state/asyncgate.db"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def stores(db_url: str) -> Iterator[Callable[[], InsurerStateStore]]:
    """Factory: one InsurerStateStore on its own engine per call (one per simulated process)."""
    engines: list[sa.Engine] = []

    def make() -> InsurerStateStore:
        engine = create_db_engine(db_url)
        if not engines:
            migrate(engine)
        engines.append(engine)
        return InsurerStateStore(engine)

    yield make
    for engine in engines:
        engine.dispose()


def health(wall: Clock, mono: Clock, *, first_calls: bool = False) -> InsurerHealth:
    return InsurerHealth(
        None, Metrics(), guard="adaptive", throttle=POLICY, clock=mono, wall=wall, first_calls=first_calls
    )


class DownStore(InsurerStateStore):
    """A store whose database never answers."""

    def __init__(self) -> None:
        pass

    def push_traffic(self, *args: Any, **kwargs: Any) -> dict[str, Traffic]:
        raise StoreUnavailable("connection refused")

    def push_circuit(self, *args: Any, **kwargs: Any) -> dict[str, CircuitRow]:
        raise StoreUnavailable("connection refused")

    def take_tokens(self, *args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailable("connection refused")

    def budgets(self) -> Any:
        raise StoreUnavailable("connection refused")


# -- the store -------------------------------------------------------------------------------------


def test_pushes_add_up_and_old_buckets_leave_the_window(stores: Callable[[], InsurerStateStore]) -> None:
    a, b = stores(), stores()
    a.push_traffic({("acme", 100): Traffic(3, 1, 2), ("beta", 100): Traffic(1, 1, 0)}, since=0)
    totals = b.push_traffic({("acme", 100): Traffic(4, 4, 0), ("acme", 105): Traffic(2, 0, 0)}, since=0)
    assert totals == {"acme": Traffic(9, 5, 2), "beta": Traffic(1, 1, 0)}
    assert a.push_traffic({}, since=105) == {"acme": Traffic(2, 0, 0)}, "buckets before `since` are not counted"
    a.push_traffic({}, since=0, prune_before=105)
    assert b.push_traffic({}, since=0) == {"acme": Traffic(2, 0, 0)}, "pruned buckets are gone"


def test_tokens_refill_at_the_rate_up_to_the_burst(stores: Callable[[], InsurerStateStore]) -> None:
    a, b = stores(), stores()
    first = a.take_tokens("acme", want=8, rate_per_s=2.0, burst=5, now=T0)
    assert (first.granted, first.tokens_left) == (5, 0.0), "a new bucket starts full"
    assert b.take_tokens("acme", want=3, rate_per_s=2.0, burst=5, now=T0 + 1.0).granted == 2, "one bucket for both"
    later = a.take_tokens("acme", want=0, give_back=1, rate_per_s=2.0, burst=5, now=T0 + 100.0)
    assert later.tokens_left == 5.0, "saved tokens cap at the burst, returned ones included"
    assert later.granted_total == 5 + 2 - 1
    empty = b.take_tokens("acme", want=9, rate_per_s=2.0, burst=5, now=T0 + 100.0)
    assert empty.granted == 5 and empty.wait_s == pytest.approx(0.5)


def test_concurrent_takers_never_exceed_burst_plus_rate_times_time(stores: Callable[[], InsurerStateStore]) -> None:
    """Four threads (each its own engine, as four processes) take as fast as they can for a second."""
    takers = [stores() for _ in range(4)]
    rate, burst = 40.0, 5
    taken = [0] * len(takers)
    start = time.time()
    stop_at = start + 1.0

    def take(i: int) -> None:
        while time.time() < stop_at:
            taken[i] += takers[i].take_tokens("acme", want=3, rate_per_s=rate, burst=burst, now=time.time()).granted

    threads = [threading.Thread(target=take, args=(i,)) for i in range(len(takers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.time() - start
    assert sum(taken) <= burst + rate * elapsed + 1e-6
    assert sum(taken) >= burst + rate * 0.5, "the takers got the budget (not starved by lock errors)"
    assert takers[0].budgets()["acme"].granted == sum(taken)


# -- InsurerHealth ---------------------------------------------------------------------------------


def test_two_processes_decide_on_one_figure(stores: Callable[[], InsurerStateStore]) -> None:
    wall, mono = Clock(T0), Clock(10.0)
    api, worker = health(wall, mono, first_calls=True), health(wall, mono)
    for _ in range(30):
        api.record("acme", failed=True)
    for _ in range(10):
        worker.record("acme", failed=False)
    assert worker.reject_probability("acme") == 0.0, "alone, the worker sees a healthy insurer"
    store_a, store_b = stores(), stores()

    async def sync() -> None:
        assert await api.sync(store_a)
        assert await worker.sync(store_b)
        assert await api.sync(store_a)

    anyio.run(sync)
    expected = (40 - 2 * 10) / 41
    for h in (api, worker):
        figure = h.figure("acme")
        assert figure.shared
        assert (figure.requests, figure.accepts, figure.first_calls) == (40, 10, 30)
        assert figure.reject_probability == pytest.approx(expected)
    assert worker.figure("acme").local_requests == 10
    assert worker.first_call_rate("acme") == pytest.approx(30 / POLICY.window_s)
    worker.record("acme", failed=True)  # counted locally until the next sync, and seen at once
    assert worker.figure("acme").requests == 41


def test_an_insurer_only_others_called_is_known_after_a_sync(stores: Callable[[], InsurerStateStore]) -> None:
    wall, mono = Clock(T0), Clock(10.0)
    a, b = health(wall, mono), health(wall, mono)
    for _ in range(150):  # p = 150/151 >= BLOCK_AT
        a.record("acme", failed=True)
    store_a, store_b = stores(), stores()

    async def sync() -> None:
        await a.sync(store_a)
        await b.sync(store_b)

    anyio.run(sync)
    assert b.blocked() == {"acme"}, "the worker claims none of a dead insurer's orders anywhere"


def test_a_dead_process_share_expires_with_the_window(stores: Callable[[], InsurerStateStore]) -> None:
    wall, mono = Clock(T0), Clock(10.0)
    dead, alive = health(wall, mono), health(wall, mono)
    for _ in range(50):
        dead.record("acme", failed=True)
    store_a, store_b = stores(), stores()
    anyio.run(dead.sync, store_a)  # then the process is SIGKILLed: it never syncs again
    anyio.run(alive.sync, store_b)
    assert alive.figure("acme").requests == 50 and alive.state("acme").value == "open"
    wall.now += POLICY.window_s / 2
    anyio.run(alive.sync, store_b)
    assert alive.figure("acme").requests == 50, "within the window the dead process's calls still count"
    wall.now += POLICY.window_s / 2 + POLICY.window_s / POLICY.buckets
    mono.now += POLICY.window_s + 10
    anyio.run(alive.sync, store_b)
    assert alive.figure("acme").requests == 0
    assert alive.reject_probability("acme") == 0.0 and alive.state("acme").value == "closed"


def test_database_down_keeps_the_fleet_figure_then_falls_back_to_the_local_view(
    stores: Callable[[], InsurerStateStore], caplog: pytest.LogCaptureFixture
) -> None:
    wall, mono = Clock(T0), Clock(10.0)
    other, h = health(wall, mono), health(wall, mono)
    for _ in range(30):
        other.record("acme", failed=True)
    anyio.run(other.sync, stores())
    anyio.run(h.sync, stores())
    assert h.figure("acme").requests == 30
    h.record("acme", failed=False)
    down = DownStore()
    with caplog.at_level(logging.WARNING, logger="asyncgate.health"):
        assert anyio.run(h.sync, down) is False
    assert "unreachable" in caplog.text
    assert h.figure("acme").shared and h.figure("acme").requests == 31, "kept within the stale limit"
    mono.now += h.stale_s + 1
    anyio.run(h.sync, down)
    figure = h.figure("acme")
    assert not figure.shared and (figure.requests, figure.accepts) == (1, 1), "this process's own window"
    assert h.allow("acme"), "orders are never blocked because the sync failed"
    anyio.run(h.sync, stores())
    assert h.figure("acme").shared and h.figure("acme").requests == 31, "the unsynced count arrived later"


# -- the on/off breaker (guard "breaker") ----------------------------------------------------------

BREAKER = BreakerPolicy(window=10, failures=5, cooldown_s=30.0, probes=1)


def breaker_health(wall: Clock, mono: Clock) -> InsurerHealth:
    return InsurerHealth(BREAKER, Metrics(), guard="breaker", clock=mono, wall=wall)


def trip(h: InsurerHealth, insurer: str = "acme") -> None:
    for _ in range(BREAKER.failures):
        assert h.allow(insurer)
        h.record(insurer, failed=True)
    assert h.state(insurer) is BreakerState.OPEN


def test_circuit_rows_keep_the_longest_trip_and_a_close_ends_only_earlier_trips(
    stores: Callable[[], InsurerStateStore],
) -> None:
    a, b = stores(), stores()
    a.push_circuit([CircuitTrip("acme", T0, T0 + 30, "5 of the last 10 calls failed")], [])
    rows = b.push_circuit([CircuitTrip("acme", T0 - 5, T0 + 25, "older and shorter")], [])
    assert rows["acme"] == CircuitRow("acme", T0, T0 + 30, None, "5 of the last 10 calls failed"), "the longer trip"
    rows = b.push_circuit([], [CircuitClose("acme", T0 - 1)])
    assert rows["acme"].closed_at is None, "a probe before the trip does not end it"
    rows = b.push_circuit([], [CircuitClose("acme", T0 + 12)])
    assert (rows["acme"].open_until, rows["acme"].closed_at) == (T0 + 12, T0 + 12)
    rows = a.push_circuit([], [CircuitClose("acme", T0 + 11)])
    assert (rows["acme"].open_until, rows["acme"].closed_at) == (T0 + 12, T0 + 12), "the first close stays"
    rows = a.push_circuit([], [CircuitClose("acme", T0 + 50)])
    assert (rows["acme"].open_until, rows["acme"].closed_at) == (T0 + 12, T0 + 50), "a later one, its time"
    rows = a.push_circuit([CircuitTrip("acme", T0 + 60, T0 + 90, "a probe failed")], [CircuitClose("acme", T0 + 55)])
    assert rows["acme"] == CircuitRow("acme", T0 + 60, T0 + 90, None, "a probe failed"), "whatever the lists' order"
    assert set(rows) == {"acme"}


def test_a_trip_that_arrives_after_the_probe_that_ended_it_reopens_nothing(
    stores: Callable[[], InsurerStateStore],
) -> None:
    """Process A trips at T; C's probe succeeds at T+10 and C syncs first; A's trip arrives after (its
    sync was later, or the database was down for it): the circuit stays closed for everyone."""
    a, c = stores(), stores()
    a.push_circuit([CircuitTrip("acme", T0 - 30, T0, "an old trip")], [])
    c.push_circuit([], [CircuitClose("acme", T0 + 10)])
    rows = a.push_circuit([CircuitTrip("acme", T0 + 5, T0 + 35, "5 of the last 10 calls failed")], [])
    assert (rows["acme"].opened_at, rows["acme"].closed_at) == (T0 - 30, T0 + 10), "the close stands"
    rows = a.push_circuit([CircuitTrip("acme", T0 + 11, T0 + 41, "a probe failed")], [])
    assert (rows["acme"].opened_at, rows["acme"].open_until, rows["acme"].closed_at) == (T0 + 11, T0 + 41, None)


def test_a_trip_in_one_process_opens_every_process_until_the_same_time(
    stores: Callable[[], InsurerStateStore],
) -> None:
    wall, mono = Clock(T0), Clock(10.0)
    a, b = breaker_health(wall, mono), breaker_health(wall, mono)
    store_a, store_b = stores(), stores()
    anyio.run(b.sync, store_b)
    assert b.allow("acme")
    trip(a)
    wall.now += 0.5
    mono.now += 0.5
    anyio.run(a.sync, store_a)
    anyio.run(b.sync, store_b)
    assert b.state("acme") is BreakerState.OPEN and not b.allow("acme"), "b never called the insurer, yet stops"
    assert b.retry_in("acme") == pytest.approx(BREAKER.cooldown_s - 0.5)
    assert b.blocked() == {"acme"}, "its worker claims none of the insurer's orders"
    assert a.retry_in("acme") == pytest.approx(BREAKER.cooldown_s - 0.5), "a's own trip read back changes nothing"
    wall.now += BREAKER.cooldown_s
    mono.now += BREAKER.cooldown_s
    assert a.state("acme") is BreakerState.HALF_OPEN and b.state("acme") is BreakerState.HALF_OPEN


def test_one_successful_probe_closes_every_process_and_a_failed_one_opens_them_all_again(
    stores: Callable[[], InsurerStateStore],
) -> None:
    wall, mono = Clock(T0), Clock(10.0)
    a, b, c = breaker_health(wall, mono), breaker_health(wall, mono), breaker_health(wall, mono)
    store_a, store_b, store_c = stores(), stores(), stores()

    def sync_all() -> None:  # two periods: a process hears of a change at its first sync after the writer's
        for _ in range(2):
            for h, store in ((a, store_a), (b, store_b), (c, store_c)):
                assert anyio.run(h.sync, store)

    trip(a)
    sync_all()
    wall.now += BREAKER.cooldown_s + 1
    mono.now += BREAKER.cooldown_s + 1
    assert b.allow("acme"), "b probes"
    b.record("acme", failed=True)  # the insurer is still down: b opens again, and with it everyone
    sync_all()
    for h in (a, b, c):
        assert not h.allow("acme") and h.retry_in("acme") == pytest.approx(BREAKER.cooldown_s)
    wall.now += BREAKER.cooldown_s + 1
    mono.now += BREAKER.cooldown_s + 1
    assert c.allow("acme")
    c.record("acme", failed=False)
    assert c.state("acme") is BreakerState.CLOSED
    sync_all()
    for h in (a, b):
        assert h.state("acme") is BreakerState.CLOSED, "closed by c's probe, without a probe of their own"
        assert h.allow("acme") and h.allow("acme"), "closed: every call goes through"


def test_a_trip_the_database_did_not_take_is_written_by_the_next_sync(stores: Callable[[], InsurerStateStore]) -> None:
    wall, mono = Clock(T0), Clock(10.0)
    a, b = breaker_health(wall, mono), breaker_health(wall, mono)
    trip(a)
    assert anyio.run(a.sync, DownStore()) is False
    anyio.run(a.sync, stores())
    anyio.run(b.sync, stores())
    assert b.state("acme") is BreakerState.OPEN


# -- the fleet's retry budget ----------------------------------------------------------------------


def test_two_budgets_on_one_database_share_one_bucket(stores: Callable[[], InsurerStateStore]) -> None:
    rate, burst = 20.0, 4
    budgets = [SharedRetryBudget(rate, burst, share=0.0, first_call_rate=lambda _: 0.0, period_s=0.2) for _ in range(2)]
    used = [0, 0]

    async def main() -> float:
        async with anyio.create_task_group() as tasks:
            for budget in budgets:
                tasks.start_soon(budget.run, stores())
            start = time.monotonic()

            async def spend(i: int) -> None:
                while time.monotonic() - start < 1.5:
                    if await budgets[i].acquire("acme", max_wait_s=0.3):
                        used[i] += 1

            async with anyio.create_task_group() as spenders:
                for i in range(2):
                    for _ in range(8):  # eight orders waiting at once in each process
                        spenders.start_soon(spend, i)
            elapsed = time.monotonic() - start
            tasks.cancel_scope.cancel()
        return elapsed

    elapsed = anyio.run(main)
    assert sum(used) <= burst + rate * elapsed + 1e-6, (used, elapsed)
    assert min(used) > 0, "both processes got tokens"
    assert sum(used) >= rate * 1.0, "the budget is used, not lost between processes"
    assert all(not b.local for b in budgets)
    figures = [b.figures()["acme"] for b in budgets]
    assert all(f.shared and f.rate_per_s == rate for f in figures)


def test_budget_rate_is_a_share_of_first_calls_with_a_floor() -> None:
    rates = {"busy": 500.0, "quiet": 3.0}
    budget = SharedRetryBudget(10.0, 5, share=0.1, first_call_rate=rates.__getitem__)
    assert budget.rate_for("busy") == pytest.approx(50.0)
    assert budget.rate_for("quiet") == 10.0


def test_budget_falls_back_to_its_own_bucket_when_the_database_is_down(caplog: pytest.LogCaptureFixture) -> None:
    budget = SharedRetryBudget(50.0, 3, share=0.0, first_call_rate=lambda _: 0.0, period_s=0.05)

    async def main() -> list[bool]:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(budget.run, DownStore())
            with anyio.fail_after(5):
                while not budget.local:
                    await anyio.sleep(0.01)
            got = [await budget.acquire("acme", max_wait_s=0.0) for _ in range(4)]
            tasks.cancel_scope.cancel()
        return got

    with caplog.at_level(logging.WARNING, logger="asyncgate.budget"):
        got = anyio.run(main)
    assert got == [True, True, True, False], "the local bucket at the floor rate: burst, then wait"
    assert "unreachable" in caplog.text
    assert not budget.figures()["acme"].shared


# -- two serve processes: /metrics and the console show one figure ---------------------------------


def _fleet_requests(metrics: str) -> float | None:
    for line in metrics.splitlines():
        if line.startswith('asyncgate_insurer_fleet_requests{insurer="acme",scope="fleet"}'):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_two_services_show_one_fleet_figure_in_metrics_and_console(
    db_url: str, start_service: Callable[..., Any]
) -> None:
    """(db_url first: the services stop before its schema is dropped.)"""
    from tests.service.conftest import busy

    one = start_service(db_url=db_url, shared_sync_s=0.1)
    two = start_service(db_url=db_url, shared_sync_s=0.1)
    for n in range(5):
        one.insurer.script(f"busy-{n}", busy())
        assert one.process(f"busy-{n}").json()["state"] == "ASYNC_PROCESSING"
    for n in range(3):
        assert two.process(f"ok-{n}").json()["state"] == "SUCCEEDED"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        seen = [_fleet_requests(s.client.get("/metrics").text) for s in (one, two)]
        if seen == [8.0, 8.0]:
            break
        time.sleep(0.1)
    assert seen == [8.0, 8.0], "both processes report the fleet's 8 calls, not their own 5 and 3"
    text = two.client.get("/metrics").text
    assert 'asyncgate_insurer_fleet_accepts{insurer="acme",scope="fleet"} 3.0' in text
    assert 'asyncgate_insurer_fleet_first_call_rate{insurer="acme",scope="fleet"}' in text
    html = two.client.get("/console/").text
    assert 'data-scope="fleet">3 of 8' in html and "all processes" in html


# -- the worker's side -----------------------------------------------------------------------------


def test_a_refused_reexecution_gives_its_token_back_and_is_requeued_due_now() -> None:
    """The throttle refuses the call: the budget token goes to the next order and the order goes back
    due now (behind the orders that came due meanwhile), not with its old due time."""
    import datetime as dt
    from types import SimpleNamespace

    from service.budget import RetryBudget
    from service.processing import CircuitOpen
    from service.worker import Worker

    class Refusing:
        async def reexecute(self, order: Any, *, actor: str) -> Any:
            raise CircuitOpen(order.insurer, 1.0)

    class Store:
        def __init__(self) -> None:
            self.released: list[tuple[int, dt.datetime | None]] = []

        def release(self, pk: int, owner: str, *, next_attempt_at: dt.datetime | None = None) -> bool:
            self.released.append((pk, next_attempt_at))
            return True

        async def run_async(self, body: Any, *args: Any, **kwargs: Any) -> Any:
            assert body is steps.release, f"the worker only releases here, not {body}"
            return self.release(*args, **kwargs)

    store = Store()
    budget = RetryBudget(0.001, 1)  # one token, next in 1,000 s
    metrics = Metrics()
    worker = Worker(Refusing(), store, health=health(Clock(T0), Clock(1.0)), metrics=metrics, budget=budget)  # type: ignore[arg-type]
    old_due = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    orders = [SimpleNamespace(pk=n, insurer="acme", order_id=f"o{n}", next_attempt_at=old_due) for n in (1, 2)]

    async def main() -> None:
        limiter = anyio.Semaphore(4)
        for order in orders:
            await worker._handle(order, limiter, anyio.Event())  # type: ignore[arg-type]

    before = dt.datetime.now(dt.UTC)
    anyio.run(main)
    assert [pk for pk, _ in store.released] == [1, 2], "the second order got the first one's token back"
    assert all(due is not None and due >= before for _, due in store.released), "requeued due now"
    assert worker.stats.deferred == 2
