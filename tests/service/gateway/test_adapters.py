"""GenericJsonAdapter against every row of docs/contract.md §3, through a fake HttpTransport."""

from __future__ import annotations

import json

import pytest

from service.gateway import Answer, MaybeReceived, NotSent, TransportError
from service.gateway.adapters import MAX_MESSAGE_CHARS, path_segment
from tests.service.gateway.helpers import (
    Sent,
    answer,
    answering,
    json_answer,
    make_insurer,
    raising,
    run_call,
    run_query,
)

HTML_502 = "<html><head><title>502 Bad Gateway</title></head><body><center>nginx</center></body></html>"


def test_call_sends_exactly_the_contract_request() -> None:
    seen: list[Sent] = []

    def handler(request: Sent) -> Answer:
        seen.append(request)
        return json_answer(200, {"success": True, "data": {"policy_no": "X1"}})

    payload = {"applicant": {"name": "张三", "age": 30}, "amount": 100.5}
    result = run_call(handler, order_id="P2026112400001", operation="underwrite", payload=payload)

    (request,) = seen
    assert request.method == "POST"
    assert request.url == "http://insurer.test/api/underwrite"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Idempotency-Key"] == "P2026112400001:underwrite"
    assert request.pool == "acme", "each insurer has its own connection pool"
    assert request.json() == {
        "order_id": "P2026112400001",
        "operation": "underwrite",
        "payload": payload,
    }
    assert result.outcome == "success"
    assert result.data == {"policy_no": "X1"}
    assert (result.error_code, result.error_message, result.http_status) == (None, None, 200)
    assert result.latency_ms >= 0


def test_idempotency_key_differs_per_operation_of_one_order() -> None:
    keys: list[str] = []

    def handler(request: Sent) -> Answer:
        keys.append(request.headers["Idempotency-Key"])
        return json_answer(200, {"success": True, "data": {}})

    run_call(handler, order_id="A.b-1_c:2", operation="pay")
    run_call(handler, order_id="A.b-1_c:2", operation="refund")
    assert keys == ["A.b-1_c:2:pay", "A.b-1_c:2:refund"]


def test_timeouts_are_set_per_request_from_the_insurer() -> None:
    timeouts: list[tuple[float, float]] = []

    def handler(request: Sent) -> Answer:
        timeouts.append((request.timeout_s, request.connect_timeout_s))
        return json_answer(200, {"success": True})

    run_call(handler, insurer=make_insurer(timeout_s=3.0))
    run_call(handler, insurer=make_insurer(timeout_s=1.5))
    run_call(handler, insurer=make_insurer(timeout_s=7.0, connect_timeout_s=0.5))
    run_query(handler, insurer=make_insurer(timeout_s=4.0, connect_timeout_s=0.25))
    assert timeouts == [(3.0, 2.0), (1.5, 1.5), (7.0, 0.5), (4.0, 0.25)]


@pytest.mark.parametrize(
    ("status", "body", "data"),
    [
        (200, {"success": True}, {}),
        (200, {"success": True, "data": None}, {}),
        (201, {"success": True, "data": {"a": 1}}, {"a": 1}),
        (200, {"success": True, "data": ["x"]}, {"value": ["x"]}),
    ],
)
def test_success_data(status: int, body: dict[str, object], data: dict[str, object]) -> None:
    result = run_call(answering(status, json.dumps(body)))
    assert (result.outcome, result.data, result.http_status) == ("success", data, status)


@pytest.mark.parametrize(
    ("status", "error_code", "expected_code"),
    [(503, "E1001", "E1001"), (200, 1001, "1001"), (400, None, None), (502, "GW", "GW")],
)
def test_protocol_failure_at_any_status(status: int, error_code: object, expected_code: str | None) -> None:
    body = {"success": False, "error_code": error_code, "error_message": "系统繁忙，请稍后再试"}
    result = run_call(answering(status, json.dumps(body, ensure_ascii=False)))
    assert result.outcome == "failure"
    assert result.data is None
    assert result.error_code == expected_code
    assert result.error_message == "系统繁忙，请稍后再试"
    assert result.http_status == status


