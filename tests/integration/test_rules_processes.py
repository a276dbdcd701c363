"""Operators' rules across real processes: `asyncgate rules add` (its own process) changes what a running
`asyncgate serve` decides within 5 seconds, and the server flushes its hit counts on its own, on SQLite
and on PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from model.artifact import save_artifact
from model.registry import activate
from tests.factories import toy_classifier
from tests.integration.conftest import RunningProcess, child_env, free_port, start_process
from tests.service.conftest import BUSY_MESSAGE

pytestmark = pytest.mark.integration

FAILURE = {"insurer": "acme", "operation": "underwrite", "error_code": "E1001", "error_message": BUSY_MESSAGE}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/rules.db"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def server(tmp_path: Path, database: str) -> Iterator[RunningProcess]:
    registry = tmp_path / "models"
    save_artifact(toy_classifier(), registry, version="toy-rules", data={"rows": 3000})
    activate(registry, "toy-rules")
    port = free_port()
    argv = [sys.executable, "-m", "service", "serve", "--port", str(port), "--db-url", database]
    argv += ["--model-dir", str(registry)]
    process = start_process(argv, port=port, log_path=tmp_path / "serve.log", env=child_env())
    yield process
    process.stop()


def classify(client: httpx.Client) -> dict[str, Any]:
    response = client.post("/classify", json=FAILURE)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_rule_added_by_another_process_applies_within_five_seconds(server: RunningProcess, database: str) -> None:
    with httpx.Client(base_url=server.url, timeout=5.0, trust_env=False) as client:
        assert classify(client)["decided_by"] == "model"
        argv = [sys.executable, "-m", "service", "rules", "add", "--db-url", database, "--decision", "final"]
        argv += ["--error-code", "E1001", "--reason", "pinned from the command line"]
        added = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            env=child_env(),
            timeout=60,
        )
        assert added.returncode == 0, added.stdout + added.stderr
        written = time.monotonic()
        while (body := classify(client))["decided_by"] != "rule":
            assert time.monotonic() - written < 5.0, "the server did not apply the rule within 5 s"
            time.sleep(0.05)
        assert body["async_eligible"] is False and body["explanation"][0]["reason"] == "pinned from the command line"
        for _ in range(4):
            classify(client)
        flushed_by = time.monotonic() + 5.0  # the server flushes its counts every second
        while (rule := client.get("/admin/rules").json()["rules"][0])["hits"] < 5:
            assert time.monotonic() < flushed_by, f"hits not flushed: {rule}"
            time.sleep(0.1)
        assert rule["created_by"] == "cli" and rule["overrides"] == rule["hits"], "the model alone says async"
