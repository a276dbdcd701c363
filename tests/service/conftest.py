"""Service test fixtures: the toy model once per session, a scripted mock insurer, the app under TestClient.

    serving_model          a ServingModel of tests.factories.toy_classifier(), saved and loaded as an artifact
    MockInsurer            an insurer behind httpx.MockTransport speaking docs/contract.md §3; scripts per order
    start_service(...)     create_app + TestClient (lifespan run) on SQLite by default, or on `db_url`
    run_worker(...)        one in-process `Worker.run(once=True)` against the same database and insurer

Nothing here touches the network: the insurer is a MockTransport, the databases are a file under
tmp_path or the test's own PostgreSQL schema (`pg_url`).
"""

from __future__ import annotations

import datetime as dt
import json
import random
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI

from model.artifact import load_artifact, save_artifact
from service.app import create_app
from service.config import Settings
from service.gateway import InsurerGateway, InsurerRegistry
from service.health import InsurerHealth
from service.metrics import Metrics
from service.processing import OrderProcessor, utcnow
from service.rules import RuleBook
from service.runtime import retry_policy
from service.scoring import ModelHolder, ServingModel
from service.store import OrderStore, create_db_engine
from service.worker import Worker, WorkerStats
from tests.factories import toy_classifier

with warnings.catch_warnings():
    # starlette 1.x warns (a UserWarning subclass, which pyproject's DeprecationWarning filter misses)
    # that its TestClient wants httpx2; httpx 0.28 is what the project uses and it works.
    warnings.simplefilter("ignore", UserWarning)
    from starlette.testclient import TestClient

MODEL_VERSION = "toy-2026-11-24"
INSURER = "acme"
INSURERS = (INSURER, "beta")
BASE_URL = "http://acme.test/api"
#: Messages the toy model classifies as final / async-eligible (checked in test_api_classify).
FINAL_MESSAGE = "身份证号码格式不正确"
BUSY_MESSAGE = "系统繁忙，请稍后再试"

Step = Callable[["MockInsurer", httpx.Request, dict[str, Any]], httpx.Response]


# -- the insurer ------------------------------------------------------------------------------------


