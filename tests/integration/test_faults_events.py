"""Order events under faults (docs/contract.md §8), with real processes: `serve` and `worker` on
PostgreSQL, the real simulator, and a real HTTP receiver (tests/receiver.py, a thread server in this
process) that verifies every delivery with the `standardwebhooks` library.

Two serve and two worker processes deliver while the receiver is down (connection refused), answers
500, and is too slow (each try times out); a PostgreSQL server crashed and restarted under load. In
both, every event in the store is acknowledged, with a valid signature, in order per order, none lost
(each transition has its event, each event reached the receiver) and none invented (every
acknowledged event is in the feed).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import CLEAN_EXIT, RunningProcess, Simulator
from tests.integration.faults import (
    FAST_RETRY,
    WorkerProcess,
    common_args,
    fault_model_dir,
    insurers_file,
    order_body,
    serve,
    start_worker,
    wait_for,
    wait_settled,
)
from tests.integration.pg_cluster import PgCluster
from tests.integration.test_faults_outages import pg_cluster
from tests.receiver import SECRET, Receiver, check_in_order, dump

__all__ = ["fault_model_dir", "pg_cluster"]  # fixtures, imported for pytest

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

WEBHOOK = {
    "ASYNCGATE_WEBHOOK_SECRET": SECRET,
    "ASYNCGATE_WEBHOOK_TIMEOUT_S": "0.5",
    "ASYNCGATE_WEBHOOK_LEASE_S": "3",
    "ASYNCGATE_WEBHOOK_RETRY_BASE_S": "0.1",
    "ASYNCGATE_WEBHOOK_RETRY_MAX_S": "0.5",
    "ASYNCGATE_WEBHOOK_POLL_S": "0.1",
    "ASYNCGATE_WEBHOOK_CONCURRENCY": "8",
}
#: Scripts: a synchronous success; a busy answer the worker then completes; a final failure (requeued
#: by the test, then completed), so that orders have two to four events each.
SCRIPTS = (["success"], ["insurer_busy", "success"], ["validation", "success"])


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def feed(http: httpx.Client) -> list[dict[str, Any]]:
    """Every event of the feed, following the cursor until it is caught up."""
    seen: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 1000}
    while True:
        page = http.get("/events", params=params).json()
        seen += page["events"]
        params["after"] = page["next_cursor"]
        if not page["events"]:
            return seen


class Orders:
    """Threads posting /process to the serve processes in turn until stopped; FAILED ones are requeued."""

    def __init__(self, urls: list[str], prefix: str) -> None:
        self.urls = urls
        self.prefix = prefix
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.accepted: list[str] = []
        self.refused: list[str] = []  # 503 (the database was down) or no answer: resent by `settle`
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(4)]

    def _run(self, n: int) -> None:
        with httpx.Client(timeout=30.0, trust_env=False) as http:
            for i in range(10_000):
                if self.stop.is_set():
                    return
                url = self.urls[(n + i) % len(self.urls)]
                order_id = f"{self.prefix}-{n}-{i:04d}"
                outcome = self.send(http, url, order_id, SCRIPTS[i % len(SCRIPTS)])
                with self.lock:
                    {"accepted": self.accepted, "refused": self.refused}.get(outcome, self.errors).append(
                        order_id if outcome in ("accepted", "refused") else f"{order_id}: {outcome}"
                    )
                time.sleep(0.03)

    @staticmethod
    def send(http: httpx.Client, url: str, order_id: str, script: list[str]) -> str:
        """/process, and a requeue when the order FAILED: "accepted", "refused" (503), or what went wrong."""
        try:
            answer = http.post(f"{url}/process", json=order_body(order_id, script))
            if answer.status_code == 503:
                return "refused"
            if answer.status_code != 200:
                return f"{answer.status_code} {answer.text[:200]}"
            if answer.json()["state"] == "FAILED":
                requeued = http.post(f"{url}/orders/{order_id}/requeue")
                if requeued.status_code == 503:
                    return "refused"
                if requeued.status_code != 200:
                    return f"requeue {requeued.status_code} {requeued.text[:200]}"
        except httpx.TransportError as exc:
            return type(exc).__name__
        return "accepted"

    def settle(self, url: str) -> list[str]:
        """Resend what was refused (the same body: idempotent) until accepted; every order id sent."""
        with httpx.Client(timeout=30.0, trust_env=False) as http:
            for order_id in self.refused:
                i = int(order_id.rsplit("-", 1)[1])
                for _ in range(50):
                    outcome = self.send(http, url, order_id, SCRIPTS[i % len(SCRIPTS)])
                    if outcome == "accepted":
                        break
                    time.sleep(0.2)
                else:
                    raise AssertionError(f"{order_id} refused again and again: {outcome}")
        return sorted(self.accepted + self.refused)

    def __enter__(self) -> Orders:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def count(self) -> int:
        with self.lock:
            return len(self.accepted)


def check_every_event_delivered(
    http: httpx.Client, receiver: Receiver, order_ids: list[str], *, diagnostics: Callable[[], str]
) -> list[dict[str, Any]]:
    """All events of the feed acknowledged and marked delivered; each order's events = its transitions."""
    # the feed on the shared server trails every open write transaction there: ask until it is complete
    expected = {o: len(http.get(f"/orders/{o}").json()["transitions"]) for o in order_ids}
    events: list[dict[str, Any]] = []

    def complete() -> bool:
        nonlocal events
        events = feed(http)
        return len(events) >= sum(expected.values())

    wait_for(complete, timeout_s=60, what="every transition's event in the feed", diagnostics=diagnostics)
    ids = [e["event_id"] for e in events]
    assert len(ids) == len(set(ids)), "the feed handed an event out twice"
    wait_for(
        lambda: set(receiver.acknowledged()) >= set(ids),
        timeout_s=90,
        what="every event acknowledged by the receiver",
        diagnostics=lambda: (
            f"{len(set(ids) - set(receiver.acknowledged()))} missing; {dump(receiver.log)}\n{diagnostics()}"
        ),
    )
    acknowledged = receiver.acknowledged()
    assert set(acknowledged) == set(ids), "the receiver got an event the store does not have"
    assert all(acknowledged[e["event_id"]] == e for e in events), "the webhook and the feed disagree"
    in_order = check_in_order(receiver.deliveries())
    for order_id in order_ids:
        transitions = http.get(f"/orders/{order_id}").json()["transitions"]
        assert in_order[order_id] == [t["to_state"] for t in transitions], order_id
    metrics = http.get("/metrics").text
    wait_for(
        lambda: "asyncgate_events_oldest_undelivered_age_seconds 0.0" in http.get("/metrics").text,
        timeout_s=30,
        what="nothing left undelivered",
        diagnostics=lambda: metrics,
    )
    return events


