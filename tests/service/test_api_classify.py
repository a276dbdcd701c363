"""POST /classify and /classify/batch against docs/contract.md §2: shape, validation (422 with field
locations), batch bounds and order, and the thread path of big batches."""

from __future__ import annotations

import json
import unicodedata
from typing import Any

import anyio.to_thread
import pytest

from service.api.classify import INLINE_BATCH
from service.scoring import ServingModel
from tests.factories import failure_row
from tests.service.conftest import BUSY_MESSAGE, FINAL_MESSAGE, MODEL_VERSION, Service

RESPONSE_KEYS = {
    "async_eligible",
    "probability",
    "threshold",
    "category",
    "model_version",
    "explanation",
    "decided_by",  # docs/contract.md §7
    "rule_id",
}


def classify(service: Service, **overrides: Any) -> dict[str, Any]:
    response = service.client.post("/classify", json=failure_row(**overrides))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_response_has_exactly_the_contract_shape(service: Service, serving_model: ServingModel) -> None:
    body = classify(service)
    assert set(body) == RESPONSE_KEYS
    assert isinstance(body["async_eligible"], bool)
    assert 0.0 <= body["probability"] <= 1.0
    assert body["threshold"] == serving_model.threshold
    assert body["model_version"] == MODEL_VERSION
    assert isinstance(body["explanation"], list)
    assert body["explanation"], "a verdict explains itself"
    message = unicodedata.normalize("NFKC", failure_row()["error_message"]).casefold()
    for item in body["explanation"]:  # docs/contract.md §7
        assert item["kind"] in {"text", "code", "status", "latency", "insurer", "operation"}
        assert set(item) == (
            {"kind", "feature", "weight", "span"} if item["kind"] == "text" else {"kind", "feature", "weight"}
        )
        assert isinstance(item["feature"], str)
        assert isinstance(item["weight"], float)
        if item["kind"] == "text":
            assert item["span"] in message


@pytest.mark.parametrize(
    ("message", "eligible", "category"),
    [(BUSY_MESSAGE, True, "insurer_busy"), (FINAL_MESSAGE, False, "validation")],
)
def test_verdict_follows_probability_and_threshold(
    service: Service, message: str, eligible: bool, category: str
) -> None:
    body = classify(service, error_message=message)
    assert body["async_eligible"] is eligible
    assert body["async_eligible"] == (body["probability"] >= body["threshold"])
    assert body["category"] == category


def test_unseen_insurer_operation_and_code_are_normal_input(service: Service) -> None:
    body = classify(service, insurer="never-seen-mutual", operation="teleport", error_code="ZZ-99999")
    assert body["model_version"] == MODEL_VERSION
    assert body["async_eligible"] == (body["probability"] >= body["threshold"])


@pytest.mark.parametrize(
    "optional",
    [
        {"error_code": None, "http_status": None, "latency_ms": None},
        {},
    ],
    ids=["null", "absent"],
)
def test_optional_fields_may_be_null_or_absent(service: Service, optional: dict[str, Any]) -> None:
    body = {"insurer": "acme", "operation": "pay", "error_message": "", **optional}
    response = service.client.post("/classify", json=body)
    assert response.status_code == 200, response.text
    assert set(response.json()) == RESPONSE_KEYS


def _without(field: str) -> dict[str, Any]:
    row = failure_row()
    del row[field]
    return row


INVALID = [
    pytest.param(_without("error_message"), "error_message", id="missing-error_message"),
    pytest.param(_without("insurer"), "insurer", id="missing-insurer"),
    pytest.param(_without("operation"), "operation", id="missing-operation"),
    pytest.param(failure_row(http_status=True), "http_status", id="http_status-true"),
    pytest.param(failure_row(http_status="abc"), "http_status", id="http_status-abc"),
    pytest.param(failure_row(http_status=503.5), "http_status", id="http_status-503.5"),
    pytest.param(failure_row(http_status="503"), "http_status", id="http_status-string"),
    pytest.param(failure_row(http_status=[503]), "http_status", id="http_status-list"),
    pytest.param(failure_row(http_status=99), "http_status", id="http_status-99"),
    pytest.param(failure_row(http_status=600), "http_status", id="http_status-600"),
    pytest.param(failure_row(latency_ms=False), "latency_ms", id="latency_ms-false"),
    pytest.param(failure_row(latency_ms=-1), "latency_ms", id="latency_ms-negative"),
    pytest.param(failure_row(latency_ms="12.5"), "latency_ms", id="latency_ms-string"),
    pytest.param(failure_row(insurer=123), "insurer", id="insurer-number"),
    pytest.param(failure_row(error_message=None), "error_message", id="error_message-null"),
    pytest.param(failure_row(error_message={"text": "x"}), "error_message", id="error_message-object"),
    pytest.param(failure_row(error_code=1001), "error_code", id="error_code-number"),
    pytest.param(failure_row(operation=["pay"]), "operation", id="operation-list"),
]


