"""Hold a steady POST /process rate for a while on SQLite and on PostgreSQL, with zero errors.

    .venv/bin/python -m bench.load_process [--rate 50] [--seconds 60] [--db sqlite --db postgresql]
                                            [--pg-url postgresql://postgres@127.0.0.1:5432/test]
                                            [--doc docs/benchmarks.md]

Per database: a simulated insurer (`simulate-insurer --scenario fast`), `asyncgate serve` (one
uvicorn worker) with a small model trained here, and wrk (Debian's package, installed with apt-get
when missing) on loopback: 4 x `--rate` connections, each sending one /process every 4 s (a Lua
`delay()` after each answer; the first requests spread over those 4 s), every request a new order,
so the rate holds within a few percent of the target whatever the latency (rate = target / (1 +
latency / 4 s)). The load is open-ended in neither
count nor time: wrk stops after `--seconds`. While it runs, /metrics is read once a second for the
per-second /process rate. Afterwards every order must be SUCCEEDED. Exit status 1 when a run had
any error (socket error, timeout, non-2xx, an order not SUCCEEDED) or fell below 90% of the rate.

With `--doc`, the results replace the section between the markers below in that file (added at its
end when missing); the rest of the file is left alone. PostgreSQL runs in a throwaway schema.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import sqlalchemy as sa

#: Connections per target request/s: each waits SPREAD seconds between its requests.
SPREAD = 4
BEGIN = "<!-- load_process:begin (bench/load_process.py writes this section) -->"
END = "<!-- load_process:end -->"
LUA = """
local counter = 0
local prefix = "L" .. tostring(math.random(100000, 999999))
setup = function(thread)
  thread:set("tid", tostring(math.random(1000, 9999)))
end
request = function()
  counter = counter + 1
  local order = prefix .. "-" .. tid .. "-" .. tostring(counter)
  local body = '{"order_id": "' .. order .. '", "insurer": "bench", "operation": "underwrite", '
    .. '"payload": {"premium": 1200, "product": "term-life-20"}}'
  return wrk.format("POST", "/process", {["Content-Type"] = "application/json"}, body)
end
local delays = 0
delay = function()
  -- each connection sends one request every INTERVAL ms; the first ones are spread over an interval
  delays = delays + 1
  if delays <= CONNECTIONS_PER_THREAD then
    return math.random(0, INTERVAL)
  end
  return INTERVAL
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write("WRKJSON " .. string.format(
    '{"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d, '
    .. '"p50_us": %d, "p99_us": %d, "max_us": %d}',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max) .. "\\n")