def _stop(processes: list[RunningProcess], workers: list[WorkerProcess]) -> None:
    for worker in workers:
        assert worker.terminate() == 0, worker.output()[-3000:]
    for process in processes:
        assert process.stop() in CLEAN_EXIT, process.output()[-3000:]


def test_two_serve_two_workers_deliver_every_event_through_receiver_outages(
    tmp_path: Path, simulator: Callable[..., Simulator], pg_url: str, fault_model_dir: Path, receiver: Receiver
) -> None:
    """While orders arrive at two serve processes and two workers re-execute them, the receiver is down
    (connection refused), then answers 500, then answers only after the sender's timeout, then recovers.
    Every event ends acknowledged, signed, in order per order; none lost, none invented."""
    sim = simulator(scenario="fast", seed=13)
    insurers = insurers_file(tmp_path, sim.url, timeout_s=5.0)
    env = {**FAST_RETRY, **WEBHOOK, "ASYNCGATE_WEBHOOK_URL": receiver.url, "ASYNCGATE_STATE_DIR": str(tmp_path / "s")}
    args = common_args(pg_url, fault_model_dir, insurers)
    services = [serve(tmp_path, args, env), serve(tmp_path, args, env)]
    workers = [start_worker(tmp_path, args, env, name=name) for name in ("a", "b")]

    def diagnostics() -> str:
        return "\n".join(p.output()[-1500:] for p in [*services, *workers])

    try:
        with Orders([s.url for s in services], "EV") as orders:
            wait_for(lambda: orders.count() >= 20, timeout_s=60, what="orders before the faults")
            receiver.stop()  # down: connection refused
            time.sleep(1.5)
            receiver.start()
            receiver.mode = "fail"  # 500s
            time.sleep(1.5)
            receiver.mode, receiver.slow_s = "slow", 0.8  # every try times out (0.5 s)
            time.sleep(1.5)
            receiver.mode = "ok"
            wait_for(lambda: orders.count() >= 60, timeout_s=60, what="orders after the faults")
        assert orders.errors == []
        sent = orders.settle(services[0].url)
        with httpx.Client(base_url=services[0].url, timeout=30.0, trust_env=False) as http:
            wait_settled(http, sent, timeout_s=90, diagnostics=diagnostics())
            events = check_every_event_delivered(http, receiver, sent, diagnostics=diagnostics)
        statuses = {d.status for d in receiver.deliveries()}
        assert {200, 500} <= statuses, "the receiver's refusals were seen"
        assert len(events) >= 2 * len(sent)
        assert all("delivering events to" in p.output() for p in [*services, *workers]), "serve and worker deliver"
        logs = diagnostics() + "".join(p.output() for p in services)
        assert SECRET not in logs and SECRET.removeprefix("whsec_") not in logs
    finally:
        _stop(services, workers)


