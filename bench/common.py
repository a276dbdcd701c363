"""What every benchmark shares: the work folder, a trained artifact, child processes, memory, results.

A benchmark is a function `run(workdir, quick) -> Section`; `save_section` writes its figures as
JSON under `<workdir>/results/`, and `bench.report` turns every saved section into
docs/benchmarks.md. Servers are started as real child processes bound to 127.0.0.1 and stopped
with SIGTERM; nothing here talks to any other address.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx

ROOT: Final = Path(__file__).resolve().parents[1]
DEFAULT_WORKDIR: Final = ROOT / ".asyncgate" / "bench"
#: The served model: the same size and seed as the service's default model.
MODEL_ROWS: Final = 60_000
MODEL_SEED: Final = 7
START_TIMEOUT_S: Final = 60.0


@dataclass
class Goal:
    """One goal of the issue: what was asked, what was measured, met or missed by how much."""

    goal: str
    measured: str
    met: bool
    shortfall: str = ""


@dataclass
class Section:
    """The figures of one benchmark, as the report prints them."""

    name: str
    title: str
    command: str
    columns: list[str]
    rows: list[list[Any]]
    goals: list[Goal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    started: str = ""
    seconds: float = 0.0


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def command_line(module: str, args: Sequence[str] = ()) -> str:
    return " ".join([".venv/bin/python", "-m", module, *map(shlex.quote, args)])


def save_section(workdir: Path, section: Section) -> Path:
    folder = workdir / "results"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{section.name}.json"
    path.write_text(json.dumps(asdict(section), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return path


def load_sections(workdir: Path) -> list[Section]:
    sections = []
    for path in sorted((workdir / "results").glob("*.json")):
        raw = json.loads(path.read_text(encoding="utf-8"))
        raw["goals"] = [Goal(**g) for g in raw.get("goals", [])]
        sections.append(Section(**raw))
    return sections


def print_section(section: Section) -> None:
    widths = [max(len(str(c)), *(len(fmt(r[i])) for r in section.rows)) for i, c in enumerate(section.columns)]
    print(f"\n## {section.title}\n$ {section.command}")
    print("  ".join(str(c).ljust(w) for c, w in zip(section.columns, widths, strict=True)))
    for row in section.rows:
        print("  ".join(fmt(v).ljust(w) for v, w in zip(row, widths, strict=True)))
    for goal in section.goals:
        verdict = "met" if goal.met else f"MISSED {goal.shortfall}"
        print(f"goal: {goal.goal} — measured {goal.measured}: {verdict}")
    for note in section.notes:
        print(f"note: {note}")


def fmt(value: Any) -> str:
    if isinstance(value, float):
        if value >= 100:
            return f"{value:,.0f}"
        if value >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def ratio_goal(
    goal: str, measured: float, target: float, *, higher_is_better: bool = True, unit: str = "", percent: bool = False
) -> Goal:
    """A goal on a number: met or missed, and by how much (`percent`: both shown as percentages)."""
    met = measured >= target if higher_is_better else measured <= target

    def show(value: float) -> str:
        if percent:
            return f"{value:.0%}"
        return f"{value:,.2f}{unit}" if value < 100 else f"{value:,.0f}{unit}"

    if met:
        return Goal(goal, show(measured), True)
    if higher_is_better:
        missing = f"short by {1 - measured / target:.0%} of {show(target)}" if target else "short"
    else:
        missing = f"{measured / target:.2f}x the limit of {show(target)}"
    return Goal(goal, show(measured), False, missing)


# -- machine ------------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    """CPU model, cores, memory, OS, Python and the main library versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        memory = f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, IndexError, ValueError):
        pass
    import fastapi
    import numpy
    import sklearn
    import uvicorn

    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": memory,
        "os": platform.platform(),
        "python": platform.python_version(),
        "libraries": f"numpy {numpy.__version__}, scikit-learn {sklearn.__version__}, "
        f"fastapi {fastapi.__version__}, uvicorn {uvicorn.__version__}",
    }


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("VmHWM not found in /proc/self/status")


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("VmRSS not found in /proc/self/status")


