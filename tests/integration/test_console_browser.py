"""The console in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright) against real uvicorn.

A seeded SQLite store and a toy model are served by `python -m service serve` with API keys
configured; the browser logs in, reads every page, filters, opens an order's timeline, is refused a
requeue with a read key and requeues with an admin key, and pins a failure group as a rule. Each
page's screenshot is written to $SCREENSHOT_DIR (default reports/screenshots/;
`SCREENSHOT_DIR=docs/screenshots` refreshes the README's). Without Chromium (or Playwright) the
tests skip with the reason; under CI=true they fail. Playwright never downloads a browser here: it
launches the system's Chromium by path.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from model.artifact import save_artifact
from model.registry import activate
from service.store import OrderStore, create_db_engine, migrate
from tests.factories import toy_classifier, toy_frame
from tests.integration.conftest import RunningProcess, child_env, free_port, start_process
from tests.service.console.seed import INSURERS, insurer_of, seed_orders, story_of
from training.evaluate import score_frame

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
READ_KEY = "console-read-key-0123456789"
ADMIN_KEY = "console-admin-key-0123456789"
ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_MS = 15_000


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI requires the console browser tests to run (.ci/run installs chromium)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, timeout=TIMEOUT_MS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProcess]:
    """`asyncgate serve` on a seeded SQLite store with a toy model and a read and an admin key."""
    base = tmp_path_factory.mktemp("console")
    db_url = f"sqlite:///{base}/asyncgate.db"
    engine = create_db_engine(db_url)
    migrate(engine)
    store = OrderStore(engine)
    now = dt.datetime.now(dt.UTC)
    seed_orders(store, now=now, count=60)
    # deliveries as a webhook would have left them: most acknowledged, two given up on
    claimed = store.events.claim_deliveries("seed", batch=30, lease_s=60, now=now)
    store.events.acknowledge("seed", [(e.pk, 204) for e in claimed[2:]], now=now + dt.timedelta(seconds=0.4))
    for event in claimed[:2]:
        error = "HTTP 503: receiver down for maintenance"
        store.events.delivery_failed("seed", event.pk, status=503, error=error, next_attempt_at=None, retry_since=now)
    engine.dispose()
    registry = base / "models"
    model = toy_classifier()
    metrics = {"holdout_toy": score_frame(model, toy_frame(1000, seed=1), "toy").metrics}
    save_artifact(model, registry, version="toy-console", data={"rows": 3000}, metrics=metrics)
    activate(registry, "toy-console")
    insurers = base / "insurers.toml"
    insurers.write_text("".join(f'[insurers.{n}]\nbase_url = "http://127.0.0.1:9"\n' for n in INSURERS))
    port = free_port()
    argv = [sys.executable, "-m", "service", "serve", "--port", str(port), "--db-url", db_url]
    argv += ["--model-dir", str(registry), "--insurers", str(insurers)]
    env = child_env({"ASYNCGATE_API_KEYS": f"{READ_KEY}:read,{ADMIN_KEY}:admin"})
    process = start_process(argv, port=port, log_path=base / "serve.log", env=env)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def shots() -> Path:
    folder = Path(os.environ.get("SCREENSHOT_DIR", ROOT / "reports" / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def page(browser: Any, server: RunningProcess) -> Iterator[Any]:
    context = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 860})
    context.set_default_timeout(TIMEOUT_MS)
    opened = context.new_page()
    opened.on("dialog", lambda dialog: dialog.accept())  # the requeue confirmation
    yield opened
    context.close()


def login(page: Any, key: str, *, next_path: str = "/console/") -> None:
    page.goto(next_path)
    assert "/console/login" in page.url, "with API keys configured the console asks for one"
    page.fill("input[name=key]", key)
    page.click("#login-form button[type=submit]")
    page.wait_for_url(f"**{next_path}")


def charts_drawn(page: Any, count: int) -> None:
    page.wait_for_selector(f"body[data-charts='{count}']")


def test_overview_renders_with_data(page: Any, shots: Path) -> None:
    page.goto("/console/login")
    page.screenshot(path=str(shots / "login.png"))
    login(page, READ_KEY)
    charts_drawn(page, 2)
    assert page.inner_text("[data-state=DEAD] .n") == "10"
    assert page.inner_text("[data-state=SUCCEEDED] .n") == "20"
    assert page.inner_text("#backlog .n") == "10"
    assert "signed in: read" in page.inner_text("#who")
    received = page.evaluate(
        "Chart.getChart(document.getElementById('chart-throughput')).data.datasets"
        ".map(d => [d.label, d.data.reduce((a, b) => a + b, 0)])"
    )
    assert dict(received) == {"acme": 20, "beta": 20, "gamma": 20}
    assert page.locator("#insurers tbody tr").count() == 3
    page.screenshot(path=str(shots / "overview.png"), full_page=True)


def test_filtering_the_orders_table(page: Any, shots: Path) -> None:
    login(page, READ_KEY, next_path="/console/orders")
    assert page.locator("#orders tbody tr").count() == 50
    page.screenshot(path=str(shots / "orders.png"))
    page.select_option("select[name=state]", "DEAD")
    page.fill("input[name=insurer]", "beta")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**state=DEAD**")
    rows = page.locator("#orders tbody tr").evaluate_all("rows => rows.map(r => [r.dataset.order, r.dataset.state])")
    expected = [f"P-CON-{i:04d}" for i in range(59, -1, -1) if story_of(i) == 4 and insurer_of(i) == "beta"]
    assert rows == [[order_id, "DEAD"] for order_id in expected]
    page.fill("input[name=q]", "P-CON-000")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**q=P-CON-000**")
    ids = page.locator("#orders tbody tr").evaluate_all("rows => rows.map(r => r.dataset.order)")
    assert ids == expected[-1:] == ["P-CON-0004"], "prefix, state and insurer filters combine"


def test_an_orders_timeline_shows_its_attempts(page: Any, shots: Path) -> None:
    login(page, READ_KEY, next_path="/console/orders?state=DEAD")
    page.click("#orders tbody tr:first-child a")
    page.wait_for_selector("#timeline")
    attempts = page.locator("#timeline li.attempt")
    assert attempts.count() == 3
    assert attempts.first.locator(".decision").inner_text() == "decision: async"
    assert "p = 0.970" in attempts.first.inner_text()
    assert "ReadTimeout" in attempts.first.inner_text()
    assert page.locator("#timeline li.transition").count() >= 2
    page.screenshot(path=str(shots / "order.png"), full_page=True)


def test_failures_and_model_pages(page: Any, shots: Path) -> None:
    login(page, READ_KEY, next_path="/console/failures")
    charts_drawn(page, 1)
    first = page.locator("#groups tbody tr").first
    assert first.get_attribute("data-disagrees") == "yes"
    assert "readtimeout" in first.inner_text().lower()
    page.screenshot(path=str(shots / "failures.png"), full_page=True)
    page.goto("/console/model")
    charts_drawn(page, 1)
    assert "toy-console" in page.inner_text("h1")
    assert page.locator("#metrics tbody tr").count() == 3, "the card's model and rule baselines"
    assert "need an admin key" in page.inner_text("#drift")
    page.click("#who button")  # log out; an admin sees the drift figures
    login(page, ADMIN_KEY, next_path="/console/model")
    charts_drawn(page, 1)
    assert "model_version" in page.inner_text("#drift") and "toy-console" in page.inner_text("#drift")
    page.screenshot(path=str(shots / "model.png"), full_page=True)


def test_the_events_page_shows_deliveries_and_failures(page: Any, shots: Path) -> None:
    login(page, READ_KEY, next_path="/console/events")
    assert "No webhook configured" in page.inner_text("#endpoint")
    failed = page.locator("#failed tbody tr")
    assert failed.count() == 2 and "receiver down" in failed.first.inner_text()
    assert "needs an admin key" in failed.first.inner_text(), "a read key sees no redeliver button"
    assert page.inner_text("#failed-count .n").strip() == "2"
    assert page.locator("#recent tbody tr").count() > 10
    page.screenshot(path=str(shots / "events.png"))  # the first screen: the long table adds nothing


def test_requeue_is_refused_with_a_read_key_and_works_with_an_admin_key(page: Any) -> None:
    login(page, READ_KEY, next_path="/console/orders?state=FAILED&insurer=acme")
    order_id = page.locator("#orders tbody tr").first.get_attribute("data-order")
    page.goto(f"/console/orders/{order_id}")
    assert page.locator("#requeue").is_disabled()
    status = page.evaluate(f"fetch('/console/orders/{order_id}/requeue', {{method: 'POST'}}).then(r => r.status)")
    assert status == 403
    page.reload()
    assert page.inner_text("#order-facts dd:nth-of-type(3)") == "FAILED"
    page.click("#who button")  # log out
    login(page, ADMIN_KEY, next_path=f"/console/orders/{order_id}")
    page.click("#requeue")
    page.wait_for_selector("#notice")
    assert page.inner_text("#order-facts dd:nth-of-type(3)") == "ASYNC_PROCESSING"
    assert "console:admin" in page.inner_text("#timeline")


def test_an_admin_pins_a_failure_group_and_removes_the_rule(page: Any) -> None:
    login(page, ADMIN_KEY, next_path="/console/failures")
    first = page.locator("#groups tbody tr").first
    first.locator("details.pin summary").click()
    form = first.locator("form.pin-form")
    form.locator("select[name=decision]").select_option("final")
    form.locator("input[name=reason]").fill("acme read timeouts are final")
    form.locator("button[type=submit]").click()
    page.wait_for_url("**created=**")
    row = page.locator("#rules tbody tr").first
    assert "acme read timeouts are final" in row.inner_text()
    assert "readtimeout" in row.inner_text().lower(), "the group's message phrase is what the rule matches"
    row.locator(".remove-rule").click()  # the page fixture accepts the confirmation
    page.wait_for_url("**removed=**")
    assert page.locator("#no-rules").count() == 1
    assert "deleted" in page.inner_text("#rule-history")
