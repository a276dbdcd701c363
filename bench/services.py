"""The processes the HTTP benchmarks load: the service, the bare app, the fast simulator; and request bodies.

Each is a context manager around a real child process on 127.0.0.1 (see bench.common.serving):
the service and the bare app are both started by `uvicorn <factory> --factory` with one worker.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import Server, child_env, free_port, service_env, serving, uvicorn_argv
from model.records import iter_failures
from training.generate import generate_failures

INSURER: str = "benchins"


def failure_bodies(count: int, seed: int) -> list[dict[str, Any]]:
    """`count` generated failures as /classify request bodies (the contract's six fields)."""
    bodies = []
    for failure in iter_failures(generate_failures(count, seed=seed)):
        body = failure._asdict()
        body["insurer"] = body["insurer"] or "unknown"
        body["operation"] = body["operation"] or "other"
        bodies.append(body)
    return bodies


def sqlite_url(workdir: Path, name: str) -> str:
    path = workdir / "state" / f"{name}.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    for leftover in path.parent.glob(f"{name}.db*"):
        leftover.unlink()
    return f"sqlite:///{path}"


def insurers_file(workdir: Path, simulator_port: int) -> Path:
    path = workdir / "state" / f"insurers-{simulator_port}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f'[insurers.{INSURER}]\nbase_url = "http://127.0.0.1:{simulator_port}"\ntimeout_s = 5.0\n'
        'adapter = "generic-json"\n',
        encoding="utf-8",
    )
    return path


@contextmanager
def service(workdir: Path, registry: Path, db_url: str, *, insurers: Path | None = None) -> Iterator[Server]:
    """asyncgate (one uvicorn worker), ready when /readyz answers 200."""
    port = free_port()
    env = service_env(workdir, registry, db_url, insurers)
    log = workdir / "logs" / f"service-{port}.log"
    with serving(uvicorn_argv("service.asgi:app", port), port=port, log=log, ready_path="/readyz", env=env) as server:
        yield server


@contextmanager
def service_processes(workdir: Path, registry: Path, db_url: str, workers: int) -> Iterator[Server]:
    """`asyncgate serve --workers N`: N uvicorn processes on one port, as an operator starts them."""
    port = free_port()
    env = service_env(workdir, registry, db_url)
    log = workdir / "logs" / f"service-{workers}w-{port}.log"
    argv = [sys.executable, "-m", "service", "serve", "--port", str(port), "--workers", str(workers)]
    with serving(argv, port=port, log=log, ready_path="/readyz", env=env) as server:
        yield server


@contextmanager
def bare(workdir: Path) -> Iterator[Server]:
    """The bare FastAPI yardstick (one uvicorn worker)."""
    port = free_port()
    log = workdir / "logs" / f"bare-{port}.log"
    argv = uvicorn_argv("bench.bare_app:create_app", port)
    with serving(argv, port=port, log=log, ready_path="/readyz", env=child_env()) as server:
        yield server


@contextmanager
def simulator(workdir: Path) -> Iterator[Server]:
    """`asyncgate simulate-insurer --scenario fast`: no delay, every call succeeds."""
    port = free_port()
    log = workdir / "logs" / f"simulator-{port}.log"
    argv = [sys.executable, "-m", "service", "simulate-insurer", "--port", str(port), "--scenario", "fast"]
    with serving(argv, port=port, log=log, ready_path="/_sim/health", env=child_env()) as server:
        yield server
