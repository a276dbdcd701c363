"""The real gateway (aiohttp) against the real simulator (uvicorn subprocess): docs/contract.md §3 end to end."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from service.gateway import CallResult, InsurerGateway, InsurerRegistry, QueryResult, make_transport
from tests.integration.conftest import CLEAN_EXIT, Simulator, free_port

pytestmark = pytest.mark.integration

Step = Callable[[InsurerGateway], Any]


def run(sim_url: str, steps: Callable[[InsurerGateway], Any], *, timeout_s: float = 2.0) -> Any:
    """Run `steps(gateway)` against one insurer 'sim' at `sim_url`."""
    registry = InsurerRegistry.from_mapping({"sim": {"base_url": sim_url, "timeout_s": timeout_s}})

    async def main() -> Any:
        transport = make_transport(trust_env=False)
        try:
            return await steps(InsurerGateway(registry, transport))
        finally:
            await transport.aclose()

    return asyncio.run(main())


def sim(*script: str, **options: Any) -> dict[str, Any]:
    return {"amount": 100, "sim": {"script": list(script), **options}}


def test_success_then_query_says_completed(simulator: Callable[..., Simulator]) -> None:
    s = simulator(scenario="fast")

    async def steps(gw: InsurerGateway) -> tuple[QueryResult, CallResult, QueryResult]:
        before = await gw.query("sim", "P1", "underwrite")
        result = await gw.call("sim", "P1", "underwrite", {"amount": 100})
        return before, result, await gw.query("sim", "P1", "underwrite")

    before, result, after = run(s.url, steps)
    assert (before.completed, before.http_status) == (False, 404)
    assert result.outcome == "success"
    assert result.http_status == 200
    assert result.data is not None
    assert (result.data["order_id"], result.data["operation"]) == ("P1", "underwrite")
    assert (after.completed, after.data) == (True, result.data)
    assert s.ledger()["completions"] == {"P1:underwrite": 1}


def test_scripted_failure_then_success(simulator: Callable[..., Simulator]) -> None:
    s = simulator()

    async def steps(gw: InsurerGateway) -> list[CallResult]:
        payload = sim("insurer_busy", "validation", "success")
        return [await gw.call("sim", "P2", "pay", payload) for _ in range(3)]

    busy, invalid, ok = run(s.url, steps)
    for failure in (busy, invalid):
        assert failure.outcome in ("failure", "unknown")  # a gateway page (502/504) is unknown
        assert failure.error_message
        assert failure.http_status is not None and 200 <= failure.http_status < 600
        assert failure.data is None
    assert ok.outcome == "success"
    ledger = s.ledger()
    assert ledger["completions"] == {"P2:pay": 1}
    assert ledger["calls_by_key"] == {"P2:pay": 3}


def test_idempotent_replay_is_never_completed_twice(simulator: Callable[..., Simulator]) -> None:
    s = simulator()

    async def steps(gw: InsurerGateway) -> list[CallResult]:
        return [await gw.call("sim", "P3", "issue_policy", sim("success")) for _ in range(3)]

    results = run(s.url, steps)
    assert [r.outcome for r in results] == ["success"] * 3
    assert results[0].data == results[1].data == results[2].data
    ledger = s.ledger()
    assert ledger["completions"] == {"P3:issue_policy": 1}
    assert ledger["calls_by_key"] == {"P3:issue_policy": 3}


def test_complete_then_timeout_is_unknown_and_query_says_completed(
    simulator: Callable[..., Simulator],
) -> None:
    s = simulator()

    async def steps(gw: InsurerGateway) -> tuple[CallResult, QueryResult, CallResult]:
        first = await gw.call("sim", "P4", "underwrite", sim("complete_then_timeout", delay_s=5))
        query = await gw.query("sim", "P4", "underwrite")
        again = await gw.call("sim", "P4", "underwrite", sim("complete_then_timeout", delay_s=5))
        return first, query, again

    first, query, again = run(s.url, steps, timeout_s=0.5)
    assert first.outcome == "unknown"
    assert first.error_message is not None and first.error_message.startswith("ReadTimeout")
    assert (first.http_status, first.error_code) == (None, None)
    assert query.completed is True
    assert again.outcome == "success"  # the replay answers at once: the key already completed
    assert again.data == query.data
    assert s.ledger()["completions"] == {"P4:underwrite": 1}


def test_client_timeout_is_honoured(simulator: Callable[..., Simulator]) -> None:
    s = simulator()

    async def steps(gw: InsurerGateway) -> tuple[CallResult, QueryResult]:
        result = await gw.call("sim", "P5", "pay", sim("timeout", delay_s=5))
        return result, await gw.query("sim", "P5", "pay")

    result, query = run(s.url, steps, timeout_s=0.5)
    # the simulator would answer a 504 page after 5 s: a ReadTimeout with no status proves we gave up first
    assert result.outcome == "unknown"
    assert result.error_message is not None and result.error_message.startswith("ReadTimeout")
    assert result.http_status is None
    assert query.completed is False
    assert s.ledger()["completions"] == {}


@pytest.mark.parametrize(
    ("step", "outcome", "status", "fragment"),
    [
        ("html_502", "unknown", 502, "502 Bad Gateway"),
        ("html_504", "unknown", 504, "504 Gateway Time-out"),
        ("malformed", "failure", 200, '{"success":false'),
    ],
)
def test_non_protocol_answers(
    simulator: Callable[..., Simulator], step: str, outcome: str, status: int, fragment: str
) -> None:
    s = simulator()
    result = run(s.url, lambda gw: gw.call("sim", "P6", "claim", sim(step)))
    assert (result.outcome, result.http_status, result.error_code) == (outcome, status, None)
    assert result.error_message is not None and fragment in result.error_message
    assert s.ledger()["completions"] == {}


def test_connection_reset_is_unknown(simulator: Callable[..., Simulator]) -> None:
    s = simulator()

    async def steps(gw: InsurerGateway) -> tuple[CallResult, CallResult]:
        first = await gw.call("sim", "P7", "refund", sim("reset", "success"))
        return first, await gw.call("sim", "P7", "refund", sim("reset", "success"))

    reset, ok = run(s.url, steps)
    assert reset.outcome == "unknown"
    assert reset.http_status is None
    assert reset.error_message is not None and reset.error_message.split(":")[0] in (
        "ReadError",
        "RemoteProtocolError",
    )
    assert ok.outcome == "success"


def test_nobody_listening_is_a_failure() -> None:
    result = run(f"http://127.0.0.1:{free_port()}", lambda gw: gw.call("sim", "P8", "pay", {}))
    assert result.outcome == "failure"
    assert result.error_message is not None and result.error_message.startswith("ConnectError: Cannot connect to host")
    assert result.http_status is None


def test_state_file_survives_a_restart(simulator: Callable[..., Simulator], tmp_path: Path) -> None:
    state = tmp_path / "ledger.json"
    first = simulator(state_file=state)

    async def complete(gw: InsurerGateway) -> CallResult:
        return await gw.call("sim", "P9", "underwrite", sim("success"))

    done = run(first.url, complete)
    assert first.stop() in CLEAN_EXIT, first.process.output()
    second = simulator(state_file=state, port=first.port)

    async def after(gw: InsurerGateway) -> tuple[QueryResult, CallResult]:
        return await gw.query("sim", "P9", "underwrite"), await complete(gw)

    query, replay = run(second.url, after)
    assert (query.completed, query.data) == (True, done.data)
    assert (replay.outcome, replay.data) == ("success", done.data)
    ledger = second.ledger()
    assert ledger["completions"] == {"P9:underwrite": 1}
    assert ledger["calls_by_key"] == {"P9:underwrite": 2}


def test_scenario_switch_changes_behaviour(simulator: Callable[..., Simulator]) -> None:
    s = simulator(scenario="fast")

    async def burst(gw: InsurerGateway, prefix: str, n: int) -> list[CallResult]:
        return list(await asyncio.gather(*(gw.call("sim", f"{prefix}{i}", "pay", {}) for i in range(n))))

    fast = run(s.url, lambda gw: burst(gw, "F", 30))
    assert {r.outcome for r in fast} == {"success"}
    assert s.set_scenario("throttle") == {"scenario": "throttle"}
    throttled = run(s.url, lambda gw: burst(gw, "T", 60))
    rejected = [r for r in throttled if r.http_status == 429]
    assert rejected, "60 calls at once must exceed the throttle limit"
    assert all(r.outcome == "failure" and r.error_message for r in rejected)
    assert len(s.ledger()["completions"]) == 30 + sum(r.outcome == "success" for r in throttled)


def test_concurrent_calls_of_one_order_complete_it_once(simulator: Callable[..., Simulator]) -> None:
    s = simulator()
    payload = sim("success", latency_ms=100)

    async def steps(gw: InsurerGateway) -> list[CallResult]:
        return list(await asyncio.gather(*(gw.call("sim", "C1", "pay", payload) for _ in range(10))))

    results = run(s.url, steps)
    assert {r.outcome for r in results} == {"success"}
    assert len({r.data["reference"] for r in results if r.data}) == 1
    assert s.ledger()["completions"] == {"C1:pay": 1}


def test_dot_order_ids_reach_their_own_path(simulator: Callable[..., Simulator]) -> None:
    s = simulator(scenario="fast")

    async def steps(gw: InsurerGateway) -> tuple[QueryResult, CallResult, QueryResult, QueryResult]:
        before = await gw.query("sim", "..", "pay")
        done = await gw.call("sim", "..", "pay", {})
        return before, done, await gw.query("sim", "..", "pay"), await gw.query("sim", ".", "pay")

    before, done, after, other = run(s.url, steps)
    assert (before.completed, done.outcome, after.completed, other.completed) == (False, "success", True, False)
    assert after.data == done.data
