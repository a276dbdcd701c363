"""Fault injection on the re-execution worker, with real processes on PostgreSQL and the real simulator:
a worker SIGKILLed mid-batch, a worker stopped with SIGTERM under load, and the retry budget draining
a backlog. The simulator's ledger proves each order completed exactly once at the insurer.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import CLEAN_EXIT, Simulator
from tests.integration.faults import (
    FAST_RETRY,
    common_args,
    completions,
    fault_model_dir,
    insurers_file,
    order_body,
    serve,
    start_worker,
    states,
    wait_for,
    wait_settled,
)

__all__ = ["fault_model_dir"]  # the fixture, imported for pytest

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


def _create(http: httpx.Client, bodies: list[dict[str, object]]) -> list[dict[str, object]]:
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda body: http.post("/process", json=body), bodies))
    for answer in answers:
        assert answer.status_code == 200, answer.text
    return [a.json() for a in answers]


def test_sigkilled_worker_orders_are_taken_over_and_completed_once(
    tmp_path: Path, simulator: Callable[..., Simulator], pg_url: str, fault_model_dir: Path
) -> None:
    """Worker A claims 24 due orders and is killed while 8 of its calls hang at the insurer (which has
    completed them); worker B takes all 24 over once A's 3 s leases run out. Every order ends
    SUCCEEDED and the insurer completed each exactly once."""
    sim = simulator(scenario="fast", seed=1)
    slow = insurers_file(tmp_path, sim.url, timeout_s=30.0, name="slow.toml")  # A waits for the hanging calls
    quick = insurers_file(tmp_path, sim.url, timeout_s=1.0, name="quick.toml")
    env = {**FAST_RETRY, "ASYNCGATE_LEASE_S": "3", "ASYNCGATE_STATE_DIR": str(tmp_path / "state")}
    service = serve(tmp_path, common_args(pg_url, fault_model_dir, quick), env)
    order_ids = [f"KILL-{n:02d}" for n in range(24)]
    try:
        with httpx.Client(base_url=service.url, timeout=30.0, trust_env=False) as http:
            script = ["insurer_busy", "complete_then_timeout"]
            first = _create(http, [order_body(order_id, script, delay_s=6.0) for order_id in order_ids])
            assert {a["state"] for a in first} == {"ASYNC_PROCESSING"}

            worker_a = start_worker(
                tmp_path,
                [*common_args(pg_url, fault_model_dir, slow), "--concurrency", "8"],
                {**env, "ASYNCGATE_RETRY_RATE_PER_S": "0"},
                name="a",
            )
            wait_for(
                lambda: sim.ledger()["calls"] >= 24 + 8,
                timeout_s=30,
                what="8 calls of worker A in flight",
                diagnostics=lambda: f"{sim.ledger()}\n{worker_a.output()[-4000:]}",
            )
            worker_a.kill()
            ledger = sim.ledger()
            assert ledger["calls"] == 32, (ledger, worker_a.output()[-4000:])
            assert sum(completions(ledger, order_ids).values()) == 8

            worker_b = start_worker(tmp_path, common_args(pg_url, fault_model_dir, quick), env, name="b")
            try:
                wait_settled(http, order_ids, timeout_s=60, diagnostics=worker_b.output()[-3000:])
            finally:
                assert worker_b.terminate() == 0, worker_b.output()
            assert completions(sim.ledger(), order_ids) == dict.fromkeys(order_ids, 1), "exactly once"
            for order_id in order_ids:
                order = http.get(f"/orders/{order_id}").json()
                actors = {a["actor"] for a in order["attempts"][1:]}
                assert len(actors) == 1 and actors.pop().startswith("worker:"), "only B recorded: A died first"
    finally:
        assert service.stop() in CLEAN_EXIT, service.output()


def test_sigterm_worker_finishes_in_flight_and_releases_the_rest(
    tmp_path: Path, simulator: Callable[..., Simulator], pg_url: str, fault_model_dir: Path
) -> None:
    """SIGTERM while re-executions are in flight (2 s each, 4 at a time) and the rest of the 20 claimed
    orders wait: those in flight finish and are recorded, the waiting ones are released at once (no
    lease left), the worker exits 0; a second worker then completes them, each exactly once.

    The counts are read from what happened, not from the clock: SIGTERM goes out once 4 calls are in
    flight, but on a loaded machine it may land after that wave has finished and the next has started.
    So the test checks that every call the worker sent finished (the ledger's count), at least the 4,
    and that everything else it claimed was released without a call. Some must be left to release:
    the 20 take five waves of 2 s, and the signal follows the first wave's start by a poll of 0.2 s,
    so only a stall of about 8 s could let the worker finish them all.
    """
    sim = simulator(scenario="fast", seed=2)
    insurers = insurers_file(tmp_path, sim.url, timeout_s=15.0)  # far above the 2 s calls: none times out
    env = {**FAST_RETRY, "ASYNCGATE_STATE_DIR": str(tmp_path / "state")}
    args = common_args(pg_url, fault_model_dir, insurers)
    service = serve(tmp_path, args, env)
    order_ids = [f"TERM-{n:02d}" for n in range(20)]
    try:
        with httpx.Client(base_url=service.url, timeout=30.0, trust_env=False) as http:
            bodies = [order_body(order_id, ["insurer_busy", "success"], latency_ms=2000) for order_id in order_ids]
            assert {a["state"] for a in _create(http, bodies)} == {"ASYNC_PROCESSING"}
            worker = start_worker(tmp_path, [*args, "--concurrency", "4"], env, name="term")
            wait_for(lambda: sim.ledger()["calls"] >= 24, timeout_s=30, what="4 re-executions in flight")
            assert worker.terminate() == 0, worker.output()
            stats = json.loads(worker.output().strip().splitlines()[-1])
            sent = sim.ledger()["calls"] - len(order_ids)  # the re-executions the worker started
            assert stats["errors"] == 0, stats
            assert stats["claimed"] == len(order_ids), stats
            assert stats["finished"] == sent >= 4, (stats, sent)
            assert stats["released"] == len(order_ids) - sent > 0, (stats, sent)
            after = states(http, order_ids)
            assert sorted(after.values()).count("SUCCEEDED") == sent
            orders = [http.get(f"/orders/{order_id}").json() for order_id in order_ids]
            pending = [o for o in orders if o["state"] == "ASYNC_PROCESSING"]
            assert len(pending) == stats["released"]
            assert all(o["attempt_count"] == 1 for o in pending), "released without a call"

            done = start_worker(tmp_path, [*args, "--once"], env, name="once")
            assert done.proc.wait(timeout=60) == 0, done.output()
            wait_settled(http, order_ids, timeout_s=5)
            assert completions(sim.ledger(), order_ids) == dict.fromkeys(order_ids, 1)
    finally:
        assert service.stop() in CLEAN_EXIT, service.output()


def test_retry_budget_drains_a_backlog_in_due_order_at_its_rate(
    tmp_path: Path, simulator: Callable[..., Simulator], pg_url: str, fault_model_dir: Path
) -> None:
    """A backlog of 12 due orders, a worker with a budget of 5 re-executions/s (burst 1): they go out
    oldest due first (one every 0.2 s, so their recorded times keep that order), and no faster than
    the bucket allows."""
    sim = simulator(scenario="fast", seed=3)
    insurers = insurers_file(tmp_path, sim.url, timeout_s=5.0)
    env = {**FAST_RETRY, "ASYNCGATE_STATE_DIR": str(tmp_path / "state")}
    args = common_args(pg_url, fault_model_dir, insurers)
    service = serve(tmp_path, args, env)
    order_ids = [f"BUDGET-{n:02d}" for n in range(12)]
    try:
        with httpx.Client(base_url=service.url, timeout=30.0, trust_env=False) as http:
            bodies = [order_body(order_id, ["insurer_busy", "success"]) for order_id in order_ids]
            assert {a["state"] for a in _create(http, bodies)} == {"ASYNC_PROCESSING"}
            due = {o: dt.datetime.fromisoformat(http.get(f"/orders/{o}").json()["next_attempt_at"]) for o in order_ids}
            wait_for(
                lambda: dt.datetime.now(dt.UTC) > max(due.values()), timeout_s=5, what="every order due", poll_s=0.05
            )
            budget = {"ASYNCGATE_RETRY_RATE_PER_S": "5", "ASYNCGATE_RETRY_BURST": "1"}
            worker = start_worker(tmp_path, [*args, "--once"], {**env, **budget}, name="budget")
            assert worker.proc.wait(timeout=60) == 0, worker.output()
            orders = {o: http.get(f"/orders/{o}").json() for o in order_ids}
    finally:
        assert service.stop() in CLEAN_EXIT, service.output()
    assert {o["state"] for o in orders.values()} == {"SUCCEEDED"}
    sent = {o: dt.datetime.fromisoformat(orders[o]["attempts"][-1]["at"]) for o in order_ids}
    assert sorted(order_ids, key=sent.__getitem__) == sorted(order_ids, key=due.__getitem__), "due order"
    span = (max(sent.values()) - min(sent.values())).total_seconds()
    # the 12th token comes 11 x 0.2 s after the first; 0.4 s of slack for the first call's own latency
    assert span >= (12 - 1) / 5 - 0.4, "the bucket lets one go, then 5 a second"
    assert completions(sim.ledger(), order_ids) == dict.fromkeys(order_ids, 1)
