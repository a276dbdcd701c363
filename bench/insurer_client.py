"""The insurer client's cost (issue 12): req/s of an endpoint that only makes the insurer call, old vs new.

Two child processes serve the same endpoint (`uvicorn bench.insurer_client:create_app --factory`, one
worker): POST /call makes one `InsurerGateway.call` (generic-json, the real adapter) to the fast
simulator and answers its outcome. They differ only in the transport under the adapter:

    httpx    HttpxTransport over an httpx.AsyncClient pooled as the gateway's was (200 connections)
    aiohttp  AiohttpTransport, the service's (a TCPConnector pool of 200 per insurer)

wrk (Debian's, installed when missing) loads each in turn with one thread and `--connections`
connections, every request a new order id. The simulator alone is measured too (its own ceiling).
Everything is on 127.0.0.1 and bounded in time.

    .venv/bin/python -m bench.insurer_client [--seconds 8] [--connections 32] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request

from bench.common import child_env, free_port, machine, now_iso, serving, uvicorn_argv
from bench.services import simulator
from bench.wrk import Load, run_wrk

CLIENTS = ("httpx", "aiohttp")


def create_app() -> FastAPI:
    """The endpoint: BENCH_CLIENT (httpx | aiohttp) picks the transport, BENCH_INSURER_URL the insurer."""
    import httpx

    from service.gateway import HttpTransport, HttpxTransport, InsurerGateway, InsurerRegistry, make_transport

    kind = os.environ.get("BENCH_CLIENT", "aiohttp")
    registry = InsurerRegistry.from_mapping({"sim": {"base_url": os.environ["BENCH_INSURER_URL"], "timeout_s": 5.0}})
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        transport: HttpTransport
        if kind == "httpx":  # the gateway's client before issue 12
            client = httpx.AsyncClient(
                limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
                follow_redirects=False,
                headers={"User-Agent": "asyncgate/0.1"},
                trust_env=False,
            )
            transport = HttpxTransport(client, owned=True)
        else:
            transport = make_transport(trust_env=False)
        state["gateway"] = InsurerGateway(registry, transport)
        try:
            yield
        finally:
            await transport.aclose()

    app = FastAPI(openapi_url=None, lifespan=lifespan)

    @app.get("/readyz")
    async def ready() -> dict[str, str]:
        return {"client": kind}

    @app.post("/call")
    async def call(request: Request) -> dict[str, Any]:
        body = await request.json()
        result = await state["gateway"].call("sim", str(body["order_id"]), "underwrite", {"amount": 100})
        return {"outcome": result.outcome, "status": result.http_status}

    return app


def measure(sim_url: str, kind: str, *, workdir: Path, seconds: int, connections: int) -> Load:
    port = free_port()
    env = child_env({"BENCH_CLIENT": kind, "BENCH_INSURER_URL": sim_url})
    argv = uvicorn_argv("bench.insurer_client:create_app", port)
    with serving(argv, port=port, log=workdir / "logs" / f"client-{kind}-{port}.log", ready_path="/readyz", env=env):
        url = f"http://127.0.0.1:{port}"
        run_wrk(url, "/call", [{"order_id": f"W{kind}"}], connections=connections, seconds=2, unique_field="order_id")
        return run_wrk(
            url, "/call", [{"order_id": f"B{kind}"}], connections=connections, seconds=seconds, unique_field="order_id"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2, help="alternate httpx/aiohttp this many times")
    parser.add_argument("--workdir", type=Path, default=Path(".asyncgate/bench"))
    args = parser.parse_args(argv)
    runs: dict[str, list[Load]] = {kind: [] for kind in CLIENTS}
    with simulator(args.workdir) as sim:
        body = [{"order_id": "S", "operation": "underwrite", "payload": {"amount": 100}}]
        alone = run_wrk(sim.url, "/underwrite", body, connections=args.connections, seconds=args.seconds)
        for _ in range(args.rounds):
            for kind in CLIENTS:
                load = measure(sim.url, kind, workdir=args.workdir, seconds=args.seconds, connections=args.connections)
                runs[kind].append(load)
                print(
                    f"{kind:8} {load.rps:8.0f} req/s  p50 {load.p50_ms:6.1f} ms  p99 {load.p99_ms:6.1f} ms"
                    f"  errors {load.errors}",
                    flush=True,
                )
    import aiohttp
    import httpx

    info = machine()
    print(f"aiohttp {aiohttp.__version__}, httpx {httpx.__version__}")
    print(f"\n{now_iso()}  {info.get('cpu', '')}  {info.get('cores', '')} cores  python {sys.version.split()[0]}")
    print(f"wrk -t1 -c{args.connections} -d{args.seconds}s, {args.rounds} rounds; median req/s:\n")
    print("| client | req/s (median) | each round | p50 ms | p99 ms | errors |")
    print("| --- | ---: | --- | ---: | ---: | ---: |")
    for kind in CLIENTS:
        loads = runs[kind]
        each = ", ".join(f"{x.rps:.0f}" for x in loads)
        print(
            f"| {kind} | {statistics.median(x.rps for x in loads):.0f} | {each} "
            f"| {statistics.median(x.p50_ms for x in loads):.1f} | {statistics.median(x.p99_ms for x in loads):.1f} "
            f"| {sum(x.errors for x in loads)} |"
        )
    print(f"| simulator alone | {alone.rps:.0f} | | {alone.p50_ms:.1f} | {alone.p99_ms:.1f} | {alone.errors} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
