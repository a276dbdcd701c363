"""Operations endpoints (docs/contract.md §2) and the service with its database gone: /healthz, /readyz,
/metrics, /model, and 503 (never 500, never a write) on every route that needs the database."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from service.scoring import ServingModel
from service.store import OrderStore, create_db_engine
from tests.service.conftest import MODEL_VERSION, Service, busy, final

#: Nothing listens on port 1: connections are refused at once.
DEAD_DB_URL = "postgresql://postgres@127.0.0.1:1/test"


def test_healthz_answers_ok(service: Service) -> None:
    response = service.client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_readyz_is_200_with_database_and_model(service: Service) -> None:
    response = service.client.get("/readyz")
    assert response.status_code == 200
    checks = response.json()["checks"]
    assert checks["database"]["ok"] is True
    assert checks["model"] == {"ok": True, "version": MODEL_VERSION}


def test_model_returns_the_card(service: Service, serving_model: ServingModel) -> None:
    response = service.client.get("/model")
    assert response.status_code == 200
    card = response.json()
    assert card["version"] == MODEL_VERSION
    assert card["threshold"] == serving_model.threshold
    assert card == serving_model.card


def _sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one Prometheus sample whose labels include `labels`, or None."""
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match and all(f'{k}="{v}"' in match.group(1) for k, v in labels.items()):
            return float(match.group(2))
    return None


def test_metrics_expose_routes_classifications_orders_and_model(service: Service) -> None:
    service.insurer.script("M2", busy())
    service.insurer.script("M3", final())
    for order_id in ("M1", "M2", "M3"):
        service.process(order_id)
    service.client.post(
        "/classify", json={"insurer": "acme", "operation": "pay", "error_message": "身份证号码格式不正确"}
    )
    response = service.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    histogram = "asyncgate_http_request_seconds_count"
    assert _sample(text, histogram, method="POST", route="/process", status="200") == 3
    assert _sample(text, histogram, method="POST", route="/classify", status="200") == 1
    assert _sample(text, "asyncgate_classifications_total", verdict="async", category="insurer_busy") == 1
    assert _sample(text, "asyncgate_classifications_total", verdict="final", category="validation") == 2
    for state, count in {"SUCCEEDED": 1, "ASYNC_PROCESSING": 1, "FAILED": 1, "DEAD": 0}.items():
        assert _sample(text, "asyncgate_orders", state=state) == count
    assert _sample(text, "asyncgate_model_info", version=MODEL_VERSION) == 1


def test_routes_are_labelled_by_template_not_by_path(service: Service) -> None:
    service.client.get("/orders/ABC")
    service.client.get("/orders/DEF")
    text = service.client.get("/metrics").text
    assert _sample(text, "asyncgate_http_request_seconds_count", route="/orders/{order_id}", status="404") == 2
    assert "ABC" not in text


@pytest.fixture
def db_gone(service: Service) -> Iterator[Service]:
    """The service after start-up, with its store (API and processor) pointed at a database that refuses."""
    engine = create_db_engine(DEAD_DB_URL)
    dead = OrderStore(engine)
    service.app.state.store = dead
    service.app.state.processor.store = dead
    yield service
    engine.dispose()


def _assert_503(response_status: int, retry_after: str | None) -> None:
    assert response_status == 503
    assert retry_after is not None


def test_process_answers_503_and_calls_no_insurer_without_a_database(db_gone: Service) -> None:
    response = db_gone.process("D1")
    _assert_503(response.status_code, response.headers.get("Retry-After"))
    assert "Database unavailable" in response.json()["detail"]
    assert db_gone.insurer.requests == []


@pytest.mark.parametrize("path", ["/orders", "/orders/D1", "/orders?state=FAILED"])
def test_order_reads_answer_503_without_a_database(db_gone: Service, path: str) -> None:
    response = db_gone.client.get(path)
    _assert_503(response.status_code, response.headers.get("Retry-After"))


def test_requeue_answers_503_without_a_database(db_gone: Service) -> None:
    response = db_gone.client.post("/orders/D1/requeue")
    _assert_503(response.status_code, response.headers.get("Retry-After"))


def test_readyz_is_503_and_healthz_200_without_a_database(db_gone: Service) -> None:
    ready = db_gone.client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"]["ok"] is False
    assert db_gone.client.get("/healthz").status_code == 200


def test_classify_does_not_need_the_database(db_gone: Service) -> None:
    response = db_gone.client.post("/classify", json={"insurer": "acme", "operation": "pay", "error_message": "x"})
    assert response.status_code == 200
