"""The simulator as a real process: protocol answers, controls, double completion made visible, SIGTERM."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from model.schema import CATEGORIES
from tests.integration.conftest import CLEAN_EXIT, Simulator, start_simulator

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    """One simulator for the module (scenario fast), reset before each test."""
    sim = start_simulator(tmp_path_factory.mktemp("simulator"), scenario="fast", seed=11)
    yield sim
    assert sim.stop() in CLEAN_EXIT, sim.process.output()


@pytest.fixture
def sim(shared: Simulator) -> Iterator[Simulator]:
    shared.set_scenario("fast")
    shared.reset()
    yield shared


@pytest.fixture
def client(sim: Simulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, timeout=5.0, trust_env=False) as c:
        yield c


def post(
    client: httpx.Client, operation: str, order_id: str, payload: dict[str, Any], **headers: str
) -> httpx.Response:
    key = headers.pop("key", f"{order_id}:{operation}")
    hdrs = {"Content-Type": "application/json", **({"Idempotency-Key": key} if key else {})}
    body = {"order_id": order_id, "operation": operation, "payload": payload}
    return client.post(f"/{operation}", content=json.dumps(body), headers=hdrs)


def test_health_names_the_running_configuration(sim: Simulator, client: httpx.Client) -> None:
    health = client.get("/_sim/health").json()
    assert (health["status"], health["scenario"], health["seed"]) == ("ok", "fast", 11)
    assert isinstance(health["style"], str) and health["style"]


def test_success_and_query(sim: Simulator, client: httpx.Client) -> None:
    answer = post(client, "verify_identity", "V-1.a:b", {"name": "张三"})
    assert answer.status_code == 200
    body = answer.json()
    assert body["success"] is True
    assert body["data"]["order_id"] == "V-1.a:b"
    query = client.get("/verify_identity/V-1.a:b")
    assert (query.status_code, query.json()) == (200, body)
    missing = client.get("/verify_identity/V-2")
    assert missing.status_code == 404
    assert missing.json()["success"] is False


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("not json", "JSON object"),
        ('{"operation": "pay", "payload": {}}', "order_id"),
        ('{"order_id": "O1", "operation": "refund", "payload": {}}', "differs"),
        ('{"order_id": "O1", "operation": "pay", "payload": [1]}', "payload"),
        ('{"order_id": "O1", "operation": "pay", "payload": {"sim": {"script": ["nope"]}}}', "nope"),
    ],
)
def test_unreadable_calls_get_protocol_failures(client: httpx.Client, sim: Simulator, body: str, fragment: str) -> None:
    answer = client.post("/pay", content=body, headers={"Idempotency-Key": "O1:pay"})
    assert answer.status_code == 400
    doc = answer.json()
    assert doc["success"] is False and isinstance(doc["error_code"], str)
    assert fragment in doc["error_message"]
    assert sim.ledger()["calls"] == 0


def test_unknown_operation_is_404(client: httpx.Client) -> None:
    assert post(client, "teleport", "O1", {}).status_code == 404
    assert client.get("/teleport/O1").status_code == 404


def test_without_idempotency_key_the_ledger_shows_double_completion(sim: Simulator, client: httpx.Client) -> None:
    for _ in range(2):
        assert post(client, "pay", "D1", {}, key="").json()["success"] is True
    assert post(client, "pay", "D2", {}).json()["success"] is True
    assert post(client, "pay", "D2", {}).json()["success"] is True
    ledger = sim.ledger()
    assert ledger["completions"] == {"D1:pay": 2, "D2:pay": 1}
    assert ledger["calls"] == 4
    assert ledger["calls_by_key"] == {"D1:pay": 2, "D2:pay": 2}


@pytest.mark.parametrize("category", [c for c in CATEGORIES if c != "timeout"])  # "timeout" is the hang step
def test_category_steps_answer_worded_failures(sim: Simulator, client: httpx.Client, category: str) -> None:
    try:
        answer = post(client, "underwrite", f"C-{category}", {"sim": {"script": [category]}})
    except httpx.TransportError:  # a category played as the network failure itself (reset)
        assert sim.ledger()["completions"] == {}
        return
    assert answer.headers["X-Sim-Plan"].startswith(f"{category}:")
    if answer.headers["content-type"].startswith("application/json"):
        doc = answer.json()
        assert doc["success"] is False
        assert isinstance(doc["error_message"], str) and doc["error_message"]
        assert doc["error_code"] is None or isinstance(doc["error_code"], str)
    else:
        assert answer.headers["content-type"].startswith("text/html")
        assert answer.status_code >= 400
    assert sim.ledger()["completions"] == {}


def test_scenario_switch_and_reset(sim: Simulator, client: httpx.Client) -> None:
    assert client.post("/_sim/scenario", json={"scenario": "nope"}).status_code == 422
    assert sim.set_scenario("flaky") == {"scenario": "flaky"}
    assert client.get("/_sim/health").json()["scenario"] == "flaky"
    post(client, "pay", "R1", {"sim": {"script": ["success"]}})
    assert sim.ledger()["completions"] == {"R1:pay": 1}
    assert sim.reset()["completions"] == {}
    assert client.get("/pay/R1").status_code == 404


def test_bad_style_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="unknown style"):
        start_simulator(tmp_path, style="no_such_partner")