# -- the served model ---------------------------------------------------------------------------


def ensure_model(workdir: Path) -> Path:
    """A registry under `workdir` with an active model (trained once, MODEL_ROWS generated rows)."""
    registry = workdir / "models"
    if (registry / "ACTIVE").exists():
        return registry
    data = ensure_history(workdir, MODEL_ROWS, MODEL_SEED)
    print(f"training the served model on {MODEL_ROWS:,} rows → {registry}", flush=True)
    run(
        [
            sys.executable,
            "-m",
            "service",
            "train",
            "--data",
            str(data),
            "--out",
            str(registry),
            "--activate",
            "--no-eval",
        ]
    )
    return registry


def ensure_history(workdir: Path, rows: int, seed: int) -> Path:
    """A generated history CSV of `rows` rows (made once per size and seed)."""
    path = workdir / "data" / f"history-{rows}-{seed}.csv"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        run(
            [
                sys.executable,
                "-m",
                "service",
                "generate-data",
                "--rows",
                str(rows),
                "--seed",
                str(seed),
                "--out",
                str(partial),
            ]
        )
        partial.rename(path)
    return path


# -- child processes ----------------------------------------------------------------------------


def run(argv: Sequence[str], *, env: dict[str, str] | None = None, timeout_s: float = 1800) -> str:
    """Run a command to completion; its output, or RuntimeError with it."""
    done = subprocess.run(
        list(argv), capture_output=True, text=True, env=env, timeout=timeout_s, stdin=subprocess.DEVNULL, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Our environment without ASYNCGATE_* settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCGATE_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


@dataclass
class Server:
    """A child process serving HTTP on 127.0.0.1:port."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    started_s: float  # seconds from spawn to the first 200 on the ready path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)


def start_server(
    argv: Sequence[str], *, port: int, log: Path, ready_path: str, env: dict[str, str] | None = None
) -> Server:
    """Spawn `argv` and poll GET ready_path until it answers 200 (RuntimeError with its log if not)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        spawned = time.perf_counter()
        proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    server = Server(proc, port, log, 0.0)
    deadline = spawned + START_TIMEOUT_S
    with httpx.Client(timeout=1.0, trust_env=False) as client:
        while time.perf_counter() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{shlex.join(argv)} exited {proc.returncode}:\n{log.read_text(errors='replace')}")
            try:
                if client.get(f"{server.url}{ready_path}").status_code == 200:
                    server.started_s = time.perf_counter() - spawned
                    return server
            except httpx.TransportError:
                pass
            time.sleep(0.01)
    server.stop()
    raise RuntimeError(f"{shlex.join(argv)} not ready in {START_TIMEOUT_S}s:\n{log.read_text(errors='replace')}")


@contextmanager
def serving(
    argv: Sequence[str], *, port: int, log: Path, ready_path: str, env: dict[str, str] | None = None
) -> Iterator[Server]:
    server = start_server(argv, port=port, log=log, ready_path=ready_path, env=env)
    try:
        yield server
    finally:
        server.stop()


def uvicorn_argv(factory: str, port: int) -> list[str]:
    """One uvicorn worker serving an app factory: how both the service and the bare app are started."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        factory,
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--no-access-log",
        "--log-level",
        "warning",
    ]


def service_env(workdir: Path, registry: Path, db_url: str, insurers: Path | None = None) -> dict[str, str]:
    extra = {
        "ASYNCGATE_STATE_DIR": str(workdir / "state"),
        "ASYNCGATE_MODEL_DIR": str(registry),
        "ASYNCGATE_DB_URL": db_url,
        "ASYNCGATE_LOG_LEVEL": "WARNING",
    }
    if insurers is not None:
        extra["ASYNCGATE_INSURERS_FILE"] = str(insurers)
    return child_env(extra)


def write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value) + "\n")
