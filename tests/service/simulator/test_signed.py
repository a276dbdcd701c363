"""The simulator's signed-form side in-process: signature checked first, invalid requests refused in the
protocol, the outage reaching the signed query, one ledger shared with the generic routes."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx

from service.gateway.signed_form import signed, verify
from service.simulator import create_simulator_app
from service.simulator.behaviour import OUTAGE_UP_S
from service.simulator.signed import SIM_SIGN_KEY
from tests.service.simulator.test_app import serve

KEY = SIM_SIGN_KEY.encode()
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def post(client: httpx.AsyncClient, path: str, params: dict[str, str], key: bytes = KEY) -> Any:
    return client.post(path, content=urlencode(signed(params, key, "HMAC-SHA256")), headers=FORM)


def read(response: httpx.Response) -> dict[str, str]:
    params = dict(parse_qsl(response.text))
    assert verify(params, KEY), "every signed-side answer is signed"
    return params


def test_invalid_signed_requests_get_signed_protocol_failures() -> None:
    async def steps(client: httpx.AsyncClient) -> list[httpx.Response]:
        return [
            await client.post("/signed/underwrite", content=b"not=a&signed=form", headers=FORM),
            await post(client, "/signed/teleport", {"order_id": "O1", "operation": "teleport"}),
            await post(
                client, "/signed/underwrite", {"order_id": "O1", "operation": "underwrite", "biz_content": "[1"}
            ),
            await post(client, "/signed/underwrite", {"order_id": "O1", "operation": "pay", "biz_content": "{}"}),
        ]

    unsigned, unknown, bad_json, mismatch = serve(create_simulator_app(scenario="fast"), steps)
    assert (unsigned.status_code, read(unsigned)["err_code"]) == (400, "SIGN_ERROR")
    assert (unknown.status_code, read(unknown)["err_code"]) == (404, "UNKNOWN_OPERATION")
    assert (bad_json.status_code, read(bad_json)["err_code"]) == (400, "INVALID_REQUEST")
    assert (mismatch.status_code, read(mismatch)["err_code"]) == (400, "INVALID_REQUEST")


def test_one_ledger_for_both_protocols_and_the_outage_reaches_the_signed_query() -> None:
    app = create_simulator_app(scenario="fast")
    behaviour = app.state.behaviour

    async def steps(client: httpx.AsyncClient) -> list[httpx.Response]:
        done = await post(client, "/signed/pay", {"order_id": "O2", "operation": "pay", "biz_content": '{"a":1}'})
        generic = await client.get("/pay/O2")
        query = {"order_id": "O2", "operation": "pay"}
        healthy = await post(client, "/signed/pay/query", query)
        behaviour.switch("outage")
        behaviour._since -= OUTAGE_UP_S + 1
        down = await post(client, "/signed/pay/query", query)
        behaviour.switch("fast")
        missing = await post(client, "/signed/pay/query", {"order_id": "O3", "operation": "pay"})
        return [done, generic, healthy, down, missing]

    done, generic, healthy, down, missing = serve(app, steps)
    assert read(done)["result_code"] == "SUCCESS"
    assert generic.status_code == 200, "completed through /signed, visible to the generic query"
    assert read(healthy)["trade_state"] == "COMPLETED"
    assert down.status_code == 503
    assert read(missing)["trade_state"] == "NOT_FOUND"
