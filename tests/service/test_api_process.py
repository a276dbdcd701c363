"""POST /process against docs/contract.md §2 and §3: outcomes → state and next_action, idempotency,
conflicts, refusals that write nothing, body limits, and what the insurer receives."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from model.records import Failure
from service.scoring import ServingModel, Verdict
from service.store import OrderRecord
from tests.service.conftest import (
    BASE_URL,
    FINAL_MESSAGE,
    INSURER,
    MODEL_VERSION,
    Service,
    Step,
    busy,
    final,
    raises,
    success,
)

PROCESS_KEYS = {"order_id", "state", "next_action", "result", "attempts", "failure"}
FAILURE_KEYS = {
    "error_code",
    "error_message",
    "http_status",
    "latency_ms",
    "async_eligible",
    "probability",
    "category",
    "model_version",
}


def stored(service: Service, order_id: str) -> OrderRecord | None:
    found: OrderRecord | None = service.app.state.store.get(order_id)
    return found


def assert_nothing_written(service: Service, order_id: str | None = None) -> None:
    if order_id is not None:
        assert service.client.get(f"/orders/{order_id}").status_code == 404
    assert service.client.get("/orders").json()["orders"] == []
    assert service.insurer.calls() == []


def test_success_completes_with_the_insurer_data(service: Service) -> None:
    service.insurer.script("P1", success({"policy_no": "POL-1", "premium": 99.5}))
    response = service.process("P1")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == PROCESS_KEYS
    assert body == {
        "order_id": "P1",
        "state": "SUCCEEDED",
        "next_action": "complete",
        "result": {"policy_no": "POL-1", "premium": 99.5},
        "attempts": 1,
        "failure": None,
    }
    order = service.order("P1")
    assert (order["state"], order["next_attempt_at"]) == ("SUCCEEDED", None)


def test_definitive_failure_returns_it(service: Service, serving_model: ServingModel) -> None:
    service.insurer.script("P2", final())
    body = service.process("P2").json()
    assert (body["state"], body["next_action"], body["result"], body["attempts"]) == (
        "FAILED",
        "return_failure",
        None,
        1,
    )
    f = body["failure"]
    assert FAILURE_KEYS <= set(f)
    assert (f["error_code"], f["error_message"], f["http_status"]) == ("E2001", FINAL_MESSAGE, 200)
    assert f["latency_ms"] >= 0
    assert f["async_eligible"] is False
    assert f["probability"] < serving_model.threshold
    assert (f["category"], f["model_version"]) == ("validation", MODEL_VERSION)
    assert service.order("P2")["next_attempt_at"] is None


def test_async_eligible_failure_keeps_the_order_and_its_payload(service: Service) -> None:
    payload = {"product": "term-life-20", "premium": 1200, "insured": {"age": 41}}
    service.insurer.script("P3", busy())
    body = service.process("P3", payload).json()
    assert (body["state"], body["next_action"], body["result"], body["attempts"]) == (
        "ASYNC_PROCESSING",
        "await_async",
        None,
        1,
    )
    f = body["failure"]
    assert (f["error_code"], f["http_status"], f["async_eligible"], f["category"]) == (
        "E1001",
        503,
        True,
        "insurer_busy",
    )
    order = service.order("P3")
    assert order["state"] == "ASYNC_PROCESSING"
    assert order["next_attempt_at"] is not None
    assert order["next_attempt_at"] >= order["updated_at"]
    record = stored(service, "P3")
    assert record is not None
    assert (record.payload, record.insurer, record.operation) == (payload, INSURER, "underwrite")


class AlwaysFinal(ServingModel):
    """The toy model, except that every failure is called final (probability 0.01)."""

    def classify(self, failure: Failure) -> Verdict:
        verdict = super().classify(failure)
        return dataclasses.replace(verdict, async_eligible=False, probability=0.01)


def test_unknown_outcome_stays_async_even_when_the_model_says_final(
    service: Service, serving_model: ServingModel
) -> None:
    service.app.state.models.swap(AlwaysFinal(serving_model.loaded))
    service.insurer.script("P4", raises(httpx.ReadTimeout, "timed out"), final())
    body = service.process("P4").json()
    assert (body["state"], body["next_action"]) == ("ASYNC_PROCESSING", "await_async")
    f = body["failure"]
    assert f["async_eligible"] is False, "the model calls it final; the unknown outcome must win"
    assert (f["error_code"], f["http_status"], f["error_message"]) == (None, None, "ReadTimeout: timed out")
    assert service.order("P4")["next_attempt_at"] is not None
    # the same model on an answered failure, even a busy one: FAILED (it really says final)
    service.insurer.script("P4c", busy())
    assert service.process("P4c").json()["state"] == "FAILED"


def test_a_gateway_page_is_an_unknown_outcome(service: Service) -> None:
    def page(insurer: Any, request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        return httpx.Response(504, text="<html><body>504 Gateway Time-out</body></html>")

    service.insurer.script("P5", page)
    body = service.process("P5").json()
    assert body["state"] == "ASYNC_PROCESSING"
    assert (body["failure"]["http_status"], body["failure"]["error_code"]) == (504, None)
    assert "504 Gateway Time-out" in body["failure"]["error_message"]


def test_a_connection_refused_is_classified_like_any_failure(service: Service) -> None:
    service.insurer.script("P6", raises(httpx.ConnectError, "[Errno 111] Connection refused"))
    body = service.process("P6").json()
    assert body["failure"]["error_message"] == "ConnectError: [Errno 111] Connection refused"
    expected = "ASYNC_PROCESSING" if body["failure"]["async_eligible"] else "FAILED"
    assert body["state"] == expected


@pytest.mark.parametrize("step", [success(), busy(), final()], ids=["succeeded", "async", "failed"])
def test_repeat_returns_the_stored_order_without_a_second_call(service: Service, step: Step) -> None:
    service.insurer.script("P7", step)
    payload = {"b": 2, "a": {"y": 1, "x": [1, 2]}}
    first = service.process("P7", payload)
    again = service.process("P7", {"a": {"x": [1, 2], "y": 1}, "b": 2})  # same object, other key order
    assert again.status_code == 200
    assert again.json() == first.json()
    assert len(service.insurer.calls("P7")) == 1
    assert service.insurer.queries() == []


def test_same_order_id_with_another_body_gets_409_and_changes_nothing(service: Service) -> None:
    service.insurer.script("P8", busy())
    service.process("P8", {"premium": 1200})
    before = service.order("P8")
    for changed in ({"payload": {"premium": 1300}}, {"operation": "pay"}):
        response = service.process("P8", **({"payload": {"premium": 1200}} | changed))
        assert response.status_code == 409, response.text
        assert "P8" in response.json()["detail"]
    assert service.order("P8") == before
    record = stored(service, "P8")
    assert record is not None
    assert record.payload == {"premium": 1200}
    assert len(service.insurer.calls()) == 1


def test_unknown_insurer_gets_400_naming_it_and_writes_nothing(service: Service) -> None:
    response = service.process("P9", insurer="nobody-mutual")
    assert response.status_code == 400
    assert "nobody-mutual" in response.json()["detail"]
    assert_nothing_written(service, "P9")


def _nested(depth: int) -> dict[str, Any]:
    """A payload object whose nesting depth is `depth` (the payload itself is level 1)."""
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"k": value}
    return value


def _body(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"order_id": "P10", "insurer": INSURER, "operation": "underwrite", "payload": {"n": 1}}
    body.update(fields)
    return {k: v for k, v in body.items() if v is not ...}


INVALID = [
    pytest.param(_body(order_id="P" * 65), "order_id", id="order_id-65-chars"),
    pytest.param(_body(order_id=""), "order_id", id="order_id-empty"),
    pytest.param(_body(order_id="P 10"), "order_id", id="order_id-space"),
    pytest.param(_body(order_id="P/10"), "order_id", id="order_id-slash"),
    pytest.param(_body(order_id="订单10"), "order_id", id="order_id-cjk"),
    pytest.param(_body(order_id=10), "order_id", id="order_id-number"),
    pytest.param(_body(order_id=...), "order_id", id="order_id-missing"),
    pytest.param(_body(payload=...), "payload", id="payload-missing"),
    pytest.param(_body(payload=[1, 2]), "payload", id="payload-array"),
    pytest.param(_body(payload="{}"), "payload", id="payload-string"),
    pytest.param(_body(payload=None), "payload", id="payload-null"),
    pytest.param(_body(payload=_nested(33)), "payload", id="payload-nested-33"),
    pytest.param(_body(insurer=...), "insurer", id="insurer-missing"),
    pytest.param(_body(operation=...), "operation", id="operation-missing"),
]


@pytest.mark.parametrize(("body", "field"), INVALID)
def test_invalid_bodies_get_422_with_field_messages_and_write_nothing(
    service: Service, body: dict[str, Any], field: str
) -> None:
    response = service.client.post("/process", json=body)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert [item["loc"][:2] for item in detail] == [["body", field]]
    assert all(item["msg"] for item in detail)
    assert_nothing_written(service)


def test_the_boundaries_themselves_are_accepted(service: Service) -> None:
    longest = "Az09_-.:" * 8
    assert len(longest) == 64
    response = service.process(longest, _nested(32))
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "SUCCEEDED"
    assert service.order(longest)["order_id"] == longest


def test_payload_over_64_kib_gets_413_and_writes_nothing(service: Service) -> None:
    response = service.process("P11", {"blob": "x" * (64 * 1024)})
    assert response.status_code == 413, response.text
    assert_nothing_written(service, "P11")


def test_a_payload_just_under_64_kib_is_accepted(service: Service) -> None:
    response = service.process("P12", {"blob": "x" * (64 * 1024 - 100)})
    assert response.status_code == 200, response.text


def test_body_over_the_limit_gets_413_and_writes_nothing(service: Service) -> None:
    response = service.process("P13", {"blob": "x" * (256 * 1024)})
    assert response.status_code == 413
    assert "limit" in response.json()["detail"]
    assert_nothing_written(service, "P13")


def test_streamed_body_over_the_limit_gets_413(service: Service) -> None:
    head = json.dumps({"order_id": "P14", "insurer": INSURER, "operation": "underwrite", "payload": {"blob": ""}})

    def chunks() -> Iterator[bytes]:
        yield head[:-3].encode()
        for _ in range(300):
            yield b"x" * 1024
        yield head[-3:].encode()

    response = service.client.post("/process", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert_nothing_written(service, "P14")


def test_the_insurer_receives_the_protocol_request(service: Service) -> None:
    payload = {"product": "term-life-20", "名字": "张三"}
    service.process("P15:x", payload, operation="issue_policy")
    (request,) = service.insurer.calls()
    assert request.method == "POST"
    assert str(request.url) == f"{BASE_URL}/issue_policy"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Idempotency-Key"] == "P15:x:issue_policy"
    assert json.loads(request.content) == {"order_id": "P15:x", "operation": "issue_policy", "payload": payload}


@pytest.fixture
def on_postgres(start_service: Callable[..., Service], pg_url: str) -> Service:
    return start_service(db_url=pg_url)


@pytest.mark.postgres
def test_process_and_repeat_on_postgresql(on_postgres: Service) -> None:
    on_postgres.insurer.script("PG1", busy())
    first = on_postgres.process("PG1", {"premium": 1})
    assert first.json()["state"] == "ASYNC_PROCESSING"
    assert on_postgres.process("PG1", {"premium": 1}).json() == first.json()
    assert on_postgres.process("PG1", {"premium": 2}).status_code == 409
    assert len(on_postgres.insurer.calls()) == 1


# -- what an insurer's JSON can hold that our encoders and databases cannot ---------------------------

#: A success whose data holds a lone surrogate escape, a NUL and an integer beyond 64 bits (all valid JSON).
ODD_SUCCESS = (
    b'{"success": true, "data": {"policy_no": "P\\udc00-1\\u0000", "serial": 1180591620717411303424, '
    b'"\\ud800key": [18446744073709551616, -9223372036854775809, 9223372036854775807, 1.5]}}'
)
#: A failure whose message holds a lone surrogate escape and a NUL.
ODD_FAILURE = (
    b'{"success": false, "error_code": "E\\ud83d", "error_message": "\\u7cfb\\u7edf\\u7e41\\u5fd9\\udfff\\u0000"}'
)


def raw(status: int, body: bytes) -> Step:
    def step(insurer: Any, request: httpx.Request, parsed: dict[str, Any]) -> httpx.Response:
        if status == 200 and b'"success": true' in body:
            insurer.complete(parsed, {})
        return httpx.Response(status, content=body, headers={"content-type": "application/json"})

    return step


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def either_store(request: pytest.FixtureRequest, start_service: Callable[..., Service]) -> Service:
    if request.param == "sqlite":
        return start_service()
    return start_service(db_url=request.getfixturevalue("pg_url"))


def test_an_insurer_answer_our_encoders_refuse_is_stored_made_safe_not_lost(either_store: Service) -> None:
    service = either_store
    service.insurer.script("ODD1", raw(200, ODD_SUCCESS))
    answer = service.process("ODD1", {"n": 1})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["state"] == "SUCCEEDED"
    # lone surrogates and NUL become U+FFFD; integers beyond 64 bits are kept, digit for digit, as text
    assert body["result"] == {
        "policy_no": "P\ufffd-1\ufffd",
        "serial": "1180591620717411303424",
        "\ufffdkey": ["18446744073709551616", "-9223372036854775809", 9223372036854775807, 1.5],
    }
    assert service.order("ODD1")["result"] == body["result"]
    feed = service.client.get("/events").json()["events"]
    assert [e["to_state"] for e in feed] == ["ASYNC_PROCESSING", "SUCCEEDED"]
    assert feed[1]["order"]["result"] == body["result"]

    service.insurer.script("ODD2", raw(503, ODD_FAILURE))
    kept = service.process("ODD2", {"n": 2})
    assert kept.status_code == 200, kept.text
    failure = kept.json()["failure"]
    assert (failure["error_code"], failure["error_message"]) == ("E\ufffd", "系统繁忙\ufffd\ufffd")


def test_an_insurer_answer_nested_past_what_json_encoders_take_is_kept_cut(service: Service) -> None:
    deep = b"[" * 300 + b"1" + b"]" * 300  # json.loads takes it; orjson stops at 255 levels
    service.insurer.script("DEEP1", raw(200, b'{"success": true, "data": {"tree": ' + deep + b"}}"))
    answer = service.process("DEEP1", {"n": 1})
    assert answer.status_code == 200, answer.text
    assert answer.json()["state"] == "SUCCEEDED"
    node, levels = answer.json()["result"]["tree"], 1
    while isinstance(node, list):
        node, levels = node[0], levels + 1
    assert (node, levels) == ("…", 64)  # the data object is level 0: its tree keeps 63 levels
    assert [e["to_state"] for e in service.client.get("/events").json()["events"]] == ["ASYNC_PROCESSING", "SUCCEEDED"]
