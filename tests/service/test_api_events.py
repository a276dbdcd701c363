"""GET /events and POST /admin/events/{event_id}/redeliver (docs/contract.md §8) through the app."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import pytest

from tests.service.conftest import Service, busy, final


def _follow(service: Service, *, limit: int = 2) -> tuple[list[dict[str, Any]], str]:
    seen: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": limit}
    for _ in range(100):
        response = service.client.get("/events", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert isinstance(page["next_cursor"], str)
        params["after"] = page["next_cursor"]
        if not page["events"]:
            return seen, page["next_cursor"]
        seen += page["events"]
    raise AssertionError("the feed never caught up")


def test_the_feed_has_every_transition_of_the_process_flow(service: Service) -> None:
    service.insurer.script("P-ok")
    service.insurer.script("P-final", final())
    service.insurer.script("P-busy", busy())
    for order_id in ("P-ok", "P-final", "P-busy"):
        assert service.process(order_id).status_code == 200
    seen, cursor = _follow(service)
    moves = [(e["order_id"], e["from_state"], e["to_state"]) for e in seen]
    assert moves == [
        ("P-ok", None, "ASYNC_PROCESSING"),
        ("P-ok", "ASYNC_PROCESSING", "SUCCEEDED"),
        ("P-final", None, "ASYNC_PROCESSING"),
        ("P-final", "ASYNC_PROCESSING", "FAILED"),
        ("P-busy", None, "ASYNC_PROCESSING"),
    ]
    succeeded, failed = seen[1], seen[3]
    assert succeeded["order"]["result"] == {"policy_no": "POL-P-ok", "premium": 1200}
    assert failed["order"]["failure"]["error_code"] == "E2001"
    assert failed["order"]["failure"]["category"] is not None
    # caught up: polling again with the cursor gives nothing new, then the next transition
    assert service.client.get("/events", params={"after": cursor}).json() == {"events": [], "next_cursor": cursor}
    assert service.client.post("/orders/P-final/requeue").status_code == 200
    page = service.client.get("/events", params={"after": cursor}).json()
    assert [(e["from_state"], e["to_state"]) for e in page["events"]] == [("FAILED", "ASYNC_PROCESSING")]


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 1001}, {"limit": "x"}])
def test_bad_feed_parameters_get_422(service: Service, params: dict[str, Any]) -> None:
    assert service.client.get("/events", params=params).status_code == 422


@pytest.mark.parametrize("cursor", ["not-a-cursor", "ev1|1|9223372036854775808", "ev1|99999999999999999999|1"])
def test_a_cursor_not_handed_out_gets_400(service: Service, cursor: str) -> None:
    if cursor.startswith("ev1|"):  # well formed, but past any BIGINT
        cursor = base64.urlsafe_b64encode(cursor.encode()).decode().rstrip("=")
    response = service.client.get("/events", params={"after": cursor})
    assert response.status_code == 400
    assert "cursor" in response.json()["detail"]


def test_redeliver_a_failed_event(service: Service) -> None:
    service.process("P1")
    store = service.app.state.store
    [event] = store.events.claim_deliveries("d", batch=1, lease_s=30, now=dt.datetime.now(dt.UTC))
    store.events.delivery_failed(
        "d", event.pk, status=500, error="HTTP 500", next_attempt_at=None, retry_since=event.at
    )
    response = service.client.post(f"/admin/events/{event.event_id}/redeliver")
    assert response.status_code == 200, response.text
    assert response.json()["delivery_state"] == "pending"
    again = service.client.post(f"/admin/events/{event.event_id}/redeliver")
    assert again.status_code == 409
    missing = service.client.post("/admin/events/evt_0123/redeliver")
    assert missing.status_code == 404
    assert service.client.post("/admin/events/nonsense/redeliver").status_code == 422


def test_the_feed_needs_read_and_redeliver_admin(start_service: Any) -> None:
    read, admin = "r" * 20, "a" * 20
    service = start_service(api_keys=f"{read}:read,{admin}:admin")
    assert service.client.get("/events").status_code == 401
    assert service.client.get("/events", headers={"Authorization": f"Bearer {read}"}).status_code == 200
    url = "/admin/events/evt_0123/redeliver"
    assert service.client.post(url, headers={"Authorization": f"Bearer {read}"}).status_code == 403
    assert service.client.post(url, headers={"Authorization": f"Bearer {admin}"}).status_code == 404
