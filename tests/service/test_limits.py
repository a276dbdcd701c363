"""Limits hold at every edge and are refused with 4xx, never a 500: nesting bombs, oversized batches,
strings and bodies, on /classify, /classify/batch and /process, with API keys on too."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.service.conftest import Service

WRITE_KEY = "limits-write-key-0123456789"
AUTH = {"Authorization": f"Bearer {WRITE_KEY}"}
FAILURE = {"insurer": "acme", "operation": "pay", "error_message": "系统繁忙"}


@pytest.fixture
def keyed(start_service: Callable[..., Service]) -> Service:
    return start_service(api_keys=f"{WRITE_KEY}:write")


@pytest.mark.parametrize("path", ["/classify", "/classify/batch", "/process"])
def test_a_nesting_bomb_is_a_400(keyed: Service, path: str) -> None:
    depth = 50_000  # deeper than Python's recursion limit: the JSON parser gives up, FastAPI answers 400
    body = '{"bomb": ' + "[" * depth + "]" * depth + "}"
    answer = keyed.client.post(path, content=body.encode(), headers={**AUTH, "content-type": "application/json"})
    assert answer.status_code == 400
    assert answer.json() == {"detail": "There was an error parsing the body"}


def test_batch_sizes(keyed: Service) -> None:
    assert keyed.client.post("/classify/batch", json={"items": []}, headers=AUTH).status_code == 422
    assert keyed.client.post("/classify/batch", json={"items": [FAILURE] * 10_001}, headers=AUTH).status_code == 422
    assert keyed.client.post("/classify/batch", json={"items": [FAILURE] * 10_000}, headers=AUTH).status_code == 200


@pytest.mark.parametrize(
    ("field", "size", "status"),
    [("error_message", 65_537, 422), ("insurer", 129, 422), ("operation", 65, 422), ("error_code", 257, 422)],
)
def test_string_lengths(keyed: Service, field: str, size: int, status: int) -> None:
    answer = keyed.client.post("/classify", json={**FAILURE, field: "x" * size}, headers=AUTH)
    assert answer.status_code == status
    assert answer.json()["detail"][0]["loc"] == ["body", field]


def test_bodies_over_the_route_limit_are_413_before_parsing(keyed: Service) -> None:
    big = b'{"error_message": "' + b"x" * (600 * 1024) + b'"}'
    answer = keyed.client.post("/classify", content=big, headers={**AUTH, "content-type": "application/json"})
    assert answer.status_code == 413
    unauthenticated = keyed.client.post("/classify", content=big, headers={"content-type": "application/json"})
    assert unauthenticated.status_code == 401, "the key is checked first: an anonymous body is never read"


def test_payload_depth_and_size(keyed: Service) -> None:
    nested: dict[str, object] = {}
    inner = nested
    for _ in range(33):
        inner["a"] = {}
        inner = inner["a"]  # type: ignore[assignment]
    order = {"order_id": "LIM-1", "insurer": "acme", "operation": "pay"}
    assert keyed.client.post("/process", json={**order, "payload": nested}, headers=AUTH).status_code == 422
    big = {"blob": "x" * (70 * 1024)}
    assert keyed.client.post("/process", json={**order, "payload": big}, headers=AUTH).status_code == 413
    assert keyed.client.get("/orders/LIM-1", headers=AUTH).status_code == 404, "nothing was written"


_F = b'"insurer":"acme","operation":"pay","error_message":"m"'
_ORDER = b'"insurer":"acme","operation":"pay"'


@pytest.mark.parametrize(
    ("path", "raw", "field"),
    [
        ("/classify", b"{" + _F + b',"latency_ms":NaN}', "latency_ms"),
        ("/classify", b"{" + _F + b',"latency_ms":Infinity}', "latency_ms"),
        ("/classify", b"{" + _F + b',"http_status":-Infinity}', "http_status"),
        ("/classify/batch", b'{"items":[{' + _F + b',"latency_ms":NaN}]}', "items"),
        ("/process", b'{"order_id":"NAN-1",' + _ORDER + b',"payload":{"amount":NaN}}', "payload"),
        ("/process", b'{"order_id":"NAN-2",' + _ORDER + b',"payload":{"a":[1,Infinity]}}', "payload"),
        # an integer beyond 64 bits echoed back in the error (schemathesis found it): 422, not a 500
        ("/classify/batch", b"-9223372036854775809", "body"),
        ("/classify", b"{" + _F + b',"http_status":99999999999999999999999}', "http_status"),
        # found by the malformed-body fuzzing (test_schema_fuzz.py): each was a 500
        ("/classify", b'{"insurer":"acme","operation":"pay","error_message":"busy \\ud800"}', "error_message"),
        ("/classify", b'{"insurer":' + b"[" * 300 + b"]" * 300 + b',"operation":"pay","error_message":"m"}', "insurer"),
        ("/process", b'{"order_id":"BIG-INT-1",' + _ORDER + b',"payload":{"n":18446744073709551616}}', "payload"),
        ("/process", b'{"order_id":"SURROGATE-1",' + _ORDER + b',"payload":{"\\udc00":1}}', "payload"),
    ],
)
def test_nan_and_infinity_are_a_422_naming_the_field(keyed: Service, path: str, raw: bytes, field: str) -> None:
    """Python's JSON parser accepts NaN and Infinity; they are no JSON numbers, and are refused by field.
    So are what cannot be stored or answered: unpaired surrogates, payload integers beyond 64 bits."""
    answer = keyed.client.post(path, content=raw, headers={**AUTH, "content-type": "application/json"})
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert any(field in error["loc"] for error in detail), detail
    if path == "/process":
        order_id = raw.split(b'"')[3].decode()
        assert keyed.client.get(f"/orders/{order_id}", headers=AUTH).status_code == 404, "nothing was written"
