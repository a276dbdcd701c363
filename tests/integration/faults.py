"""Helpers of the fault-injection suite: the model, the insurers file, `serve` and `worker` processes,
a thread pool of /process clients, and waiting for orders to settle.

Every process runs the real command (`python -m service serve|worker`) against a real database and
the real simulator; the tests break one of them on purpose and check what the simulator's ledger
and the order store say afterwards.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from model.artifact import save_artifact
from model.classifier import build_classifier
from model.registry import activate
from tests.integration.conftest import RunningProcess, child_env, free_port, start_process

INSURER = "sim"
#: Fast retries so that the suite stays short; plenty of attempts so nothing goes DEAD by accident;
#: no insurer guard (the breaker's own tests turn it on), so that every order's calls are what the test says.
FAST_RETRY = {
    "ASYNCGATE_INSURER_GUARD": "none",
    "ASYNCGATE_RETRY_BASE_S": "0.05",
    "ASYNCGATE_RETRY_MAX_S": "0.3",
    "ASYNCGATE_RETRY_MAX_ATTEMPTS": "60",
    "ASYNCGATE_WORKER_POLL_S": "0.1",
    "ASYNCGATE_LOG_LEVEL": "INFO",
}


@pytest.fixture(scope="session")
def fault_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry with a small model trained on the shared vocabulary (so it reads the simulator's words)."""
    from tests.integration.test_service_loop import vocabulary_frame

    frame = vocabulary_frame(2000, seed=11)
    classifier = build_classifier({"random_state": 0}).fit(frame, frame["async_eligible"], frame["category"])
    registry = tmp_path_factory.mktemp("fault-registry")
    version = "2026-11-25T10-00-00-fault0"
    save_artifact(classifier, registry, version=version, data={"rows": len(frame), "source": "vocabulary"})
    activate(registry, version)
    return registry


def insurers_file(folder: Path, base_url: str, *, timeout_s: float, name: str = "insurers.toml") -> Path:
    path = folder / name
    path.write_text(f'[insurers.{INSURER}]\nbase_url = "{base_url}"\ntimeout_s = {timeout_s}\n', encoding="utf-8")
    return path


def common_args(db_url: str, model_dir: Path, insurers: Path) -> list[str]:
    return ["--db-url", db_url, "--model-dir", str(model_dir), "--insurers", str(insurers)]


def serve(folder: Path, args: list[str], env: dict[str, str], *, extra: Iterable[str] = ()) -> RunningProcess:
    """`python -m service serve` on a free port, ready when /readyz answers 200."""
    for attempt in range(3):
        port = free_port()
        log_path = folder / f"serve-{port}.log"
        argv = [sys.executable, "-m", "service", "serve", "--port", str(port), *args, *extra]
        try:
            return start_process(argv, port=port, log_path=log_path, ready_path="/readyz", env=child_env(env))
        except RuntimeError:
            if attempt == 2 or "address already in use" not in log_path.read_text().lower():
                raise
    raise AssertionError("unreachable")


@dataclass
class WorkerProcess:
    proc: subprocess.Popen[bytes]
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self, timeout_s: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return int(self.proc.returncode)


def start_worker(folder: Path, args: list[str], env: dict[str, str], *, name: str) -> WorkerProcess:
    """A continuous `python -m service worker` (stopped by the test)."""
    log_path = folder / f"worker-{name}.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service", "worker", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=child_env(env),
        )
    return WorkerProcess(proc, log_path)


def order_body(order_id: str, script: list[str], **sim: Any) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "insurer": INSURER,
        "operation": "underwrite",
        "payload": {"premium": 1200, "sim": {"script": script, **sim}},
    }


def states(http: httpx.Client, order_ids: Iterable[str]) -> dict[str, str]:
    """order_id → state (or the HTTP status when the order cannot be read)."""
    found = {}
    for order_id in order_ids:
        response = http.get(f"/orders/{order_id}")
        found[order_id] = response.json()["state"] if response.status_code == 200 else str(response.status_code)
    return found


def wait_for(
    condition: Callable[[], bool],
    *,
    timeout_s: float,
    what: str,
    poll_s: float = 0.2,
    diagnostics: Callable[[], str] = lambda: "",
) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}\n{diagnostics()}")
        time.sleep(poll_s)


def wait_settled(
    http: httpx.Client, order_ids: list[str], *, timeout_s: float, state: str = "SUCCEEDED", diagnostics: str = ""
) -> None:
    """Wait until every order is in `state`; the assertion message shows the others."""
    deadline = time.monotonic() + timeout_s
    while True:
        now = states(http, order_ids)
        pending = {k: v for k, v in now.items() if v != state}
        if not pending:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(pending)} orders not {state} after {timeout_s} s: {pending}\n{diagnostics}")
        time.sleep(0.25)


def completions(ledger: dict[str, Any], order_ids: Iterable[str]) -> dict[str, int]:
    return {order_id: ledger["completions"].get(f"{order_id}:underwrite", 0) for order_id in order_ids}
