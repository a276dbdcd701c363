"""The simulated insurer's HTTP app: docs/contract.md §3 (call and query) plus /_sim/* controls.

    POST /{operation}              a call; idempotent on Idempotency-Key (see ledger.py), behaviour
                                   from payload["sim"] or the scenario (see behaviour.py)
    GET  /{operation}/{order_id}   200 {"success": true, "data"} when completed, else 404
    GET  /_sim/health              {"status": "ok", "scenario", "seed", "style", "new_codes_style"}
    GET  /_sim/ledger              {"completions": {order: count}, "calls": N, "calls_by_key": {...}}
    POST /_sim/reset               forget every order and call, re-seed
    POST /_sim/scenario            {"scenario": NAME} switches the behaviour at runtime
    POST /signed/{operation}       the same insurer speaking signed-form (signed.py), same ledger
    POST /signed/{operation}/query and scenarios; base_url = http://HOST:PORT/signed

Requests the simulator cannot read get protocol failures (400 INVALID_REQUEST, 404 UNKNOWN_OPERATION).
Every answer carries `X-Sim-Plan` (the step or category:template played) for demos and debugging.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.types import Receive, Scope, Send

from model.schema import OPERATIONS
from service.simulator.behaviour import (
    Behaviour,
    Plan,
    ScriptError,
    SimulatorConfigError,
    gateway_page,
    parse_script,
)
from service.simulator.ledger import Ledger
from service.simulator.signed import SIGN_ERROR, SIM_SIGN_KEY, SignedDialect

log = logging.getLogger("asyncgate.simulator")
_TRANSPORT = "asyncgate.sim.transport"


class SimulatorApp(FastAPI):
    """FastAPI that remembers the connection's transport, so the `reset` step can drop it."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            owner = getattr(send, "__self__", None)  # uvicorn's per-request cycle holds the transport
            transport = getattr(owner, "transport", None)
            scope[_TRANSPORT] = transport if callable(getattr(transport, "abort", None)) else None  # uvloop too
        await super().__call__(scope, receive, send)


Success = Callable[[dict[str, Any], str], Response]
Failure = Callable[[int, str | None, str, str], Response]


def create_simulator_app(
    *,
    scenario: str = "normal",
    seed: int = 0,
    style: str | None = None,
    state_file: Path | None = None,
    sign_key: str = SIM_SIGN_KEY,
) -> FastAPI:
    """A simulated insurer; SimulatorConfigError for an unknown scenario or style."""
    behaviour = Behaviour(scenario=scenario, seed=seed, style=style)
    ledger = Ledger.open(state_file)
    dialect = SignedDialect(sign_key)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await ledger.save()  # keeps the call counters too

    app = SimulatorApp(title="asyncgate insurer simulator", lifespan=lifespan, openapi_url=None)
    app.state.ledger = ledger
    app.state.behaviour = behaviour

    @app.get("/_sim/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "scenario": behaviour.scenario,
            "seed": behaviour.seed,
            "style": behaviour.style,
            "new_codes_style": behaviour.novel_style,
        }

    @app.get("/_sim/ledger")
    async def ledger_view() -> dict[str, Any]:
        return {**ledger.snapshot(), "scenario": behaviour.scenario}

    @app.post("/_sim/reset")
    async def reset() -> dict[str, Any]:
        await ledger.reset()
        behaviour.reset()
        return {**ledger.snapshot(), "scenario": behaviour.scenario}

    @app.post("/_sim/scenario")
    async def switch(request: Request) -> Response:
        doc = await _json_body(request)
        name = doc.get("scenario") if isinstance(doc, dict) else None
        try:
            behaviour.switch(str(name))
        except SimulatorConfigError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=422)
        log.info("scenario switched to %s", name)
        return JSONResponse({"scenario": behaviour.scenario})

    async def down_answer(failure: Failure) -> Response | None:
        """The query endpoint is down with the rest of the insurer in an outage."""
        if not behaviour.down():
            return None
        plan = behaviour.render("maintenance", behaviour.style, status=503)
        if plan.action == "failure":
            return failure(plan.status, plan.error_code, plan.error_message, plan.label)
        return HTMLResponse(gateway_page(503), status_code=503, headers={"X-Sim-Plan": plan.label})

    async def handle_call(
        operation: str,
        doc: Any,
        request: Request,
        success: Success,
        failure: Failure,
    ) -> Response:
        problem = _invalid(doc, operation)
        if problem:
            return failure(400, "INVALID_REQUEST", problem, "invalid")
        order_id, payload = doc["order_id"], doc["payload"]
        try:
            script = parse_script(payload)
        except ScriptError as exc:
            return failure(400, "INVALID_SIM_SCRIPT", str(exc), "invalid")
        order_key = f"{order_id}:{operation}"
        key = request.headers.get("idempotency-key") or None
        n = ledger.record_call(key or order_key)
        replayed = ledger.replay(key)
        if replayed is not None:
            await asyncio.sleep(script.latency_s if script else 0.0)
            return success(replayed, "replay")
        plan = behaviour.scripted(script, n) if script else behaviour.plan()
        complete = functools.partial(ledger.complete, order_key, key, order_id, operation)
        return await _play(plan, request, complete, success, failure)

    @app.post("/signed/{operation}/query")
    async def signed_query(operation: str, request: Request) -> Response:
        params = dialect.read(await request.body()) or {}

        def failure(status: int, code: str | None, message: str, label: str) -> Response:
            return dialect.failure(params, status, code, message, label)

        if not dialect.verifies(params):
            return failure(400, *SIGN_ERROR, "invalid")
        if operation not in OPERATIONS or params.get("operation") != operation:
            return failure(404, "UNKNOWN_OPERATION", f"unknown operation {operation!r}", "query")
        down = await down_answer(failure)
        if down is not None:
            return down
        return dialect.query(params, ledger.completed(f"{params.get('order_id', '')}:{operation}"))

    @app.post("/signed/{operation}")
    async def signed_call(operation: str, request: Request) -> Response:
        params = dialect.read(await request.body()) or {}

        def success(data: dict[str, Any], label: str) -> Response:
            return dialect.success(params, data, label)

        def failure(status: int, code: str | None, message: str, label: str) -> Response:
            return dialect.failure(params, status, code, message, label)

        if not dialect.verifies(params):
            return failure(400, *SIGN_ERROR, "invalid")
        if operation not in OPERATIONS:
            return failure(404, "UNKNOWN_OPERATION", f"unknown operation {operation!r}", "invalid")
        try:
            payload = json.loads(params.get("biz_content", ""))
        except ValueError:
            payload = None
        doc = {"order_id": params.get("order_id"), "operation": params.get("operation"), "payload": payload}
        return await handle_call(operation, doc, request, success, failure)

    @app.get("/{operation}/{order_id}")
    async def query(operation: str, order_id: str) -> Response:
        if operation not in OPERATIONS:
            return _failure(404, "UNKNOWN_OPERATION", f"unknown operation {operation!r}", "query")
        down = await down_answer(_failure)
        if down is not None:
            return down
        data = ledger.completed(f"{order_id}:{operation}")
        if data is None:
            return _failure(404, "ORDER_NOT_FOUND", f"order {order_id} not found for {operation}", "query")
        return _success(data, "query")

    @app.post("/{operation}")
    async def call(operation: str, request: Request) -> Response:
        if operation not in OPERATIONS:
            return _failure(404, "UNKNOWN_OPERATION", f"unknown operation {operation!r}", "invalid")
        return await handle_call(operation, await _json_body(request), request, _success, _failure)

    return app


