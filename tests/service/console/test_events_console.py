"""The console's Events page and the events on an order's timeline (docs/contract.md §8)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

from service.store import OrderStore
from tests.service.conftest import Service
from tests.service.console.test_pages import ADMIN_KEY, KEYS, READ_KEY, _login


def _fail_first_event(store: OrderStore, order_id: str) -> str:
    order = store.get(order_id, with_attempts=False)
    assert order is not None
    [event] = [
        e
        for e in store.events.claim_deliveries("d", batch=100, lease_s=30, now=dt.datetime.now(dt.UTC))
        if e.order_pk == order.pk
    ]
    store.events.delivery_failed(
        "d", event.pk, status=502, error="HTTP 502: bad gateway", next_attempt_at=None, retry_since=event.at
    )
    return event.event_id


def test_the_events_page_shows_lag_failures_and_the_latest_events(service: Service) -> None:
    service.process("P1")
    service.process("P2")
    store: OrderStore = service.app.state.store
    failed = _fail_first_event(store, "P1")
    html = service.client.get("/console/events").text
    assert 'href="/console/events" class="active"' in html
    assert re.search(r'id="failed-count"><div class="l">failed</div><div class="n">1</div>', html)
    assert re.search(r'id="pending"><div class="l">waiting</div><div class="n">3</div>', html)
    assert f'<tr data-event="{failed}">' in html and "HTTP 502: bad gateway" in html
    assert html.count('data-delivery="pending"') == 3 and html.count('data-delivery="failed"') == 1
    assert "No webhook configured" in html
    timeline = service.client.get("/console/orders/P1").text
    assert timeline.count('data-kind="event"') == 2 and 'data-delivery="failed"' in timeline
    done = service.client.post(f"/console/events/{failed}/redeliver", follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == f"/console/events?redelivered={failed}"
    assert store.events.get(failed).delivery_state == "pending"  # type: ignore[union-attr]
    again = service.client.post(f"/console/events/{failed}/redeliver")
    assert again.status_code == 409 and "already waiting" in again.text
    assert service.client.post("/console/events/evt_00/redeliver").status_code == 404


def test_redeliver_from_the_console_needs_an_admin_key(start_service: Callable[..., Service]) -> None:
    service = start_service(api_keys=KEYS)
    service.client.post(
        "/process",
        json={"order_id": "P1", "insurer": "acme", "operation": "underwrite", "payload": {}},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )
    store: OrderStore = service.app.state.store
    failed = _fail_first_event(store, "P1")
    assert service.client.get("/console/events", follow_redirects=False).status_code == 303  # login first
    _login(service, READ_KEY)
    page = service.client.get("/console/events").text
    assert "needs an admin key" in page and 'class="primary redeliver"' not in page
    assert service.client.post(f"/console/events/{failed}/redeliver").status_code == 403
    assert store.events.get(failed).delivery_state == "failed"  # type: ignore[union-attr]
    _login(service, ADMIN_KEY)
    assert 'class="primary redeliver"' in service.client.get("/console/events").text
    refused = service.client.post(f"/console/events/{failed}/redeliver", headers={"Sec-Fetch-Site": "cross-site"})
    assert refused.status_code == 403
    assert service.client.post(f"/console/events/{failed}/redeliver").status_code == 200
    assert store.events.get(failed).delivery_state == "pending"  # type: ignore[union-attr]
