"""Schemathesis against the service's own OpenAPI schema, in process: for every operation, generated
requests (valid and invalid) never get a 5xx, and every response conforms to the schema (status code,
content type, body, headers). Bounded: 100 examples per operation and mode (about 30 s on 2 cores).

Left out: schemathesis' "schema-valid request rejected" check. By the contract a schema-valid
/process for an insurer that is not configured gets 400, and an order id that does not exist 404.

(schemathesis' lazy `from_fixture` loader does not work with pytest 9, so each operation's
strategies are driven by hypothesis directly.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
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

EXAMPLES = 100
#: Invalid requests must get one of these: 413 too (a body over its size limit is refused before parsing).
CONFIG = SchemathesisConfig.from_dict(
    {"checks": {"negative_data_rejection": {"expected-statuses": ["400", "404", "405", "409", "413", "422"]}}}
)


class OpenLifespan:
    """The app with its lifespan already open (by a TestClient): lifespan events are acknowledged, not run,
    so schemathesis' per-call clients all share the one runtime."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

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
        yield OpenLifespan(app)
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
