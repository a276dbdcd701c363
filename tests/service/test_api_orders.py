"""The orders resource against docs/contract.md §2: the order's shape, listing with filters and cursors,
and requeue (FAILED/DEAD → ASYNC_PROCESSING, anything else refused)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.service.conftest import MODEL_VERSION, Service, busy, final

ORDER_KEYS = {
    "order_id",
    "state",
    "insurer",
    "operation",
    "created_at",
    "updated_at",
    "next_attempt_at",
    "attempts",
}
ATTEMPT_KEYS = {
    "at",
    "latency_ms",
    "outcome",
    "error_code",
    "error_message",
    "http_status",
    "async_eligible",
    "probability",
    "model_version",
}


def aware(stamp: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(stamp)
    assert moment.tzinfo is not None, f"{stamp} has no time zone"
    return moment


def test_an_order_has_the_contract_fields(service: Service) -> None:
    service.insurer.script("O1", busy())
    service.process("O1", operation="pay")
    order = service.order("O1")
    assert ORDER_KEYS <= set(order)
    assert (order["order_id"], order["state"], order["insurer"], order["operation"]) == (
        "O1",
        "ASYNC_PROCESSING",
        "acme",
        "pay",
    )
    assert aware(order["created_at"]) <= aware(order["updated_at"]) <= aware(order["next_attempt_at"])
    (attempt,) = order["attempts"]
    assert ATTEMPT_KEYS <= set(attempt)
    assert aware(order["created_at"]) <= aware(attempt["at"])
    assert attempt["latency_ms"] >= 0
    assert (attempt["outcome"], attempt["error_code"], attempt["http_status"]) == ("failure", "E1001", 503)
    assert attempt["error_message"] == "系统繁忙，请稍后再试"
    assert attempt["async_eligible"] is True
    assert 0.0 <= attempt["probability"] <= 1.0
    assert attempt["model_version"] == MODEL_VERSION


def test_a_successful_attempt_has_no_error_or_classification(service: Service) -> None:
    service.process("O2")
    (attempt,) = service.order("O2")["attempts"]
    assert attempt["outcome"] == "success"
    assert (attempt["error_code"], attempt["error_message"], attempt["async_eligible"]) == (None, None, None)


def test_every_transition_of_an_order_is_recorded(service: Service) -> None:
    service.insurer.script("O3", final())
    service.process("O3")
    moves = [(t["from_state"], t["to_state"]) for t in service.order("O3")["transitions"]]
    assert moves == [(None, "ASYNC_PROCESSING"), ("ASYNC_PROCESSING", "FAILED")]


def test_unknown_order_gets_404(service: Service) -> None:
    response = service.client.get("/orders/NOPE")
    assert response.status_code == 404
    assert "NOPE" in response.json()["detail"]


def _seed(service: Service) -> dict[str, tuple[str, str]]:
    """Six orders: order_id → (state, insurer)."""
    plan = {
        "L1": (None, "acme"),
        "L2": (busy(), "acme"),
        "L3": (final(), "beta"),
        "L4": (busy(), "beta"),
        "L5": (final(), "acme"),
        "L6": (None, "beta"),
    }
    expected = {}
    for order_id, (step, insurer) in plan.items():
        if step is not None:
            service.insurer.script(order_id, step)
        body = service.process(order_id, insurer=insurer).json()
        expected[order_id] = (body["state"], insurer)
    return expected


def _page(service: Service, **params: Any) -> dict[str, Any]:
    response = service.client.get("/orders", params=params)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"state": "FAILED"},
        {"state": "ASYNC_PROCESSING"},
        {"insurer": "beta"},
        {"state": "SUCCEEDED", "insurer": "acme"},
    ],
)
def test_list_filters_by_state_and_insurer(service: Service, params: dict[str, str]) -> None:
    expected = _seed(service)
    page = _page(service, **params)
    wanted = {
        order_id
        for order_id, (state, insurer) in expected.items()
        if params.get("state", state) == state and params.get("insurer", insurer) == insurer
    }
    assert wanted, "every filter selects at least one seeded order"
    assert {o["order_id"] for o in page["orders"]} == wanted
    assert page["next_cursor"] is None
    for order in page["orders"]:
        assert ORDER_KEYS <= set(order)


def test_pages_follow_next_cursor_through_every_order_newest_first(service: Service) -> None:
    expected = _seed(service)
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        page = _page(service, limit=4, **({"cursor": cursor} if cursor else {}))
        assert len(page["orders"]) <= 4
        seen += [o["order_id"] for o in page["orders"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(expected, reverse=True)


def test_an_invalid_cursor_gets_400(service: Service) -> None:
    response = service.client.get("/orders", params={"cursor": "not-a-cursor"})
    assert response.status_code == 400
    assert "cursor" in response.json()["detail"]


@pytest.mark.parametrize(
    "params",
    [{"state": "DONE"}, {"limit": 0}, {"limit": "many"}, {"state": "succeeded"}],
    ids=["unknown-state", "limit-0", "limit-text", "lowercase-state"],
)
def test_bad_list_parameters_get_422(service: Service, params: dict[str, Any]) -> None:
    response = service.client.get("/orders", params=params)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", next(iter(params))]


def test_requeue_puts_a_failed_order_back_and_records_it(service: Service) -> None:
    service.insurer.script("R1", final())
    service.process("R1")
    before = dt.datetime.now(dt.UTC)
    response = service.client.post("/orders/R1/requeue")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["order_id"], body["state"]) == ("R1", "ASYNC_PROCESSING")
    assert aware(body["next_attempt_at"]) >= before - dt.timedelta(seconds=1)
    order = service.order("R1")
    assert order["state"] == "ASYNC_PROCESSING"
    last = order["transitions"][-1]
    assert (last["from_state"], last["to_state"]) == ("FAILED", "ASYNC_PROCESSING")
    assert len(order["attempts"]) == 1, "a requeue is not an attempt"
    again = service.client.post("/orders/R1/requeue")
    assert again.status_code == 409, "an order already in ASYNC_PROCESSING cannot be requeued"


def test_requeue_of_a_succeeded_order_gets_409_and_changes_nothing(service: Service) -> None:
    service.process("R2")
    before = service.order("R2")
    response = service.client.post("/orders/R2/requeue")
    assert response.status_code == 409
    assert "R2" in response.json()["detail"]
    assert service.order("R2") == before


def test_requeue_of_an_unknown_order_gets_404(service: Service) -> None:
    assert service.client.post("/orders/NOPE/requeue").status_code == 404