end
"""


@dataclass
class Run:
    db: str
    rate: int
    seconds: int
    wrk: dict[str, int] = field(default_factory=dict)
    per_second: list[float] = field(default_factory=list)
    states: dict[str, int] = field(default_factory=dict)

    @property
    def errors(self) -> int:
        socket_errors = sum(self.wrk[k] for k in ("connect", "read", "write", "timeout"))
        not_done = sum(v for k, v in self.states.items() if k != "SUCCEEDED")
        return socket_errors + self.wrk["status"] + not_done + max(0, self.wrk["requests"] - sum(self.states.values()))

    @property
    def achieved(self) -> float:
        """Mean req/s while steady (the per-second samples without the ramps)."""
        return sum(self.steady) / len(self.steady) if self.steady else 0.0

    @property
    def steady(self) -> list[float]:
        """Per-second rates without the first and last seconds (ramp-up, wind-down)."""
        return self.per_second[SPREAD:-2] or self.per_second

    @property
    def ok(self) -> bool:
        return self.errors == 0 and self.achieved >= 0.9 * self.rate


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found is None:
        print("wrk not found: apt-get install wrk", flush=True)
        subprocess.run(
            ["bash", "-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk"],
            check=True,
            stdin=subprocess.DEVNULL,
        )
        found = shutil.which("wrk")
    if found is None:
        raise RuntimeError("wrk is not on PATH after apt-get install wrk")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def process(argv: list[str], *, ready: str, log: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """A child process, waited for until GET `ready` answers 200; SIGTERM at the end."""
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{argv[3]} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(ready, timeout=1.0, trust_env=False).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{argv[3]} not ready:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def train_model(folder: Path) -> Path:
    """A small model (8,000 generated failures) in a registry under `folder`."""
    from training.generate import generate_failures, write_failures_csv
    from training.train import train_artifact

    data = folder / "history.csv"
    write_failures_csv(generate_failures(8_000, 5), data)
    registry = folder / "models"
    train_artifact([data], registry, make_active=True, holdout_metrics=False)
    return registry


@contextmanager
def database(db: str, pg_url: str, folder: Path) -> Iterator[str]:
    if db == "sqlite":
        yield f"sqlite:///{folder}/load.db"
        return
    schema = f"load_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{pg_url}{'&' if '?' in pg_url else '?'}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def process_count(metrics: str) -> float:
    pattern = re.compile(r'^asyncgate_http_request_seconds_count\{[^}]*route="/process"[^}]*\} (\S+)$', re.M)
    return sum(float(m) for m in pattern.findall(metrics))


def order_states(metrics: str) -> dict[str, int]:
    return {s: int(float(v)) for s, v in re.findall(r'^asyncgate_orders\{state="(\w+)"\} (\S+)$', metrics, re.M)}


def run_one(db: str, args: argparse.Namespace, wrk: str, registry: Path, folder: Path) -> Run:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCGATE_")}
    env |= {"PYTHONUNBUFFERED": "1", "ASYNCGATE_STATE_DIR": str(folder / "state"), "ASYNCGATE_LOG_LEVEL": "WARNING"}
    sim_port, port = free_port(), free_port()
    insurers = folder / "insurers.toml"
    insurers.write_text(f'[insurers.bench]\nbase_url = "http://127.0.0.1:{sim_port}"\ntimeout_s = 5.0\n')
    connections = SPREAD * args.rate
    script = folder / "load.lua"
    script.write_text(
        LUA.replace("CONNECTIONS_PER_THREAD", str(connections // 2)).replace("INTERVAL", str(SPREAD * 1000))
    )
    python = [sys.executable, "-m", "service"]
    sim_argv = [*python, "simulate-insurer", "--port", str(sim_port), "--scenario", "fast"]
    run = Run(db, args.rate, args.seconds)
    with (
        database(db, args.pg_url, folder) as db_url,
        process(sim_argv, ready=f"http://127.0.0.1:{sim_port}/_sim/health", log=folder / f"sim-{db}.log", env=env),
    ):
        serve_argv = [*python, "serve", "--port", str(port), "--db-url", db_url, "--model-dir", str(registry)]
        serve_argv += ["--insurers", str(insurers)]
        url = f"http://127.0.0.1:{port}"
        with process(serve_argv, ready=f"{url}/readyz", log=folder / f"serve-{db}.log", env=env):
            samples: list[tuple[float, float]] = []
            stop = threading.Event()

            def sample() -> None:
                with httpx.Client(base_url=url, timeout=5.0, trust_env=False) as http:
                    while not stop.wait(1.0 - (time.monotonic() % 1.0)):
                        samples.append((time.monotonic(), process_count(http.get("/metrics").text)))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            argv = [wrk, "-t2", f"-c{connections}", f"-d{args.seconds}s", "--timeout", "10s", "-s", str(script), url]
            done = subprocess.run(argv, capture_output=True, text=True, timeout=args.seconds + 60, check=True)
            stop.set()
            sampler.join(timeout=10)
            line = next(x for x in done.stdout.splitlines() if x.startswith("WRKJSON "))
            run.wrk = json.loads(line.removeprefix("WRKJSON "))
            run.per_second = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in itertools.pairwise(samples)]
            time.sleep(0.5)  # the last answers are recorded
            run.states = order_states(httpx.get(f"{url}/metrics", timeout=5.0, trust_env=False).text)
    return run


def markdown(runs: list[Run], args: argparse.Namespace) -> str:
    lines = [
        BEGIN,
        "## Steady /process load (issue 5: `bench/load_process.py`)",
        "",
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} cores; "
        f"`python -m bench.load_process --rate {args.rate} --seconds {args.seconds}`. One uvicorn worker, the insurer "
        "simulator in `fast` mode, wrk on loopback: every request a new order (reserve, call the insurer over "
        f"HTTP, record the outcome). Per-second rates are read from /metrics; the first {SPREAD} and the last 2 "
        "seconds (ramps) are left out of the mean, min and max.",
        "",
        "| database | target req/s | mean req/s | per-second min / max | requests | errors "
        "| p50 ms | p99 ms | max ms | orders SUCCEEDED |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        steady = run.steady
        lines.append(
            f"| {run.db} | {run.rate} | {run.achieved:.1f} | {min(steady):.0f} / {max(steady):.0f} "
            f"| {run.wrk['requests']} | {run.errors} | {run.wrk['p50_us'] / 1000:.1f} | {run.wrk['p99_us'] / 1000:.1f} "
            f"| {run.wrk['max_us'] / 1000:.1f} | {run.states.get('SUCCEEDED', 0)} |"
        )
    lines += ["", END]
    return "\n".join(lines)


def write_section(doc: Path, section: str) -> None:
    text = doc.read_text(encoding="utf-8") if doc.exists() else "# Benchmarks\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text, encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=50, help="requests per second (wrk opens 4x as many connections)")
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--db", action="append", choices=["sqlite", "postgresql"], help="default: both")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--doc", type=Path, help="write the results into this Markdown file's section")
    args = parser.parse_args()
    wrk = ensure_wrk()
    folder = Path(tempfile.mkdtemp(prefix="asyncgate-load-"))
    try:
        registry = train_model(folder)
        runs = [run_one(db, args, wrk, registry, folder) for db in args.db or ["sqlite", "postgresql"]]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    section = markdown(runs, args)
    print(section)
    if args.doc is not None:
        write_section(args.doc, section)
    failed = [run.db for run in runs if not run.ok]
    if failed:
        print(f"FAILED: {failed} had errors or fell below 90% of {args.rate} req/s", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
