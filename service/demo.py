"""`asyncgate demo`: the whole loop on one machine — simulator, service, worker, a stream of orders, a summary.

It starts three child processes (an insurer simulator on a flaky scenario, `asyncgate serve` on a
fresh SQLite file, and `asyncgate worker`), sends orders to /process with a progress bar, waits
until no order is left in ASYNC_PROCESSING (or the time is up), prints how the orders ended and
checks the simulator's ledger: no order may have been completed twice.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import Progress
from rich.table import Table


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class _Child:
    name: str
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _wait_ready(url: str, child: _Child, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            raise RuntimeError(f"{child.name} exited with code {child.proc.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{child.name} not ready at {url} after {timeout_s:.0f}s")


def run_demo(
    *, orders: int, scenario: str, model_dir: Path, timeout_s: float, seed: int, work_dir: Path | None = None
) -> int:
    """Runs the demo; returns 0 when every order ended and nothing was completed twice.

    Its state (the SQLite file `demo.db`, logs) goes to `work_dir`, or a new temporary folder.
    """
    console = Console()
    rng = random.Random(seed)
    work = work_dir or Path(tempfile.mkdtemp(prefix="asyncgate-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    sim_port, api_port = _free_port(), _free_port()
    insurers = work / "insurers.toml"
    insurers.write_text(f'[insurers.demo_life]\nbase_url = "http://127.0.0.1:{sim_port}"\ntimeout_s = 1.5\n')
    env = {
        **os.environ,
        "ASYNCGATE_STATE_DIR": str(work),
        "ASYNCGATE_DB_URL": f"sqlite:///{work / 'demo.db'}",
        "ASYNCGATE_MODEL_DIR": str(model_dir),
        "ASYNCGATE_INSURERS_FILE": str(insurers),
        "ASYNCGATE_RETRY_BASE_S": "0.5",
        "ASYNCGATE_RETRY_MAX_S": "3",
        "ASYNCGATE_RETRY_MAX_ATTEMPTS": "8",
        "ASYNCGATE_WORKER_POLL_S": "0.3",
        "ASYNCGATE_LOG_LEVEL": "WARNING",
    }
    me = [sys.executable, "-m", "service"]
    log = (work / "children.log").open("ab")
    children: list[_Child] = []

    def spawn(name: str, *args: str) -> _Child:
        child = _Child(name, subprocess.Popen([*me, *args], env=env, stdout=log, stderr=log))
        children.append(child)
        return child

    try:
        sim = spawn(
            "simulator", "simulate-insurer", "--port", str(sim_port), "--scenario", scenario, "--seed", str(seed)
        )
        _wait_ready(f"http://127.0.0.1:{sim_port}/_sim/ledger", sim)
        api = spawn("service", "serve", "--port", str(api_port))
        _wait_ready(f"http://127.0.0.1:{api_port}/readyz", api)
        spawn("worker", "worker")
        console.print(f"simulator :{sim_port} ({scenario}), service :{api_port}, worker — state in {work}")
        first: Counter[str] = Counter()
        with (
            httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=10.0) as client,
            Progress(console=console) as bar,
        ):
            task = bar.add_task("orders → /process", total=orders)
            for n in range(orders):
                body = {
                    "order_id": f"DEMO{seed}-{n:05d}",
                    "insurer": "demo_life",
                    "operation": rng.choice(["underwrite", "pay", "issue_policy"]),
                    "payload": {"product": "term-life-20", "premium": rng.randint(100, 5000)},
                }
                first[client.post("/process", json=body).json().get("state", "error")] += 1
                bar.advance(task)
            wait = bar.add_task("re-executing async orders", total=None)
            deadline = time.monotonic() + timeout_s
            pending = -1
            while time.monotonic() < deadline:
                pending = _count(client, "ASYNC_PROCESSING")
                bar.update(wait, description=f"re-executing async orders ({pending} left)")
                if pending == 0:
                    break
                time.sleep(0.5)
            final = {s: _count(client, s) for s in ("SUCCEEDED", "FAILED", "ASYNC_PROCESSING", "DEAD")}
        ledger = httpx.get(f"http://127.0.0.1:{sim_port}/_sim/ledger", timeout=5).json()
        twice = {k: v for k, v in ledger.get("completions", {}).items() if v > 1}
        table = Table(title=f"asyncgate demo: {orders} orders, scenario {scenario}")
        table.add_column("state")
        table.add_column("after /process", justify="right")
        table.add_column("in the end", justify="right")
        for state in ("SUCCEEDED", "FAILED", "ASYNC_PROCESSING", "DEAD"):
            table.add_row(state, str(first.get(state, 0)), str(final[state]))
        console.print(table)
        console.print(f"insurer calls: {ledger.get('calls')}, orders completed twice: {len(twice)}")
        return 0 if not twice and final["ASYNC_PROCESSING"] == 0 else 1
    finally:
        for child in reversed(children):
            child.stop()
        log.close()


def _count(client: httpx.Client, state: str) -> int:
    total, cursor = 0, None
    while True:
        params: dict[str, Any] = {"state": state, "limit": 500}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/orders", params=params).json()
        total += len(page["orders"])
        cursor = page["next_cursor"]
        if not cursor:
            return total