async def _play(
    plan: Plan,
    request: Request,
    complete: Callable[[], Awaitable[dict[str, Any]]],
    success: Success,
    failure: Failure,
) -> Response:
    if plan.action == "complete_then_hang":
        data = await complete()
        await asyncio.sleep(plan.delay_s)
        return success(data, plan.label)
    await asyncio.sleep(plan.delay_s)
    if plan.action == "success":
        return success(await complete(), plan.label)
    if plan.action == "failure":
        return failure(plan.status, plan.error_code, plan.error_message, plan.label)
    if plan.action == "page":
        return HTMLResponse(plan.body, status_code=plan.status, headers={"X-Sim-Plan": plan.label})
    if plan.action == "malformed":
        return Response(plan.body, media_type="application/json", headers={"X-Sim-Plan": plan.label})
    if plan.action == "hang":
        return HTMLResponse(gateway_page(504), status_code=504, headers={"X-Sim-Plan": plan.label})
    transport = request.scope.get(_TRANSPORT)
    if transport is None:
        raise RuntimeError("this server does not expose its transport: the reset step needs uvicorn")
    transport.abort()  # RST: the client sees the connection reset without an answer
    return Response(status_code=204)  # goes nowhere: the connection is gone


async def _json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except ValueError:
        return None


def _invalid(doc: Any, operation: str) -> str | None:
    if not isinstance(doc, dict):
        return 'the body must be a JSON object {"order_id", "operation", "payload"}'
    order_id = doc.get("order_id")
    if not isinstance(order_id, str) or not order_id:
        return "order_id must be a non-empty string"
    if doc.get("operation") != operation:
        return f"operation in the body ({doc.get('operation')!r}) differs from the path ({operation!r})"
    if not isinstance(doc.get("payload"), dict):
        return "payload must be a JSON object"
    return None


def _success(data: dict[str, Any], label: str) -> Response:
    return JSONResponse({"success": True, "data": data}, headers={"X-Sim-Plan": label})


def _failure(status: int, code: str | None, message: str, label: str) -> Response:
    body = {"success": False, "error_code": code, "error_message": message}
    return JSONResponse(body, status_code=status, headers={"X-Sim-Plan": label})


def serve_simulator(
    *, host: str, port: int, scenario: str, seed: int, style: str | None, state_file: Path | None
) -> None:
    """Run the simulator under uvicorn until SIGTERM/SIGINT (in-flight calls get 2 s to finish).

    The signed-form side signs with ASYNCGATE_SIM_SIGN_KEY when it is set, else SIM_SIGN_KEY."""
    sign_key = os.environ.get("ASYNCGATE_SIM_SIGN_KEY") or SIM_SIGN_KEY
    app = create_simulator_app(scenario=scenario, seed=seed, style=style, state_file=state_file, sign_key=sign_key)
    log.info(
        "insurer simulator on http://%s:%s: scenario=%s seed=%s style=%s (new-codes: %s) state=%s",
        host,
        port,
        scenario,
        seed,
        app.state.behaviour.style,
        app.state.behaviour.novel_style,
        state_file,
    )
    config = uvicorn.Config(app, host=host, port=port, access_log=False, timeout_graceful_shutdown=2, log_level="info")
    uvicorn.Server(config).run()
