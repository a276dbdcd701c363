"""Real-process fixtures: a free port, a subprocess started and awaited until it answers, SIGTERM to stop.

`start_process(argv, port=..., ready_path=...)` is generic (the service and worker tests can use it);
`simulator(...)` starts `python -m service simulate-insurer` and returns a handle with the ledger and
scenario controls. Every process started by a fixture is stopped when the test ends, and its output
is printed when it fails to start.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
#: Exit codes of a process that shut down cleanly on our SIGTERM.
CLEAN_EXIT = (0, -signal.SIGTERM)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a child: ours without ASYNCGATE_* settings, unbuffered, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCGATE_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["ASYNCGATE_EXPLORATION_RATE"] = "0"  # final failures stay final unless a test asks for exploration
    env.update(extra or {})
    return env


@dataclass
class RunningProcess:
    """A started child process listening on `port`; `stop()` sends SIGTERM and waits."""

    argv: list[str]
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, wait up to `timeout_s`, then SIGKILL; returns the exit code.

        uvicorn re-raises the signal after a graceful shutdown, so a clean stop is -SIGTERM (or 0):
        see CLEAN_EXIT.
        """
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout_s)
        return int(self.proc.returncode)


def start_process(
    argv: Sequence[str],
    *,
    port: int,
    log_path: Path,
    ready_path: str = "/healthz",
    env: dict[str, str] | None = None,
    timeout_s: float = START_TIMEOUT_S,
    cwd: Path | None = None,
) -> RunningProcess:
    """Start `argv` (in `cwd`, default ours) and wait until GET http://127.0.0.1:{port}{ready_path} answers 200.

    Raises RuntimeError with the process output when it exits early or does not answer in time.
    """
    log = log_path.open("ab")
    proc = subprocess.Popen(
        list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=cwd
    )
    log.close()
    running = RunningProcess(list(argv), proc, port, log_path)
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=1.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{argv} exited with {proc.returncode} before answering:\n{running.output()}")
            try:
                if client.get(f"{running.url}{ready_path}").status_code == 200:
                    return running
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    running.stop()
    raise RuntimeError(f"{argv} did not answer {ready_path} within {timeout_s} s:\n{running.output()}")


@dataclass
class Simulator:
    """A running `asyncgate simulate-insurer` with handles on its /_sim controls."""

    process: RunningProcess
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def port(self) -> int:
        return self.process.port

    def ledger(self) -> dict[str, Any]:
        return _control("GET", f"{self.url}/_sim/ledger")

    def reset(self) -> dict[str, Any]:
        return _control("POST", f"{self.url}/_sim/reset")

    def set_scenario(self, name: str) -> dict[str, Any]:
        return _control("POST", f"{self.url}/_sim/scenario", json={"scenario": name})

    def stop(self) -> int:
        return self.process.stop()


def _control(method: str, url: str, **kwargs: Any) -> dict[str, Any]:
    response = httpx.request(method, url, timeout=5.0, trust_env=False, **kwargs)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def simulator_argv(
    port: int,
    *,
    scenario: str = "normal",
    seed: int = 0,
    style: str | None = None,
    state_file: Path | None = None,
) -> list[str]:
    argv = [sys.executable, "-m", "service", "simulate-insurer", "--port", str(port)]
    argv += ["--scenario", scenario, "--seed", str(seed)]
    if style is not None:
        argv += ["--style", style]
    if state_file is not None:
        argv += ["--state-file", str(state_file)]
    return argv


def start_simulator(log_dir: Path, *, port: int | None = None, **options: Any) -> Simulator:
    """Start a simulator on `port` (or a free one, retried if another process takes it first)."""
    attempts = 1 if port is not None else 3
    for attempt in range(attempts):
        chosen = port if port is not None else free_port()
        log_path = log_dir / f"simulator-{chosen}.log"
        try:
            process = start_process(
                simulator_argv(chosen, **options),
                port=chosen,
                log_path=log_path,
                ready_path="/_sim/health",
                env=child_env(),
            )
        except RuntimeError:
            if attempt == attempts - 1 or "address already in use" not in log_path.read_text().lower():
                raise
            continue
        return Simulator(process, dict(options))
    raise AssertionError("unreachable")


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[Callable[..., Simulator]]:
    """Factory: `simulator(scenario=..., seed=..., style=..., state_file=..., port=...)` -> Simulator.

    Every simulator started through it is stopped (SIGTERM) when the test ends.
    """
    started: list[Simulator] = []

    def factory(**options: Any) -> Simulator:
        sim = start_simulator(tmp_path, **options)
        started.append(sim)
        return sim

    yield factory
    for sim in started:
        sim.stop()