@pytest.mark.parametrize(("body", "field"), INVALID)
def test_invalid_bodies_get_422_naming_the_field(service: Service, body: dict[str, Any], field: str) -> None:
    response = service.client.post("/classify", json=body)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert [item["loc"] for item in detail] == [["body", field]]
    assert all(item["msg"] for item in detail)


@pytest.mark.parametrize("raw", [b"{not json", b"[]", b'"text"'], ids=["malformed", "array", "string"])
def test_a_body_that_is_not_a_json_object_gets_422(service: Service, raw: bytes) -> None:
    response = service.client.post("/classify", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text


def _items(n: int) -> list[dict[str, Any]]:
    messages = [BUSY_MESSAGE, FINAL_MESSAGE, "余额不足", "java.net.SocketTimeoutException: Read timed out", ""]
    return [
        failure_row(
            error_message=messages[i % len(messages)], latency_ms=float(i % 97), http_status=None if i % 3 else 503
        )
        for i in range(n)
    ]


def test_batch_keeps_the_order_and_matches_single_calls(service: Service) -> None:
    items = _items(7)
    response = service.client.post("/classify/batch", json={"items": items})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert results == [service.client.post("/classify", json=item).json() for item in items]
    assert [r["async_eligible"] for r in results[:2]] == [True, False]


@pytest.mark.parametrize("n", [1, 10_000])
def test_batch_of_1_to_10000_items_is_accepted(service: Service, n: int) -> None:
    response = service.client.post("/classify/batch", json={"items": _items(n)})
    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) == n
    assert results[-1] == service.client.post("/classify", json=_items(n)[-1]).json()


@pytest.mark.parametrize("n", [0, 10_001])
def test_batch_outside_1_to_10000_items_gets_422(service: Service, n: int) -> None:
    response = service.client.post("/classify/batch", json={"items": _items(n)})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "items"]


def test_batch_with_one_invalid_item_names_its_index(service: Service) -> None:
    items = _items(3)
    items[1]["http_status"] = "abc"
    response = service.client.post("/classify/batch", json={"items": items})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "items", 1, "http_status"]


def test_big_batches_are_scored_in_a_thread_with_the_same_results(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    threaded: list[int] = []
    original = anyio.to_thread.run_sync

    async def spy(func: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(func, "__name__", "") == "classify_many":
            threaded.append(len(args[-1]))  # classify_many(model, failures)
        return await original(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", spy)
    small, big = _items(INLINE_BATCH), _items(INLINE_BATCH * 3 + 1)
    assert service.client.post("/classify/batch", json={"items": small}).status_code == 200
    assert threaded == [], "a batch of INLINE_BATCH items is scored on the event loop"
    response = service.client.post("/classify/batch", json={"items": big})
    assert response.status_code == 200
    assert threaded == [len(big)]
    one_by_one = [service.client.post("/classify", json=item).json() for item in big]
    assert response.json()["results"] == one_by_one


def test_openapi_documents_the_nullable_numbers(service: Service) -> None:
    response = service.client.get("/openapi.json")
    assert response.status_code == 200
    fields = response.json()["components"]["schemas"]["ClassifyRequest"]["properties"]
    status = {option.get("type") for option in fields["http_status"]["anyOf"]}
    assert status == {"integer", "null"}


@pytest.mark.parametrize("ensure_ascii", [False, True], ids=["utf-8", "escaped"])
def test_the_longest_message_fits_the_body_limit(service: Service, ensure_ascii: bool) -> None:
    body = json.dumps(failure_row(error_message="忙" * 65_536), ensure_ascii=ensure_ascii)
    response = service.client.post("/classify", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text[:200]


def test_a_body_over_the_classify_limit_gets_413(service: Service) -> None:
    response = service.client.post("/classify", json=failure_row(error_message="x" * (600 * 1024)))
    assert response.status_code == 413
