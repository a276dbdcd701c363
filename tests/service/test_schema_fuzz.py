"""Schemathesis against the service's own OpenAPI schema, in process: for every operation, generated
requests (valid and invalid) never get a 5xx, and every response conforms to the schema (status code,
content type, body, headers). Bounded: 100 examples per operation and mode (about 30 s on 2 cores).

Left out: schemathesis' "schema-valid request rejected" check. By the contract a schema-valid
/process for an insurer that is not configured gets 400, and an order id that does not exist 404.

(schemathesis' lazy `from_fixture` loader does not work with pytest 9, so each operation's
strategies are driven by hypothesis directly.)
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode, openapi
from schemathesis.config import SchemathesisConfig
from schemathesis.core.result import Ok
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.checks import positive_data_acceptance
from starlette.types import Receive, Scope, Send

from service.app import create_app
from service.config import Settings
from service.scoring import ServingModel
from tests.service.conftest import MockInsurer, TestClient, registry  # type: ignore[attr-defined]

pytestmark = pytest.mark.slow

EXAMPLES = 50
#: Invalid requests must get one of these: 413 too (a body over its size limit is refused before parsing).
CONFIG = SchemathesisConfig.from_dict(
    {"checks": {"negative_data_rejection": {"expected-statuses": ["400", "404", "405", "409", "413", "422"]}}}
)


class OpenLifespan:
    """The app with its lifespan already open (by a TestClient): lifespan events are acknowledged, not run,
    so schemathesis' per-call clients all share the one runtime."""

    def __init__(self, app: FastAPI, db_url: str) -> None:
        self.app = app
        self.db_url = db_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def fuzzed_app(tmp_path_factory: pytest.TempPathFactory, serving_model: ServingModel) -> Iterator[OpenLifespan]:
    """The app (SQLite, the toy model, a mock insurer that completes every order), inside its lifespan."""
    folder: Path = tmp_path_factory.mktemp("fuzz")
    settings_ = Settings(state_dir=folder, db_url=f"sqlite:///{folder}/fuzz.db", model_dir=folder / "none")
    http = MockInsurer().http_client()
    app = create_app(settings_, model=serving_model, insurers=registry(), http_client=http)
    with TestClient(app):
        yield OpenLifespan(app, settings_.resolved_db_url)
    anyio.run(http.aclose)


def _fuzz(operation: APIOperation[Any, Any, Any, Any], mode: GenerationMode) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case: Case[Any]) -> None:
        case.call_and_validate(excluded_checks=[positive_data_acceptance])

    try:
        run()
    except Unsatisfiable:
        assert mode is GenerationMode.NEGATIVE, operation.label  # nothing to make invalid (GET /healthz)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_no_5xx_and_responses_conform(fuzzed_app: OpenLifespan, mode: GenerationMode) -> None:
    schema = openapi.from_asgi("/openapi.json", fuzzed_app, config=CONFIG)
    results = list(schema.get_all_operations())
    assert all(isinstance(result, Ok) for result in results), "the schema is valid"
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) >= 10, [op.label for op in operations]
    for operation in operations:
        _fuzz(operation, mode)


# -- malformed bodies, sent as raw bytes ------------------------------------------------------------
#
# Schemathesis sends what the schema can express. These are bodies Python's JSON parser accepts but
# the contract does not: NaN / Infinity / -Infinity, integers beyond 64 bits, wrong types, deeply
# nested values, strings with unpaired surrogates (a JSON "\ud800" escape); each put at one field of
# an otherwise valid body. Every one must get a 422 whose detail names that field, never a 5xx, and a
# refused /process writes no order.

MALFORMED_EXAMPLES = 300  # per route: about 3 s each (a 422 is quick)

CLASSIFY_BODY: dict[str, Any] = {
    "insurer": "acme",
    "operation": "underwrite",
    "error_code": "E1001",
    "error_message": "系统繁忙，请稍后再试",
    "http_status": 503,
    "latency_ms": 1840.0,
}
NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])
HUGE_INT = st.one_of(
    st.integers(min_value=2**64, max_value=10**40),
    st.integers(max_value=-(2**63) - 1, min_value=-(10**40)),
)
LONE_SURROGATE = st.builds(
    lambda prefix, surrogate, suffix: prefix + chr(surrogate) + suffix,
    st.text(max_size=5),
    st.integers(min_value=0xD800, max_value=0xDFFF),
    st.text(max_size=5),
)
#: Deep enough to pass the payload's depth limit (32) and orjson's own (about 255), well inside
#: Python's JSON parser's recursion limit (about 1,000; deeper bodies are a 400, see test_limits.py).
DEPTH = st.integers(min_value=2, max_value=400)


def _nest(depth: int, leaf: Any, kind: str) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value] if kind == "list" else {"k": value}
    return value


DEEP = st.builds(_nest, DEPTH, st.sampled_from([1, "x", None]), st.sampled_from(["list", "dict"]))
CONTAINERS = st.one_of(
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
)
NOT_A_STRING = st.one_of(
    NON_FINITE, HUGE_INT, st.integers(), st.booleans(), st.floats(allow_nan=False), CONTAINERS, DEEP
)
NOT_A_NUMBER = st.one_of(NON_FINITE, st.booleans(), st.text(max_size=5), CONTAINERS, DEEP)
BAD_CLASSIFY_FIELD: dict[str, st.SearchStrategy[Any]] = {
    "insurer": st.one_of(NOT_A_STRING, LONE_SURROGATE, st.none()),
    "operation": st.one_of(NOT_A_STRING, LONE_SURROGATE, st.none()),
    "error_code": st.one_of(NOT_A_STRING, LONE_SURROGATE),  # null is a valid error_code
    "error_message": st.one_of(NOT_A_STRING, LONE_SURROGATE, st.none()),
    "http_status": st.one_of(
        NOT_A_NUMBER,
        HUGE_INT,
        st.integers(max_value=99),
        st.integers(min_value=600),
        st.floats(100.0, 599.0).filter(lambda f: f != int(f)),  # 503.0 is an integer; 503.5 is not
    ),
    "latency_ms": st.one_of(NOT_A_NUMBER, st.floats(max_value=-0.001, allow_infinity=False)),
}