def test_protocol_failure_message_is_coerced_to_text() -> None:
    result = run_call(answering(400, json.dumps({"success": False, "error_code": "V1", "error_message": 42})))
    assert (result.outcome, result.error_code, result.error_message) == ("failure", "V1", "42")


@pytest.mark.parametrize("status", [502, 504])
def test_gateway_page_is_unknown(status: int) -> None:
    result = run_call(answering(status, HTML_502, "text/html"))
    assert result.outcome == "unknown"
    assert result.error_message == HTML_502
    assert (result.error_code, result.http_status, result.data) == (None, status, None)


@pytest.mark.parametrize(
    ("status", "body", "content_type"),
    [
        (503, "<html><body>Service Temporarily Unavailable</body></html>", "text/html"),
        (200, '{"success": true, "data": {"policy', "application/json"),  # malformed JSON
        (200, '{"code": 0, "msg": "ok"}', "application/json"),  # JSON without "success"
        (200, '{"success": false, "error_code": "E1"}', "application/json"),  # false without message
        (500, '{"success": true, "data": {}}', "application/json"),  # success flag on a 5xx
        (200, '{"success": "true"}', "application/json"),  # a string is not the protocol's boolean
        (200, "[1, 2]", "application/json"),
        (400, "Bad Request", "text/plain"),
        (500, "", "text/plain"),
    ],
)
def test_non_protocol_answer_is_a_failure_carrying_the_body(status: int, body: str, content_type: str) -> None:
    result = run_call(answering(status, body, content_type))
    assert result.outcome == "failure"
    assert result.error_message == body
    assert (result.error_code, result.http_status, result.data) == (None, status, None)


def test_long_body_is_truncated() -> None:
    body = "<html>" + "x" * 10_000 + "</html>"
    result = run_call(answering(503, body, "text/html"))
    assert result.error_message == body[:MAX_MESSAGE_CHARS]
    assert len(result.error_message or "") == MAX_MESSAGE_CHARS


def test_undeclared_gbk_body_is_decoded() -> None:
    result = run_call(answering(503, "系统维护中，请稍后再试".encode("gbk"), "text/plain"))
    assert result.error_message == "系统维护中，请稍后再试"


def test_declared_charset_is_used() -> None:
    body = json.dumps({"success": False, "error_code": None, "error_message": "余额不足"}, ensure_ascii=False)
    result = run_call(answering(200, body.encode("gb18030"), "application/json; charset=GB18030"))
    assert (result.outcome, result.error_message) == ("failure", "余额不足")


@pytest.mark.parametrize(
    "exc",
    [
        NotSent("ConnectError", "Cannot connect to host insurer.test:80 [Connect call failed]"),
        NotSent("ConnectError", "Cannot connect to host insurer.test:80 [Name or service not known]"),
        NotSent("ConnectTimeout", "Connection timeout to host http://insurer.test/api/underwrite"),
        NotSent("PoolTimeout", ""),
    ],
)
def test_request_that_never_left_is_a_failure(exc: TransportError) -> None:
    result = run_call(raising(exc))
    assert result.outcome == "failure"
    assert result.error_message == exc.text
    assert result.error_message.startswith(f"{exc.kind}: ")
    assert (result.error_code, result.http_status, result.data) == (None, None, None)


@pytest.mark.parametrize(
    "exc",
    [
        MaybeReceived("ReadTimeout", "Timeout on reading data from socket"),
        MaybeReceived("WriteTimeout", ""),
        MaybeReceived("ReadError", "Connection reset by peer"),
        MaybeReceived("RemoteProtocolError", "Server disconnected"),
    ],
)
def test_request_that_may_have_arrived_is_unknown(exc: TransportError) -> None:
    result = run_call(raising(exc))
    assert result.outcome == "unknown"
    assert result.error_message == exc.text
    assert (result.error_code, result.http_status, result.data) == (None, None, None)