def success(data: dict[str, Any] | None = None) -> Step:
    """Complete the order and answer 200 {"success": true, "data": ...}."""

    def step(insurer: MockInsurer, request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        done = insurer.complete(body, data)
        return httpx.Response(200, json={"success": True, "data": done})

    return step


def failure(message: str, *, code: str | None = None, status: int = 200) -> Step:
    """A protocol failure {"success": false, "error_code", "error_message"} with `status`."""

    def step(insurer: MockInsurer, request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        return httpx.Response(status, json={"success": False, "error_code": code, "error_message": message})

    return step


def busy() -> Step:
    return failure(BUSY_MESSAGE, code="E1001", status=503)


def final() -> Step:
    return failure(FINAL_MESSAGE, code="E2001", status=200)


def raises(kind: type[httpx.TransportError], message: str = "timed out", *, completes: bool = False) -> Step:
    """No answer: raise `kind`; with `completes`, the insurer completed the order before the answer was lost."""

    def step(insurer: MockInsurer, request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        if completes:
            insurer.complete(body, None)
        raise kind(message, request=request)

    return step


@dataclass
class MockInsurer:
    """One insurer: POST /{operation} plays the order's script (the last step repeats, default success);
    GET /{operation}/{order_id} answers 200 with the data of a completed order, else 404."""

    requests: list[httpx.Request] = field(default_factory=list)
    completed: dict[str, dict[str, Any]] = field(default_factory=dict)
    completions: dict[str, int] = field(default_factory=dict)
    scripts: dict[str, list[Step]] = field(default_factory=dict)

    def script(self, order_id: str, *steps: Step) -> None:
        self.scripts[order_id] = list(steps)

    def complete(self, body: dict[str, Any], data: dict[str, Any] | None) -> dict[str, Any]:
        key = f"{body['order_id']}:{body['operation']}"
        done = data if data is not None else {"policy_no": f"POL-{body['order_id']}", "premium": 1200}
        self.completed[key] = done
        self.completions[key] = self.completions.get(key, 0) + 1
        return done

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path.removeprefix(httpx.URL(BASE_URL).path).strip("/").split("/")
        if request.method == "GET" and len(path) == 2:
            operation, order_id = path
            data = self.completed.get(f"{order_id}:{operation}")
            if data is None:
                return httpx.Response(404, json={"success": False, "error_code": "NOT_FOUND", "error_message": ""})
            return httpx.Response(200, json={"success": True, "data": data})
        body = json.loads(request.content)
        steps = self.scripts.get(body["order_id"]) or [success()]
        n = len(self.calls(body["order_id"]))
        return steps[min(n, len(steps)) - 1](self, request, body)

    def calls(self, order_id: str | None = None) -> list[httpx.Request]:
        """The POSTs received (for one order when given)."""
        return [r for r in self.requests if r.method == "POST" and (order_id is None or _order_of(r) == order_id)]

    def queries(self, order_id: str | None = None) -> list[httpx.Request]:
        """The status queries received (for one order when given)."""
        return [
            r for r in self.requests if r.method == "GET" and (order_id is None or r.url.path.endswith(f"/{order_id}"))
        ]

    def http_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handler))


def _order_of(request: httpx.Request) -> str:
    order_id: str = json.loads(request.content)["order_id"]
    return order_id


def registry() -> InsurerRegistry:
    """The insurers every service test knows: acme and beta, both answered by the one MockInsurer."""
    return InsurerRegistry.from_mapping({name: {"base_url": BASE_URL, "timeout_s": 2.0} for name in INSURERS})


# -- the model --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def serving_model(tmp_path_factory: pytest.TempPathFactory) -> ServingModel:
    artifact = save_artifact(
        toy_classifier(), tmp_path_factory.mktemp("models"), version=MODEL_VERSION, data={"rows": 3000}
    )
    return ServingModel(load_artifact(artifact))


# -- the service ------------------------------------------------------------------------------------


@dataclass
class Service:
    """A started app: `client` is a TestClient inside its lifespan, `insurer` the mock behind it."""

    client: TestClient
    app: FastAPI
    insurer: MockInsurer
    settings: Settings

    def process(self, order_id: str, payload: dict[str, Any] | None = None, **fields: Any) -> httpx.Response:
        body = {"order_id": order_id, "insurer": INSURER, "operation": "underwrite", "payload": payload or {"n": 1}}
        body.update(fields)
        response: httpx.Response = self.client.post("/process", json=body)
        return response

    def order(self, order_id: str) -> dict[str, Any]:
        response = self.client.get(f"/orders/{order_id}")
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found

    def wait_until_due(self, order_id: str) -> None:
        """Sleep until the order's next_attempt_at has passed (a few ms with the small retry settings)."""
        due = self.order(order_id)["next_attempt_at"]
        assert due is not None
        left = (dt.datetime.fromisoformat(due) - utcnow()).total_seconds()
        assert left < 5, f"order {order_id} is due in {left:.1f} s: use small retry settings"
        time.sleep(max(0.0, left) + 0.01)


SMALL_RETRY: dict[str, Any] = {"retry_base_s": 0.001, "retry_max_s": 0.002, "retry_max_attempts": 3}


@pytest.fixture
def start_service(
    request: pytest.FixtureRequest, tmp_path: Path, serving_model: ServingModel
) -> Iterator[Callable[..., Service]]:
    """Factory: start_service(db_url=None, insurer=None, **settings) → a Service, stopped at teardown.

    The services stop before any fixture set up ahead of the first start() is torn down (the test's
    PostgreSQL schema above all, whatever the order of the test's arguments): a background loop that
    still ran on a dropped schema would fail the test in its teardown."""
    stack = ExitStack()
    started: list[Service] = []

    def start(*, db_url: str | None = None, insurer: MockInsurer | None = None, **overrides: Any) -> Service:
        if not started:  # node finalizers run LIFO: this one before those of the fixtures set up so far
            request.node.addfinalizer(stack.close)
        settings = Settings(
            state_dir=tmp_path / "state",
            db_url=db_url or f"sqlite:///{tmp_path}/state/asyncgate.db",
            model_dir=tmp_path / "no-models",
            **overrides,
        )
        mock = insurer or MockInsurer()
        http = mock.http_client()
        app = create_app(settings, model=serving_model, insurers=registry(), http_client=http)
        stack.callback(lambda: anyio.run(http.aclose))  # after the app has stopped (LIFO)
        client = stack.enter_context(TestClient(app))
        started.append(Service(client, app, mock, settings))
        return started[-1]

    yield start
    stack.close()


@pytest.fixture
def service(start_service: Callable[..., Service]) -> Service:
    return start_service()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using it runs on SQLite and on PostgreSQL (its own schema)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state/asyncgate.db"
    url: str = request.getfixturevalue("pg_url")
    return url


# -- the worker -------------------------------------------------------------------------------------


def run_worker(
    service: Service,
    model: ServingModel,
    *,
    clock: Callable[[], dt.datetime] = utcnow,
    timeout_s: float = 30.0,
    until: Callable[[], bool] | None = None,
) -> WorkerStats:
    """One `Worker.run(once=True)` on the service's database and insurer, with its own engine and client
    (as the `asyncgate worker` process would have). `clock` is the processor's (scheduling) clock.
    With `until`, a continuous worker runs until `until()` is true."""
    settings = service.settings

    async def main() -> WorkerStats:
        engine = create_db_engine(settings.resolved_db_url)
        try:
            store = OrderStore(engine)
            rules = RuleBook()
            rules.load(store, force=True)  # as open_runtime does: the operators' rules in the database
            async with service.insurer.http_client() as http:
                metrics = Metrics()
                health = InsurerHealth(None, metrics)
                processor = OrderProcessor(
                    store,
                    InsurerGateway(registry(), http),
                    ModelHolder(model),
                    retry_policy(settings),
                    metrics,
                    lease_s=settings.lease_s,
                    max_payload_bytes=settings.max_payload_bytes,
                    rng=random.Random(0),
                    clock=clock,
                    health=health,
                    rules=rules,
                )
                worker = Worker(
                    processor,
                    store,
                    health=health,
                    metrics=metrics,
                    worker_id="worker:test",
                    lease_s=settings.lease_s,
                    poll_s=0.01,
                )
                if until is None:
                    with anyio.fail_after(timeout_s):
                        return await worker.run(once=True)
                stop = anyio.Event()  # a continuous worker, stopped once `until()` holds

                async def watch() -> None:
                    while not await anyio.to_thread.run_sync(until):
                        await anyio.sleep(0.02)
                    stop.set()

                with anyio.fail_after(timeout_s):
                    async with anyio.create_task_group() as group:
                        group.start_soon(watch)
                        stats = await worker.run(once=False, stop=stop)
                return stats
        finally:
            engine.dispose()

    return anyio.run(main)
