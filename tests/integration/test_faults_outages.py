"""Fault injection on what asyncgate depends on, with real processes: PostgreSQL restarted under load
(a throwaway cluster of the test's own), an insurer down (connection refused, then timeouts), and the
per-insurer circuit breaker opening and closing against the real simulator.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import _postgres_required
from tests.integration.conftest import CLEAN_EXIT, Simulator, free_port, start_simulator
from tests.integration.faults import (
    FAST_RETRY,
    INSURER,
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
from tests.integration.pg_cluster import PgCluster, pg_bindir, throwaway_cluster

__all__ = ["fault_model_dir"]  # the fixture, imported for pytest

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_cluster() -> Iterator[PgCluster]:
    """A PostgreSQL cluster of this test's own (the shared server is never restarted)."""
    if pg_bindir() is None:
        reason = "PostgreSQL binaries not installed (needed for a throwaway cluster)"
        if _postgres_required():
            pytest.fail(reason)
        pytest.skip(reason)
    with throwaway_cluster(free_port()) as cluster:
        yield cluster


class Load:
    """Threads sending /process for fresh orders until stopped; every answer or error is kept."""

    def __init__(self, url: str, *, threads: int, script: list[str]) -> None:
        self.url = url
        self.script = script
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.answers: dict[str, int] = {}  # order_id → HTTP status
        self.errors: dict[str, str] = {}  # order_id → transport error
        self.threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(threads)]

    def _run(self, n: int) -> None:
        with httpx.Client(base_url=self.url, timeout=30.0, trust_env=False) as http:
            for i in range(100_000):
                if self.stop.is_set():
                    return
                order_id = f"PG-{n}-{i:05d}"
                try:
                    status = http.post("/process", json=order_body(order_id, self.script)).status_code
                    with self.lock:
                        self.answers[order_id] = status
                except httpx.TransportError as exc:
                    with self.lock:
                        self.errors[order_id] = type(exc).__name__
                time.sleep(0.02)

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def count(self) -> int:
        with self.lock:
            return len(self.answers) + len(self.errors)


def test_postgres_restart_under_load_loses_nothing(
    tmp_path: Path, simulator: Callable[..., Simulator], pg_cluster: PgCluster, fault_model_dir: Path
) -> None:
    """PostgreSQL goes down hard (immediate stop, crash recovery on start) for about a second while
    the API takes orders and a worker re-executes: requests get 200 or 503, never a 500 or a dropped
    connection; the same API and worker processes recover; every acknowledged order completes, each
    exactly once at the insurer; refused orders resent with the same body are accepted then."""
    sim = simulator(scenario="fast", seed=4)
    insurers = insurers_file(tmp_path, sim.url, timeout_s=5.0)
    env = {**FAST_RETRY, "ASYNCGATE_STATE_DIR": str(tmp_path / "state"), "ASYNCGATE_LEASE_S": "5"}
    args = common_args(pg_cluster.url, fault_model_dir, insurers)
    service = serve(tmp_path, args, env)
    worker = start_worker(tmp_path, args, env, name="pg")
    script = ["insurer_busy", "success"]
    try:
        with Load(service.url, threads=4, script=script) as load:
            wait_for(lambda: load.count() >= 40, timeout_s=30, what="orders before the restart")
            pg_cluster.stop("immediate")
            down_at = load.count()
            time.sleep(1.0)
            pg_cluster.start()
            wait_for(lambda: load.count() >= down_at + 60, timeout_s=60, what="orders after the restart")
        assert service.proc.poll() is None and worker.proc.poll() is None, "both kept running"
        statuses = sorted(set(load.answers.values()))
        assert set(statuses) <= {200, 503}, statuses
        assert 503 in statuses, "the outage was seen"
        assert load.errors == {}, "no connection was dropped"
        accepted = sorted(o for o, status in load.answers.items() if status == 200)
        refused = sorted(o for o, status in load.answers.items() if status == 503)
        with httpx.Client(base_url=service.url, timeout=30.0, trust_env=False) as http:
            for order_id in refused:  # the platform resends what was refused: idempotent
                resent = http.post("/process", json=order_body(order_id, script))
                assert resent.status_code == 200, resent.text
            diagnostics = f"{worker.output()[-3000:]}\n{service.output()[-3000:]}"
            wait_settled(http, accepted + refused, timeout_s=90, diagnostics=diagnostics)
        assert completions(sim.ledger(), accepted + refused) == dict.fromkeys(accepted + refused, 1)
    finally:
        assert worker.terminate() == 0, worker.output()
        assert service.stop() in CLEAN_EXIT, service.output()