@st.composite
def bad_classify(draw: st.DrawFn) -> tuple[dict[str, Any], list[Any]]:
    """A /classify body with one bad field, and the field's location."""
    field = draw(st.sampled_from(sorted(BAD_CLASSIFY_FIELD)))
    return {**CLASSIFY_BODY, field: draw(BAD_CLASSIFY_FIELD[field])}, ["body", field]


@st.composite
def bad_batch(draw: st.DrawFn) -> tuple[dict[str, Any], list[Any]]:
    """A /classify/batch body with a bad item (or a bad `items`), and its location."""
    if draw(st.booleans()):
        items = draw(
            st.one_of(
                NON_FINITE,
                HUGE_INT,
                st.text(max_size=3),
                st.none(),
                st.just([]),
                st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
            )
        )
        return {"items": items}, ["body", "items"]
    item, location = draw(bad_classify())
    items = [CLASSIFY_BODY] * draw(st.integers(0, 3))
    index = len(items)
    items += [item] + [CLASSIFY_BODY] * draw(st.integers(0, 2))
    return {"items": items}, ["body", "items", index, *location[1:]]


def _plant(payload: Any, path: list[str], value: Any) -> Any:
    """`payload` with `value` at `path` (a list of keys; missing levels are made)."""
    if not path:
        return value
    return {**payload, path[0]: _plant({}, path[1:], value)}


@st.composite
def bad_process(draw: st.DrawFn) -> tuple[dict[str, Any], list[Any]]:
    """A /process body with one bad field (a bad value somewhere inside `payload` too), and its location."""
    order_id = f"FUZZ-{draw(st.integers(0, 10**12))}"
    body: dict[str, Any] = {"order_id": order_id, "insurer": "acme", "operation": "underwrite"}
    body["payload"] = {"premium": 1200, "insured": {"name": "张三", "tags": [1, 2]}}
    field = draw(st.sampled_from(["order_id", "insurer", "operation", "payload", "payload-inside", "missing"]))
    if field == "missing":
        gone = draw(st.sampled_from(["order_id", "insurer", "operation", "payload"]))
        del body[gone]
        return body, ["body", gone]
    if field == "payload":
        body["payload"] = draw(
            st.one_of(
                NON_FINITE, HUGE_INT, st.text(max_size=3), st.none(), st.booleans(), st.lists(st.integers(), max_size=3)
            )
        )
        return body, ["body", "payload"]
    if field == "payload-inside":
        bad = draw(
            st.one_of(
                NON_FINITE,
                HUGE_INT,
                LONE_SURROGATE,
                st.builds(_nest, st.integers(33, 400), st.just(1), st.sampled_from(["list", "dict"])),
            )
        )
        path = draw(st.lists(st.sampled_from(["premium", "insured", "a", "b"]), min_size=1, max_size=4))
        body["payload"] = _plant(body["payload"], path, bad)
        if draw(st.booleans()) and isinstance(bad, str):  # an unpaired surrogate as a key instead
            body["payload"] = {**body["payload"], bad: 1}
        return body, ["body", "payload"]
    body[field] = draw(st.one_of(NOT_A_STRING, LONE_SURROGATE, st.none()))
    return body, ["body", field]


TOP_LEVEL_NOT_AN_OBJECT = st.one_of(
    NON_FINITE, HUGE_INT, st.text(max_size=3), st.none(), st.booleans(), st.lists(st.integers(), max_size=2)
)


def _orders(db_url: str) -> int:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            count: int = conn.execute(sa.text("SELECT count(*) FROM orders")).scalar_one()
    finally:
        engine.dispose()
    return count


@pytest.mark.parametrize(
    ("path", "bodies"),
    [("/classify", bad_classify()), ("/classify/batch", bad_batch()), ("/process", bad_process())],
    ids=["classify", "batch", "process"],
)
def test_malformed_bodies_get_a_422_naming_the_field(
    fuzzed_app: OpenLifespan, path: str, bodies: st.SearchStrategy[tuple[Any, list[Any]]]
) -> None:
    client = TestClient(fuzzed_app.app, raise_server_exceptions=False)  # the lifespan is already open
    orders_before = _orders(fuzzed_app.db_url)

    def send(body: Any) -> Any:
        raw = json.dumps(
            body, allow_nan=True, ensure_ascii=True
        ).encode()  # NaN, Infinity, "\ud800" as Python writes them
        return client.post(path, content=raw, headers={"content-type": "application/json"})

    @given(case=st.one_of(bodies, st.tuples(TOP_LEVEL_NOT_AN_OBJECT, st.just(["body"]))))
    @settings(max_examples=MALFORMED_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case: tuple[Any, list[Any]]) -> None:
        body, location = case
        answer = send(body)
        assert answer.status_code == 422, (answer.status_code, answer.text[:500])
        detail = answer.json()["detail"]
        assert isinstance(detail, list) and detail, detail
        located = [list(error["loc"]) for error in detail]
        assert any(loc[: len(location)] == location for loc in located), (location, located)
        assert all(isinstance(error["msg"], str) and error["msg"] for error in detail)

    run()
    assert _orders(fuzzed_app.db_url) == orders_before, "a refused /process writes nothing"
