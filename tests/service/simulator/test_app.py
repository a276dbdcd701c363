"""The simulator app in-process (httpx.ASGITransport): the outage reaching the query endpoint, state saved
on shutdown, configuration checked at creation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from service.simulator import SimulatorConfigError, create_simulator_app
from service.simulator.behaviour import OUTAGE_UP_S


def serve(app: FastAPI, steps: Callable[[httpx.AsyncClient], Awaitable[Any]]) -> Any:
    """Run `steps(client)` against the app inside its lifespan."""

    async def main() -> Any:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
                return await steps(client)

    return asyncio.run(main())


async def call(client: httpx.AsyncClient, order_id: str, payload: dict[str, Any]) -> httpx.Response:
    body = {"order_id": order_id, "operation": "underwrite", "payload": payload}
    return await client.post("/underwrite", json=body, headers={"Idempotency-Key": f"{order_id}:underwrite"})


def test_outage_takes_the_query_endpoint_down_too() -> None:
    app = create_simulator_app(scenario="fast")
    behaviour = app.state.behaviour

    async def steps(client: httpx.AsyncClient) -> list[httpx.Response]:
        await call(client, "O1", {})
        healthy = await client.get("/underwrite/O1")
        behaviour.switch("outage")
        behaviour._since -= OUTAGE_UP_S + 1  # jump into the first down period
        down = await client.get("/underwrite/O1")
        behaviour.switch("fast")
        return [healthy, down, await client.get("/underwrite/O1")]

    healthy, down, back = serve(app, steps)
    assert (healthy.status_code, down.status_code, back.status_code) == (200, 503, 200)
    assert down.headers["X-Sim-Plan"].startswith("maintenance:")


def test_state_is_saved_on_shutdown(tmp_path: Path) -> None:
    state = tmp_path / "ledger.json"

    async def twice(client: httpx.AsyncClient) -> None:
        await call(client, "O1", {})
        await call(client, "O1", {})

    async def ledger(client: httpx.AsyncClient) -> dict[str, Any]:
        result: dict[str, Any] = (await client.get("/_sim/ledger")).json()
        return result

    serve(create_simulator_app(scenario="fast", state_file=state), twice)
    saved = serve(create_simulator_app(scenario="fast", state_file=state), ledger)
    assert saved["completions"] == {"O1:underwrite": 1}
    assert saved["calls_by_key"] == {"O1:underwrite": 2}  # the replay's count was saved at shutdown


def test_reset_step_needs_a_real_server() -> None:
    with pytest.raises(RuntimeError, match="transport"):
        serve(create_simulator_app(), lambda client: call(client, "O1", {"sim": {"script": ["reset"]}}))


def test_unknown_scenario_or_style_fails_at_creation() -> None:
    with pytest.raises(SimulatorConfigError, match="scenario"):
        create_simulator_app(scenario="nope")
    with pytest.raises(SimulatorConfigError, match="style"):
        create_simulator_app(style="nope")
