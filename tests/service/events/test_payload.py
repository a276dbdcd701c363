"""event_document (docs/contract.md §8): pure, the contract's shape, result and failure only where the state says."""

from __future__ import annotations

import datetime as dt
import json
import re

from service.events.payload import encode_document, event_document, failure_summary, format_time, new_event_id

AT = dt.datetime(2026, 12, 2, 10, 0, 0, 123456, tzinfo=dt.UTC)
FAILURE = failure_summary(error_code="E2001", error_message="bad id", http_status=200, category="invalid_id")


def document(to_state: str, **overrides: object) -> dict[str, object]:
    values: dict[str, object] = {
        "event_id": "evt_1",
        "order_id": "P1",
        "insurer": "acme",
        "operation": "underwrite",
        "from_state": "ASYNC_PROCESSING",
        "to_state": to_state,
        "attempts": 2,
        "result": {"policy_no": "X"},
        "failure": FAILURE,
        "at": AT,
    } | overrides
    return event_document(**values)  # type: ignore[arg-type]


def test_the_contract_example_shape() -> None:
    assert document("SUCCEEDED") == {
        "event_id": "evt_1",
        "type": "order.state_changed",
        "order_id": "P1",
        "from_state": "ASYNC_PROCESSING",
        "to_state": "SUCCEEDED",
        "at": "2026-12-02T10:00:00.123Z",
        "order": {
            "state": "SUCCEEDED",
            "insurer": "acme",
            "operation": "underwrite",
            "attempts": 2,
            "result": {"policy_no": "X"},
            "failure": None,
        },
    }


def test_failure_only_in_final_failure_states_and_result_only_on_success() -> None:
    for state in ("FAILED", "DEAD"):
        order = document(state)["order"]
        assert order["failure"] == FAILURE and order["result"] is None  # type: ignore[index]
    order = document("ASYNC_PROCESSING")["order"]
    assert order["failure"] is None and order["result"] is None  # type: ignore[index]


def test_pure_and_encoded_as_compact_utf8_json() -> None:
    assert document("FAILED") == document("FAILED")
    text = encode_document(document("FAILED", order_id="订单-1"))
    assert "订单-1" in text and ": " not in text
    assert json.loads(text) == document("FAILED", order_id="订单-1")


def test_times_are_utc_milliseconds_with_z() -> None:
    east = dt.timezone(dt.timedelta(hours=8))
    assert format_time(dt.datetime(2026, 12, 2, 18, 0, 0, 999999, tzinfo=east)) == "2026-12-02T10:00:00.999Z"


def test_event_ids_are_unique_and_shaped() -> None:
    ids = {new_event_id(AT) for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"evt_[0-9a-f]{32}", i) for i in ids)