def test_postgres_restart_delays_events_but_loses_or_invents_none(
    tmp_path: Path,
    simulator: Callable[..., Simulator],
    pg_cluster: PgCluster,
    fault_model_dir: Path,
    receiver: Receiver,
) -> None:
    """PostgreSQL crashes (immediate stop, recovery on start) for about a second while orders arrive and
    events are delivered: afterwards every transition has exactly one event, every event reached the
    receiver signed and in order per order, and the receiver got no event the store does not have."""
    sim = simulator(scenario="fast", seed=14)
    insurers = insurers_file(tmp_path, sim.url, timeout_s=5.0)
    env = {**FAST_RETRY, **WEBHOOK, "ASYNCGATE_WEBHOOK_URL": receiver.url, "ASYNCGATE_LEASE_S": "5"}
    env["ASYNCGATE_STATE_DIR"] = str(tmp_path / "s")
    args = common_args(pg_cluster.url, fault_model_dir, insurers)
    service = serve(tmp_path, args, env)
    worker = start_worker(tmp_path, args, env, name="pg")

    def diagnostics() -> str:
        return f"{service.output()[-2000:]}\n{worker.output()[-2000:]}"

    try:
        with Orders([service.url], "PGEV") as orders:
            wait_for(lambda: orders.count() >= 20, timeout_s=60, what="orders before the restart")
            pg_cluster.stop("immediate")
            time.sleep(1.0)
            pg_cluster.start()
            before = orders.count()
            wait_for(lambda: orders.count() >= before + 20, timeout_s=60, what="orders after the restart")
        assert orders.errors == []
        assert service.proc.poll() is None and worker.proc.poll() is None, "both kept running"
        sent = orders.settle(service.url)
        with httpx.Client(base_url=service.url, timeout=30.0, trust_env=False) as http:
            wait_settled(http, sent, timeout_s=90, diagnostics=diagnostics())
            check_every_event_delivered(http, receiver, sent, diagnostics=diagnostics)
    finally:
        _stop([service], [worker])