@pytest.mark.postgres
def test_insurer_down_then_timing_out_then_back(tmp_path: Path, pg_url: str, fault_model_dir: Path) -> None:
    """The insurer refuses connections while orders arrive and the worker retries; then it accepts them
    but lets every first call time out (the client gives up after 1 s); then it answers. Every order
    was ASYNC_PROCESSING from the start, none is lost, each completes exactly once."""
    port = free_port()
    insurers = insurers_file(tmp_path, f"http://127.0.0.1:{port}", timeout_s=1.0)
    env = {**FAST_RETRY, "ASYNCGATE_STATE_DIR": str(tmp_path / "state"), "ASYNCGATE_RETRY_MAX_S": "1.0"}
    args = common_args(pg_url, fault_model_dir, insurers)
    service = serve(tmp_path, args, env)
    worker = start_worker(tmp_path, args, env, name="down")
    order_ids = [f"DOWN-{n:02d}" for n in range(12)]
    sim = None
    try:
        with httpx.Client(base_url=service.url, timeout=30.0, trust_env=False) as http:
            for order_id in order_ids:
                answer = http.post("/process", json=order_body(order_id, ["timeout", "success"], delay_s=2.0))
                assert answer.status_code == 200, answer.text
                body = answer.json()
                assert (body["state"], body["next_action"]) == ("ASYNC_PROCESSING", "await_async"), body
                assert body["failure"]["error_message"].startswith("ConnectError")
            wait_for(
                lambda: all(len(http.get(f"/orders/{o}").json()["attempts"]) >= 3 for o in order_ids),
                timeout_s=30,
                what="the worker retrying against the refused port",
            )
            assert set(states(http, order_ids).values()) == {"ASYNC_PROCESSING"}
            sim = start_simulator(tmp_path, port=port, scenario="fast", seed=5)
            wait_settled(http, order_ids, timeout_s=60, diagnostics=worker.output()[-3000:])
            ledger = sim.ledger()
            assert completions(ledger, order_ids) == dict.fromkeys(order_ids, 1)
            assert all(ledger["calls_by_key"][f"{o}:underwrite"] == 2 for o in order_ids), "a timeout, then success"
            outcomes = [a["outcome"] for a in http.get(f"/orders/{order_ids[0]}").json()["attempts"]]
            assert outcomes[0] == "failure" and "unknown" in outcomes and outcomes[-1] == "success", outcomes
    finally:
        assert worker.terminate() == 0, worker.output()
        assert service.stop() in CLEAN_EXIT, service.output()
        if sim is not None:
            sim.stop()


def breaker_env(tmp_path: Path, *, cooldown_s: float, **extra: str) -> dict[str, str]:
    """Guard "breaker": 3 failed calls of the last 5 open it for `cooldown_s`."""
    return {
        **FAST_RETRY,
        "ASYNCGATE_INSURER_GUARD": "breaker",
        "ASYNCGATE_BREAKER_WINDOW": "5",
        "ASYNCGATE_BREAKER_FAILURES": "3",
        "ASYNCGATE_BREAKER_COOLDOWN_S": str(cooldown_s),
        "ASYNCGATE_STATE_DIR": str(tmp_path / "state"),
        **extra,
    }


def circuit(http: httpx.Client) -> str | None:
    """The insurer's asyncgate_insurer_circuit_state in the process's /metrics (None: not reported yet)."""
    gauge = f'asyncgate_insurer_circuit_state{{insurer="{INSURER}"}}'
    lines = [line for line in http.get("/metrics").text.splitlines() if line.startswith(gauge)]
    return lines[0].split()[-1] if lines else None