def test_error_without_detail_is_named_by_its_kind() -> None:
    assert MaybeReceived("RemoteProtocolError").text == "RemoteProtocolError"
    assert run_call(raising(MaybeReceived("ReadError", "  "))).error_message == "ReadError"


def test_timeout_without_detail_says_timed_out_as_in_the_contract() -> None:
    assert MaybeReceived("ReadTimeout").text == "ReadTimeout: timed out"
    assert run_call(raising(MaybeReceived("ReadTimeout"))).error_message == "ReadTimeout: timed out"
    assert NotSent("ConnectTimeout").text == "ConnectTimeout: timed out"
    assert str(NotSent("ConnectTimeout")) == "ConnectTimeout: timed out"


def test_a_bug_raises_instead_of_becoming_a_result() -> None:
    with pytest.raises(ValueError, match="invalid url"):
        run_call(raising(ValueError("invalid url")))
    with pytest.raises(TypeError):
        run_call(answering(200, '{"success": true}'), payload={"not json": object()})


def test_query_asks_the_order_path() -> None:
    seen: list[Sent] = []

    def handler(request: Sent) -> Answer:
        seen.append(request)
        return json_answer(200, {"success": True, "data": {"policy_no": "X1"}})

    result = run_query(handler, order_id="P2026112400001:2", operation="issue_policy")
    (request,) = seen
    assert request.method == "GET"
    assert request.url == "http://insurer.test/api/issue_policy/P2026112400001:2"
    assert (request.body, request.pool) == (None, "acme")
    assert (result.completed, result.data, result.http_status) == (True, {"policy_no": "X1"}, 200)


@pytest.mark.parametrize(
    ("order_id", "raw_path"),
    [
        ("A-z_0.9:x", "/api/pay/A-z_0.9:x"),
        ("a/b c?d#e", "/api/pay/a%2Fb%20c%3Fd%23e"),
        ("..", "/api/pay/%2E%2E"),
        (".", "/api/pay/%2E"),
    ],
)
def test_query_quotes_order_ids(order_id: str, raw_path: str) -> None:
    urls: list[str] = []

    def handler(request: Sent) -> Answer:
        urls.append(request.url)
        return answer(404, "")

    assert run_query(handler, order_id=order_id, operation="pay").completed is False
    assert urls == [f"http://insurer.test{raw_path}"]
    assert path_segment(order_id) == raw_path.rsplit("/", 1)[1]


def test_query_not_completed_on_404() -> None:
    result = run_query(answering(404, '{"success": false, "error_message": "order not found"}'))
    assert (result.completed, result.data, result.error_message, result.http_status) == (
        False,
        None,
        None,
        404,
    )


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, "<html>Internal Server Error</html>"),
        (200, '{"success": false, "error_message": "处理中"}'),
        (200, "not json"),
        (503, ""),
    ],
)
def test_query_cannot_tell_on_anything_else(status: int, body: str) -> None:
    result = run_query(answering(status, body, "text/html"))
    assert result.completed is None
    assert result.data is None
    assert result.http_status == status
    assert result.error_message is not None
    assert result.error_message.startswith(f"HTTP {status}")
    assert body in result.error_message


@pytest.mark.parametrize("exc", [MaybeReceived("ReadTimeout", "timed out"), NotSent("ConnectError", "refused")])
def test_query_cannot_tell_without_answer(exc: TransportError) -> None:
    result = run_query(raising(exc))
    assert (result.completed, result.http_status) == (None, None)
    assert result.error_message == f"{exc.kind}: {exc.detail}"


def test_oversized_body_is_cut_and_never_taken_as_protocol() -> None:
    body = json.dumps({"success": True, "data": {"blob": "x" * 200}})
    result = run_call(lambda sent: answer(200, body, cut=True))
    assert result.outcome == "failure", "a complete-looking body that was cut is not the protocol"
    assert result.error_message is not None and result.error_message.startswith(body[:100])
    assert result.error_message.endswith(f"[cut at {len(body)} bytes]")
