"""Graceful shutdown of `serve` under load: SIGTERM while /process requests are in flight drops none of
the requests it accepted (the worker's SIGTERM is in test_faults_worker.py)."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.integration.conftest import CLEAN_EXIT, Simulator
from tests.integration.faults import FAST_RETRY, common_args, fault_model_dir, insurers_file, order_body, serve

__all__ = ["fault_model_dir"]  # the fixture, imported for pytest

pytestmark = pytest.mark.integration


@dataclass
class Outcome:
    started: float
    ended: float
    status: int | None = None
    error: str | None = None


@dataclass
class Clients:
    """Threads sending /process, each request on a new connection, until the server is gone."""

    url: str
    threads: int
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, n: int) -> None:
        refused = 0
        with httpx.Client(base_url=self.url, timeout=30.0, trust_env=False, headers={"Connection": "close"}) as http:
            for i in range(10_000):
                order_id = f"SHUT-{n}-{i:04d}"
                started = time.monotonic()
                try:
                    response = http.post("/process", json=order_body(order_id, ["success"], latency_ms=500))
                    outcome = Outcome(started, time.monotonic(), status=response.status_code)
                    refused = 0
                except httpx.TransportError as exc:
                    outcome = Outcome(started, time.monotonic(), error=type(exc).__name__)
                    refused += isinstance(exc, httpx.ConnectError)
                with self.lock:
                    self.outcomes[order_id] = outcome
                if refused >= 3:  # the server is gone
                    return

    def count(self) -> int:
        with self.lock:
            return len(self.outcomes)


def test_serve_sigterm_under_load_drops_no_accepted_request(
    tmp_path: Path, simulator: Callable[..., Simulator], fault_model_dir: Path
) -> None:
    """12 clients keep /process busy (each call takes 0.5 s at the insurer); SIGTERM. Requests in
    flight complete with 200; afterwards new connections are refused. Every order the service
    wrote got its 200 answer, and every 200 answer's order is stored SUCCEEDED."""
    sim = simulator(scenario="fast", seed=7)
    insurers = insurers_file(tmp_path, sim.url, timeout_s=5.0)
    db_url = f"sqlite:///{tmp_path}/shutdown.db"
    env = {**FAST_RETRY, "ASYNCGATE_STATE_DIR": str(tmp_path / "state")}
    service = serve(tmp_path, common_args(db_url, fault_model_dir, insurers), env)
    clients = Clients(service.url, threads=12)
    threads = [threading.Thread(target=clients.run, args=(n,), daemon=True) for n in range(clients.threads)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while clients.count() < 24 and time.monotonic() < deadline:
        time.sleep(0.05)
    signalled = time.monotonic()
    service.proc.send_signal(signal.SIGTERM)
    code = service.proc.wait(timeout=60)
    for thread in threads:
        thread.join(timeout=60)
    assert code in CLEAN_EXIT, service.output()

    outcomes = clients.outcomes
    answered = {o for o, out in outcomes.items() if out.status is not None}
    assert {outcomes[o].status for o in answered} == {200}
    in_flight = [o for o in answered if outcomes[o].started < signalled < outcomes[o].ended]
    assert in_flight, "some requests were in flight at SIGTERM, and they completed"
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            stored: dict[str, str] = dict(conn.execute(sa.text("SELECT order_id, state FROM orders")).all())
    finally:
        engine.dispose()
    assert set(stored) == answered, "whatever the service accepted was answered (and nothing else was written)"
    assert set(stored.values()) == {"SUCCEEDED"}
    refused = {out.error for out in outcomes.values() if out.error is not None}
    assert refused, "after the shutdown, new connections were refused"
    assert all(outcomes[o].started >= signalled for o in outcomes if outcomes[o].error), "only after SIGTERM"
