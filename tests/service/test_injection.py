"""No SQL is built from strings: SQL-injection text through every HTTP field is stored (or matched)
verbatim, on SQLite and PostgreSQL, and the tables are intact afterwards."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import sqlalchemy as sa

from service.app import create_app
from service.config import Settings
from service.gateway import InsurerRegistry
from service.scoring import ServingModel
from service.store import create_db_engine
from tests.service.conftest import BASE_URL, MockInsurer, TestClient, failure  # type: ignore[attr-defined]

INJECTIONS = [
    "'; DROP TABLE orders; --",
    '" OR 1=1 --',
    "1' OR '1'='1",
    "Robert'); DELETE FROM attempts; --",
    "%' UNION SELECT order_id, payload FROM orders --",
    "\\'; SELECT pg_sleep(5); --",
    "$$; DROP TABLE transitions; $$",
    "x' AND (SELECT count(*) FROM pg_tables) > 0 --",
    "_%",
    "名字'); TRUNCATE orders; --",
]
EVIL_INSURER = "acme'); DROP TABLE orders; --"
TABLES = ("orders", "attempts", "transitions")


@pytest.fixture
def client(db_url: str, tmp_path: Path, serving_model: ServingModel) -> Iterator[tuple[TestClient, MockInsurer]]:
    """The service with one insurer whose very name is an injection attempt."""
    settings = Settings(state_dir=tmp_path / "state", db_url=db_url, model_dir=tmp_path / "none")
    insurers = InsurerRegistry.from_mapping({EVIL_INSURER: {"base_url": BASE_URL}})
    mock = MockInsurer()
    http = mock.http_client()
    app = create_app(settings, model=serving_model, insurers=insurers, http_client=http)
    with TestClient(app) as test_client:
        yield test_client, mock
    anyio.run(http.aclose)


def _table_counts(db_url: str) -> dict[str, int]:
    engine = create_db_engine(db_url)
    try:
        with engine.connect() as conn:
            return {
                table: conn.execute(sa.select(sa.func.count()).select_from(sa.table(table))).scalar_one()
                for table in TABLES
            }
    finally:
        engine.dispose()


def test_injection_text_is_stored_verbatim(client: tuple[TestClient, MockInsurer], db_url: str) -> None:
    http, insurer = client
    payload: dict[str, Any] = {text: text for text in INJECTIONS}
    payload["nested"] = {"list": INJECTIONS, INJECTIONS[0]: {INJECTIONS[1]: INJECTIONS[2]}}
    # the insurer's answer carries injection text too: it is stored in the attempt
    insurer.script("INJ-1", failure(INJECTIONS[3], code=INJECTIONS[4], status=503))
    body = {"order_id": "INJ-1", "insurer": EVIL_INSURER, "operation": "underwrite", "payload": payload}
    answer = http.post("/process", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["failure"]["error_message"] == INJECTIONS[3]
    assert answer.json()["failure"]["error_code"] == INJECTIONS[4]

    order = http.get("/orders/INJ-1").json()
    assert order["insurer"] == EVIL_INSURER
    assert order["attempts"][0]["error_message"] == INJECTIONS[3]
    assert order["attempts"][0]["error_code"] == INJECTIONS[4]
    listed = http.get("/orders", params={"insurer": EVIL_INSURER}).json()["orders"]
    assert [o["order_id"] for o in listed] == ["INJ-1"]
    assert http.post("/process", json=body).json()["order_id"] == "INJ-1", "the same body matches verbatim"
    sent = insurer.calls("INJ-1")[0]
    assert json.loads(sent.content)["payload"] == payload, "the payload went out verbatim"
    engine = create_db_engine(db_url)
    try:
        with engine.connect() as conn:
            stored = conn.execute(sa.text("SELECT payload FROM orders WHERE order_id = 'INJ-1'")).scalar_one()
    finally:
        engine.dispose()
    assert (json.loads(stored) if isinstance(stored, str) else stored) == payload
    assert _table_counts(db_url) == {"orders": 1, "attempts": 1, "transitions": 1}


@pytest.mark.parametrize("text", INJECTIONS)
def test_injection_text_in_filters_paths_and_refused_fields_matches_nothing(
    client: tuple[TestClient, MockInsurer], db_url: str, text: str
) -> None:
    http, _insurer = client
    http.post("/process", json={"order_id": "KEEP-1", "insurer": EVIL_INSURER, "operation": "pay", "payload": {}})
    for params in ({"insurer": text}, {"operation": text}):
        answer = http.get("/orders", params=params)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"orders": [], "next_cursor": None}
    assert http.get("/orders", params={"state": text}).status_code == 422
    assert http.get("/orders", params={"cursor": text}).status_code == 400
    assert http.get(f"/orders/{text}").status_code in (404, 422)
    assert http.post(f"/orders/{text}/requeue").status_code in (404, 405, 422)
    for field in ("order_id", "operation"):  # patterns refuse these before anything is written
        body = {"order_id": "X-1", "insurer": EVIL_INSURER, "operation": "pay", "payload": {}, field: text}
        assert http.post("/process", json=body).status_code == 422
    unknown = http.post("/process", json={"order_id": "X-2", "insurer": text, "operation": "pay", "payload": {}})
    assert unknown.status_code == 400
    classify = {"insurer": text, "operation": text, "error_code": text, "error_message": text}
    assert http.post("/classify", json=classify).status_code == 200
    assert _table_counts(db_url) == {"orders": 1, "attempts": 1, "transitions": 2}
    assert [o["order_id"] for o in http.get("/orders").json()["orders"]] == ["KEEP-1"]


def test_nul_characters_never_cause_a_500(client: tuple[TestClient, MockInsurer], db_url: str) -> None:
    """PostgreSQL text cannot hold NUL: filters with one are refused (422); an insurer's NUL becomes U+FFFD;
    a payload's (JSON-escaped) NUL is kept."""
    http, insurer = client
    assert http.get("/orders", params={"insurer": "a\x00b"}).status_code == 422
    assert http.get("/orders", params={"operation": "\x00"}).status_code == 422
    insurer.script("NUL-1", failure("bad\x00message", code="E\x001", status=503))
    payload = {"key\x00": "value\x00", "list": ["\x00"]}
    body = {"order_id": "NUL-1", "insurer": EVIL_INSURER, "operation": "pay", "payload": payload}
    answer = http.post("/process", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["failure"]["error_message"] == "bad\ufffdmessage"
    assert answer.json()["failure"]["error_code"] == "E\ufffd1"
    assert json.loads(insurer.calls("NUL-1")[0].content)["payload"] == payload
    assert http.post("/process", json=body).json()["attempts"] == 1, "the stored payload matches the resent one"
    classify = {"insurer": "a\x00", "operation": "b\x00", "error_message": "c\x00"}
    assert http.post("/classify", json=classify).status_code == 200