@pytest.mark.postgres
def test_circuit_breaker_spares_a_failing_insurer_and_closes_again(
    tmp_path: Path, simulator: Callable[..., Simulator], pg_url: str, fault_model_dir: Path
) -> None:
    """3 busy answers in a row open the circuit: the next orders are ASYNC_PROCESSING at once and the
    insurer never sees them; the state shows in /metrics and the log. After the cooldown a probe
    succeeds and closes the circuit; the worker then completes the skipped orders."""
    sim = simulator(scenario="fast", seed=6)
    insurers = insurers_file(tmp_path, sim.url, timeout_s=5.0)
    env = breaker_env(tmp_path, cooldown_s=2)
    args = common_args(pg_url, fault_model_dir, insurers)
    service = serve(tmp_path, args, env)

    try:
        with httpx.Client(base_url=service.url, timeout=30.0, trust_env=False) as http:
            for n in range(3):
                assert http.post("/process", json=order_body(f"BUSY-{n}", ["insurer_busy"])).status_code == 200
            assert circuit(http) == "2.0", "open"
            skipped = [f"SKIP-{n}" for n in range(5)]
            for order_id in skipped:
                body = http.post("/process", json=order_body(order_id, ["success"])).json()
                assert (body["state"], body["attempts"]) == ("ASYNC_PROCESSING", 0), body
                assert body["failure"]["outcome"] == "skipped"
            assert not any(f"{o}:underwrite" in sim.ledger()["calls_by_key"] for o in skipped), "insurer spared"
            time.sleep(2.1)  # the cooldown
            probe = http.post("/process", json=order_body("PROBE-1", ["success"])).json()
            assert probe["state"] == "SUCCEEDED"
            assert circuit(http) == "0.0", "closed"
            log = service.output()
            assert f"circuit for insurer {INSURER}: closed → open" in log
            assert f"circuit for insurer {INSURER}: half_open → closed" in log
            worker = start_worker(tmp_path, [*args, "--once"], env, name="breaker")
            assert worker.proc.wait(timeout=60) == 0, worker.output()
            wait_settled(http, skipped, timeout_s=5, diagnostics=worker.output())
            assert completions(sim.ledger(), skipped) == dict.fromkeys(skipped, 1)
    finally:
        assert service.stop() in CLEAN_EXIT, service.output()


@pytest.mark.postgres
def test_a_breaker_trip_in_one_serve_spares_the_insurer_in_the_other_and_one_probe_closes_both(
    tmp_path: Path, simulator: Callable[..., Simulator], pg_url: str, fault_model_dir: Path
) -> None:
    """Guard "breaker" on two serve processes sharing one database: busy answers seen by A alone open
    B's circuit too (B never called the insurer), so B's orders are kept without a call; after the
    cooldown one probe through A closes both, and B's log says why."""
    sim = simulator(scenario="fast", seed=7)
    insurers = insurers_file(tmp_path, sim.url, timeout_s=5.0)
    env = breaker_env(tmp_path, cooldown_s=5, ASYNCGATE_SHARED_SYNC_S="0.2")
    args = common_args(pg_url, fault_model_dir, insurers)
    a, b = serve(tmp_path, args, env), serve(tmp_path, args, env)

    try:
        with (
            httpx.Client(base_url=a.url, timeout=30.0, trust_env=False) as http_a,
            httpx.Client(base_url=b.url, timeout=30.0, trust_env=False) as http_b,
        ):
            for n in range(3):
                assert http_a.post("/process", json=order_body(f"BUSY-{n}", ["insurer_busy"])).status_code == 200
            assert circuit(http_a) == "2.0", "A opened on its own count"
            wait_for(lambda: circuit(http_b) == "2.0", timeout_s=3, what="B's circuit opened by A's trip")
            skipped = [f"SKIP-B-{n}" for n in range(4)]
            for order_id in skipped:
                body = http_b.post("/process", json=order_body(order_id, ["success"])).json()
                assert (body["state"], body["attempts"]) == ("ASYNC_PROCESSING", 0), body
                assert body["failure"]["outcome"] == "skipped"
            calls = sim.ledger()["calls_by_key"]
            assert not any(f"{o}:underwrite" in calls for o in skipped), "B spared the insurer"
            time.sleep(5.1)  # the cooldown
            assert http_a.post("/process", json=order_body("PROBE-A", ["success"])).json()["state"] == "SUCCEEDED"
            assert circuit(http_a) == "0.0"
            wait_for(lambda: circuit(http_b) == "0.0", timeout_s=3, what="B's circuit closed by A's probe")
            assert "a probe of another process succeeded" in b.output()
            assert "opened by another process" in b.output()
            assert not any(f"{o}:underwrite" in sim.ledger()["calls_by_key"] for o in skipped), "B made no probe"
    finally:
        for service in (a, b):
            assert service.stop() in CLEAN_EXIT, service.output()
