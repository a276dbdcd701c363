"""GenericJsonAdapter against every row of docs/contract.md §3, through httpx.MockTransport."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from service.gateway.adapters import MAX_MESSAGE_CHARS, exception_text, path_segment
from tests.service.gateway.helpers import answering, make_insurer, raising, run_call, run_query

HTML_502 = "<html><head><title>502 Bad Gateway</title></head><body><center>nginx</center></body></html>"


def test_call_sends_exactly_the_contract_request() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"success": True, "data": {"policy_no": "X1"}})

    payload = {"applicant": {"name": "张三", "age": 30}, "amount": 100.5}
    result = run_call(handler, order_id="P2026112400001", operation="underwrite", payload=payload)

    (request,) = seen
    assert request.method == "POST"
    assert str(request.url) == "http://insurer.test/api/underwrite"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Idempotency-Key"] == "P2026112400001:underwrite"
    assert json.loads(request.content) == {
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

    def handler(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers["Idempotency-Key"])
        return httpx.Response(200, json={"success": True, "data": {}})

    run_call(handler, order_id="A.b-1_c:2", operation="pay")
    run_call(handler, order_id="A.b-1_c:2", operation="refund")
    assert keys == ["A.b-1_c:2:pay", "A.b-1_c:2:refund"]


def test_timeouts_are_set_per_request_from_the_insurer() -> None:
    timeouts: list[dict[str, float]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        timeouts.append(request.extensions["timeout"])
        return httpx.Response(200, json={"success": True})

    run_call(handler, insurer=make_insurer(timeout_s=3.0))
    run_call(handler, insurer=make_insurer(timeout_s=1.5))
    run_call(handler, insurer=make_insurer(timeout_s=7.0, connect_timeout_s=0.5))
    assert timeouts == [
        {"connect": 2.0, "read": 3.0, "write": 3.0, "pool": 3.0},
        {"connect": 1.5, "read": 1.5, "write": 1.5, "pool": 1.5},
        {"connect": 0.5, "read": 7.0, "write": 7.0, "pool": 7.0},
    ]


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
        httpx.ConnectError("[Errno 111] Connection refused"),
        httpx.ConnectError("[Errno -2] Name or service not known"),
        httpx.ConnectTimeout("timed out"),
        httpx.PoolTimeout("timed out"),
    ],
)
def test_request_that_never_left_is_a_failure(exc: Exception) -> None:
    result = run_call(raising(exc))
    assert result.outcome == "failure"
    assert result.error_message == f"{type(exc).__name__}: {exc}"
    assert (result.error_code, result.http_status, result.data) == (None, None, None)


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ReadTimeout("timed out"),
        httpx.WriteTimeout("timed out"),
        httpx.ReadError("[Errno 104] Connection reset by peer"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
    ],
)
def test_request_that_may_have_arrived_is_unknown(exc: Exception) -> None:
    result = run_call(raising(exc))
    assert result.outcome == "unknown"
    assert result.error_message == f"{type(exc).__name__}: {exc}"
    assert (result.error_code, result.http_status, result.data) == (None, None, None)


def test_exception_without_text_is_named_by_its_type() -> None:
    assert exception_text(httpx.RemoteProtocolError("")) == "RemoteProtocolError"
    assert run_call(raising(httpx.ReadError(""))).error_message == "ReadError"


def test_timeout_without_text_says_timed_out_as_in_the_contract() -> None:
    assert exception_text(httpx.ReadTimeout("")) == "ReadTimeout: timed out"
    assert run_call(raising(httpx.ReadTimeout(""))).error_message == "ReadTimeout: timed out"
    assert exception_text(httpx.ConnectTimeout("")) == "ConnectTimeout: timed out"


def test_building_an_invalid_request_is_a_bug_and_raises() -> None:
    with pytest.raises(httpx.LocalProtocolError):
        run_call(raising(httpx.LocalProtocolError("illegal header")))
    with pytest.raises(TypeError):
        run_call(answering(200, '{"success": true}'), payload={"not json": object()})


def test_query_asks_the_order_path() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"success": True, "data": {"policy_no": "X1"}})

    result = run_query(handler, order_id="P2026112400001:2", operation="issue_policy")
    (request,) = seen
    assert request.method == "GET"
    assert str(request.url) == "http://insurer.test/api/issue_policy/P2026112400001:2"
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
    paths: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.raw_path)
        return httpx.Response(404)

    assert run_query(handler, order_id=order_id, operation="pay").completed is False
    assert paths == [raw_path.encode()]
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


@pytest.mark.parametrize("exc", [httpx.ReadTimeout("timed out"), httpx.ConnectError("refused")])
def test_query_cannot_tell_without_answer(exc: Exception) -> None:
    result = run_query(raising(exc))
    assert (result.completed, result.http_status) == (None, None)
    assert result.error_message == f"{type(exc).__name__}: {exc}"


class _BrokenStream(httpx.AsyncByteStream):
    """A body that starts, then the connection fails mid-way."""

    def __init__(self, exc: Exception) -> None:
        self._exc = exc

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b'{"success": tr'
        raise self._exc


def test_answer_cut_mid_body_is_unknown() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=_BrokenStream(httpx.ReadTimeout("timed out")))

    result = run_call(handler)
    assert (result.outcome, result.error_message, result.http_status) == (
        "unknown",
        "ReadTimeout: timed out",
        None,
    )


def test_oversized_body_is_cut_and_not_taken_as_protocol(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("service.gateway.adapters.MAX_BODY_BYTES", 64)
    body = json.dumps({"success": True, "data": {"blob": "x" * 200}})
    result = run_call(answering(200, body))
    assert result.outcome == "failure"
    assert result.error_message == body[:64]
