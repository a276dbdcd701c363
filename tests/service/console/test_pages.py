"""The console's pages and actions through the app (TestClient): content, filters, access and requeue."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

import pytest

from service.store import OrderState, OrderStore
from tests.service.conftest import Service
from tests.service.console.seed import seed_orders

READ_KEY = "read-key-0123456789"
ADMIN_KEY = "admin-key-0123456789"
KEYS = f"{READ_KEY}:read,{ADMIN_KEY}:admin"


def _seed(service: Service) -> dict[str, list[str]]:
    store: OrderStore = service.app.state.store
    return seed_orders(store, now=dt.datetime.now(dt.UTC), count=60)


@pytest.fixture
def seeded(service: Service) -> dict[str, list[str]]:
    return _seed(service)


def test_overview_shows_states_backlog_insurers_and_chart_data(service: Service, seeded: dict[str, list[str]]) -> None:
    page = service.client.get("/console/")
    assert page.status_code == 200
    html = page.text
    for state, ids in seeded.items():
        assert re.search(rf'data-state="{state}">\s*<div class="l">{state}</div><div class="n">{len(ids)}</div>', html)
    assert "due for re-execution now" in html and '<div class="n">10</div>' in html
    assert 'id="activity-data"' in html and '"throughput"' in html
    for insurer in ("acme", "beta", "gamma"):
        assert f'data-insurer="{insurer}"' in html
    assert 'class="badge c-closed">closed</span>' in html, "the processor's circuit breakers are read"
    assert "toy-2026-11-24" in html
    assert service.client.get("/console").status_code == 200


def test_static_files_are_served_offline(service: Service) -> None:
    chart = service.client.get("/console/static/chart.umd.min.js")
    assert chart.status_code == 200 and chart.text.startswith("/*!\n * Chart.js v4")
    assert service.client.get("/console/static/console.js").status_code == 200
    assert "https://" not in service.client.get("/console/").text.split("<main>")[0], "no CDN"


def test_orders_filters_and_pages(service: Service, seeded: dict[str, list[str]]) -> None:
    page = service.client.get("/console/orders", params={"state": "DEAD", "limit": 25})
    ids = re.findall(r'data-order="([^"]+)" data-state="([A-Z_]+)"', page.text)
    assert {state for _, state in ids} == {"DEAD"} and {i for i, _ in ids} == set(seeded["DEAD"])
    first = service.client.get("/console/orders", params={"limit": 25})
    next_link = re.search(r'href="(\?[^"]*cursor=[^"]+)" id="next-page"', first.text)
    assert next_link is not None
    second = service.client.get("/console/orders" + next_link.group(1).replace("&amp;", "&"))
    first_ids = re.findall(r'data-order="([^"]+)"', first.text)
    second_ids = re.findall(r'data-order="([^"]+)"', second.text)
    assert len(first_ids) == 25 and len(second_ids) == 25 and not set(first_ids) & set(second_ids)
    search = service.client.get("/console/orders", params={"q": "P-CON-001"})
    assert re.findall(r'data-order="([^"]+)"', search.text) == [f"P-CON-{i:04d}" for i in range(10, 20)]


def test_orders_page_reports_bad_filters(service: Service) -> None:
    bad = service.client.get("/console/orders", params={"state": "LOST", "from": "yesterday"})
    assert bad.status_code == 400
    assert "is not one of" in bad.text and "is not a date and time" in bad.text
    assert service.client.get("/console/orders", params={"cursor": "garbage"}).status_code == 400


def test_order_page_shows_the_timeline(service: Service, seeded: dict[str, list[str]]) -> None:
    dead = seeded["DEAD"][0]
    page = service.client.get(f"/console/orders/{dead}")
    assert page.status_code == 200
    assert page.text.count('data-kind="attempt"') == 3
    assert page.text.count('data-outcome="unknown"') == 3
    assert "decision: async" in page.text and "p = 0.970" in page.text
    assert "ReadTimeout" in page.text and "“系统繁忙”" in page.text  # text items show their span
    # the message with the explanation's spans marked by sign (docs/contract.md §7)
    assert 'ReadTimeout: <mark class="span-pos" title="+1.100 (towards async)">timed out</mark> after' in page.text
    assert 'data-kind="transition"' in page.text and "received" in page.text
    assert 'id="requeue-form"' in page.text, "open mode: a DEAD order can be requeued"
    succeeded = service.client.get(f"/console/orders/{seeded['SUCCEEDED'][0]}")
    assert 'id="requeue-form"' not in succeeded.text and "Only FAILED or DEAD" in succeeded.text
    assert service.client.get("/console/orders/NOPE").status_code == 404


def test_requeue_in_open_mode(service: Service, seeded: dict[str, list[str]]) -> None:
    failed = seeded["FAILED"][0]
    done = service.client.post(f"/console/orders/{failed}/requeue", follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"].endswith(f"/console/orders/{failed}?requeued=1")
    assert service.order(failed)["state"] == "ASYNC_PROCESSING"
    again = service.client.post(f"/console/orders/{failed}/requeue")
    assert again.status_code == 409 and "cannot go to" in again.text
    cross = service.client.post(
        f"/console/orders/{seeded['DEAD'][0]}/requeue", headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert cross.status_code == 403
    assert service.order(seeded["DEAD"][0])["state"] == "DEAD"


def test_failures_page_puts_disagreements_first(service: Service, seeded: dict[str, list[str]]) -> None:
    page = service.client.get("/console/failures", params={"hours": 24})
    assert page.status_code == 200
    rows = re.findall(r'<tr class="(disagree)?" data-disagrees="(yes|no)">\s*<td class="mono">([^<]*)</td>', page.text)
    assert rows[0][1:] == ("yes", "—"), "the timeouts that all went DEAD come first"
    assert {code for _, _, code in rows} == {"—", "E1001", "E2001", "E3003"}
    assert [code for _, flag, code in rows if flag == "yes"] == ["—", "E3003"], "processing → FAILED disagrees too"
    assert "系统繁忙" in page.text and "&lt;num&gt;" in page.text, "grouped by the normalized template"
    # each group's latest message, with the words that pushed its verdict marked
    assert '<mark class="span-pos" title="+1.420 (towards async)">系统繁忙</mark>，请稍后再试' in page.text
    assert '<mark class="span-neg" title="-2.100 (towards final)">身份证号码</mark>格式不正确' in page.text
    assert 'id="codes-data"' in page.text


def test_model_page_shows_card_metrics_calibration_and_drift(service: Service, seeded: dict[str, list[str]]) -> None:
    page = service.client.get("/console/model")
    assert page.status_code == 200
    assert "toy-2026-11-24" in page.text and 'id="card"' in page.text
    assert 'id="calibration-data"' in page.text and '"points": [{' in page.text
    drift = page.text.split('id="drift"')[1]
    assert "<dt>status</dt>" in drift and "<dt>model_version</dt>" in drift, "the learning loop's drift report"


@pytest.fixture
def keyed(start_service: Callable[..., Service]) -> Service:
    service = start_service(api_keys=KEYS)
    _seed(service)
    return service


def _login(service: Service, key: str) -> None:
    answer = service.client.post(
        "/console/login",
        content=f"key={key}&next=/console/orders",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/console/orders"
    assert (
        "httponly" in answer.headers["set-cookie"].lower() and "samesite=strict" in answer.headers["set-cookie"].lower()
    )


def test_with_keys_the_console_asks_for_one(keyed: Service) -> None:
    gate = keyed.client.get("/console/model?x=1", follow_redirects=False)
    assert gate.status_code == 303 and gate.headers["location"] == "/console/login?next=%2Fconsole%2Fmodel%3Fx%3D1"
    assert keyed.client.get("/console/login").status_code == 200
    wrong = keyed.client.post("/console/login", content="key=wrong-key-0123456789", headers=_FORM)
    assert wrong.status_code == 401 and "Unknown API key" in wrong.text
    assert keyed.client.get("/orders").status_code == 401, "the JSON API still wants its Bearer header"


_FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def test_requeue_needs_an_admin_key(keyed: Service) -> None:
    store: OrderStore = keyed.app.state.store
    dead = store.insights.search_orders(state=OrderState.DEAD, limit=1)[0][0].order_id
    assert keyed.client.post(f"/console/orders/{dead}/requeue", follow_redirects=False).status_code == 303  # login
    _login(keyed, READ_KEY)
    page = keyed.client.get(f"/console/orders/{dead}")
    assert page.status_code == 200 and 'id="requeue-form"' not in page.text and "needs an admin key" in page.text
    refused = keyed.client.post(f"/console/orders/{dead}/requeue")
    assert refused.status_code == 403 and "admin role" in refused.text
    assert store.get(dead).state is OrderState.DEAD  # type: ignore[union-attr]
    _login(keyed, ADMIN_KEY)
    assert 'id="requeue-form"' in keyed.client.get(f"/console/orders/{dead}").text
    done = keyed.client.post(f"/console/orders/{dead}/requeue")
    assert done.status_code == 200 and 'id="notice"' in done.text
    assert store.get(dead).state is OrderState.ASYNC_PROCESSING  # type: ignore[union-attr]
    assert store.transitions(dead)[-1].actor == "console:admin"
    keyed.client.post("/console/logout")
    assert keyed.client.get("/console/", follow_redirects=False).status_code == 303
