"""The whole loop over real HTTP and real processes, on SQLite and on PostgreSQL: the simulated insurer,
`python -m service serve` (uvicorn) and `python -m service worker --once`, driven like the platform would.

Per database, the `loop` fixture starts a simulator and the service, sends one order per scenario
(each scripted through payload["sim"]), runs the worker twice, and keeps every answer; the tests then
check the orders, the simulator's ledger and the refusals. The model is a small classifier trained on
failures rendered from the shared vocabulary (data/vocab), the way the simulator words them: the toy
model of tests/factories knows 14 fixed messages and cannot read the simulator's.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa

from model.artifact import save_artifact
from model.classifier import build_classifier
from model.registry import activate
from model.schema import CATEGORIES
from service.simulator.behaviour import default_style
from synth.vocabulary import load_vocabulary, render_failure
from tests.integration.conftest import CLEAN_EXIT, RunningProcess, Simulator, child_env, free_port, start_process
from tests.integration.conftest import start_simulator as start_simulator_process

pytestmark = pytest.mark.integration

INSURER = "sim"
#: The insurer's client timeout. Every call but the two scripted hangs must answer within it: a scripted
#: answer of the "fast" simulator takes milliseconds, and 3 s leaves room for a loaded 2-core machine
#: (0.5 s did not: one slow ordinary answer became a spurious ReadTimeout, an unknown outcome).
TIMEOUT_S = 3.0
#: How long the scripted hangs (`timeout`, `complete_then_timeout`) hold the request: well past TIMEOUT_S,
#: so the client gives up first however late its timer fires. It costs no test time (the client has
#: gone; the simulator's graceful shutdown gives in-flight calls 2 s), only 2 x TIMEOUT_S per database.
HANG_S = 8.0
RETRY = {"ASYNCGATE_RETRY_BASE_S": "0.05", "ASYNCGATE_RETRY_MAX_S": "0.1", "ASYNCGATE_RETRY_MAX_ATTEMPTS": "3"}
WORKER_TIMEOUT_S = 60.0

#: order_id → the simulator script its payload carries. identity_mismatch and lock_contention always
#: render as protocol failures (never as a 502/504 gateway page, which would be an unknown outcome).
SCRIPTS: dict[str, list[str]] = {
    "OK-1": ["success"],
    "FINAL-1": ["identity_mismatch"],
    "ASYNC-1": ["lock_contention", "success"],
    "UNKNOWN-1": ["complete_then_timeout"],
    "HANG-1": ["timeout", "success"],
    "DEAD-1": ["insurer_busy"],
    "REQUEUE-1": ["identity_mismatch", "success"],
}


def payload(order_id: str) -> dict[str, Any]:
    return {"premium": 1200, "product": "term-life-20", "sim": {"script": SCRIPTS[order_id], "delay_s": HANG_S}}


# -- the model --------------------------------------------------------------------------------------


def vocabulary_frame(rows: int, seed: int) -> pd.DataFrame:
    """`rows` labelled failures rendered from the shared vocabulary, half in the simulator's own style."""
    vocab = load_vocabulary()
    rng = random.Random(seed)
    own = default_style(vocab)
    partners = sorted(name for name, p in vocab.partners.items() if p.channel == "http")
    records = []
    for _ in range(rows):
        category = rng.choice(list(CATEGORIES))
        partner = own if rng.random() < 0.5 else rng.choice(partners)
        timeout_s = vocab.partners[partner].timeout_s
        r = render_failure(vocab, partner, category, rng, progress=rng.random(), timeout_s=timeout_s)
        records.append(
            {
                "insurer": partner,
                "operation": rng.choice(["underwrite", "pay", "issue_policy"]),
                "error_code": r.error_code,
                "error_message": r.error_message,
                "http_status": r.http_status,
                "latency_ms": r.latency_ms,
                "async_eligible": int(CATEGORIES[category]),
                "category": category,
            }
        )
    frame = pd.DataFrame(records)
    frame["http_status"] = frame["http_status"].astype("Int64")
    frame["latency_ms"] = frame["latency_ms"].astype("float64")
    return frame


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry with one small trained version, active."""
    frame = vocabulary_frame(2000, seed=3)
    classifier = build_classifier({"random_state": 0}).fit(frame, frame["async_eligible"], frame["category"])
    registry = tmp_path_factory.mktemp("registry")
    version = "2026-11-24T10-00-00-loop00"
    save_artifact(classifier, registry, version=version, data={"rows": len(frame), "source": "vocabulary"})
    activate(registry, version)
    return registry


# -- the processes ----------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An empty database for the module: an SQLite file, or a fresh schema in the PostgreSQL `test` database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('sqlite')}/asyncgate.db"
        return
    server: str = request.getfixturevalue("pg_server_url")
    schema = f"loop_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{server}{'&' if '?' in server else '?'}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@dataclass
class Loop:
    """The running simulator and service, and what the loop saw."""

    sim: Simulator
    service: RunningProcess
    http: httpx.Client
    first: dict[str, dict[str, Any]] = field(default_factory=dict)  # order_id → first /process answer
    requeued: dict[str, Any] = field(default_factory=dict)
    workers: list[dict[str, Any]] = field(default_factory=list)  # the worker runs' printed stats

    def process(self, order_id: str, body: dict[str, Any] | None = None, **fields: Any) -> httpx.Response:
        request = {"order_id": order_id, "insurer": INSURER, "operation": "underwrite", "payload": body or {}}
        request.update(fields)
        return self.http.post("/process", json=request)

    def order(self, order_id: str) -> dict[str, Any]:
        response = self.http.get(f"/orders/{order_id}")
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found


def start_service(log_dir: Path, argv_tail: list[str], env: dict[str, str]) -> RunningProcess:
    """`python -m service serve` on a free port (retried if another process takes the port first)."""
    for attempt in range(3):
        port = free_port()
        log_path = log_dir / f"service-{port}.log"
        argv = [sys.executable, "-m", "service", "serve", "--port", str(port), *argv_tail]
        try:
            return start_process(argv, port=port, log_path=log_path, ready_path="/readyz", env=env)
        except RuntimeError:
            if attempt == 2 or "address already in use" not in log_path.read_text().lower():
                raise
    raise AssertionError("unreachable")


def run_worker(argv_tail: list[str], env: dict[str, str]) -> dict[str, Any]:
    """`python -m service worker --once`: must exit 0; returns the stats it prints."""
    argv = [sys.executable, "-m", "service", "worker", "--once", *argv_tail]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=WORKER_TIMEOUT_S, check=False)
    assert done.returncode == 0, f"worker exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    stats: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return stats


def settle() -> None:
    """Wait past ASYNCGATE_RETRY_MAX_S, so every order kept for re-execution is due."""
    time.sleep(float(RETRY["ASYNCGATE_RETRY_MAX_S"]) + 0.1)


@pytest.fixture(scope="module")
def loop(db_url: str, model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loop]:
    work = tmp_path_factory.mktemp("loop")
    sim = start_simulator_process(work, scenario="fast", seed=5)
    insurers = work / "insurers.toml"
    insurers.write_text(f'[insurers.{INSURER}]\nbase_url = "{sim.url}"\ntimeout_s = {TIMEOUT_S}\n', encoding="utf-8")
    tail = ["--db-url", db_url, "--model-dir", str(model_dir), "--insurers", str(insurers)]
    env = child_env({**RETRY, "ASYNCGATE_STATE_DIR": str(work / "state")})
    service = None
    try:
        service = start_service(work, tail, env)
        with httpx.Client(base_url=service.url, timeout=10.0, trust_env=False) as http:
            run = Loop(sim, service, http)
            for order_id in SCRIPTS:
                response = run.process(order_id, payload(order_id))
                assert response.status_code == 200, response.text
                run.first[order_id] = response.json()
            run.requeued = run.http.post("/orders/REQUEUE-1/requeue").json()
            settle()
            run.workers.append(run_worker(tail, env))  # ASYNC, UNKNOWN, HANG, REQUEUE settle; DEAD: call 2
            settle()
            run.workers.append(run_worker(tail, env))  # DEAD: call 3, the last one
            yield run
    finally:
        if service is not None:
            assert service.stop() in CLEAN_EXIT, service.output()
        assert sim.stop() in CLEAN_EXIT, sim.process.output()


def ledger(run: Loop) -> dict[str, Any]:
    return run.sim.ledger()


def calls(run: Loop, order_id: str) -> int:
    count: int = ledger(run)["calls_by_key"].get(f"{order_id}:underwrite", 0)
    return count


def completions(run: Loop, order_id: str) -> int:
    count: int = ledger(run)["completions"].get(f"{order_id}:underwrite", 0)
    return count


# -- the tests --------------------------------------------------------------------------------------


def test_success_completes_with_the_insurer_data(loop: Loop) -> None:
    first = loop.first["OK-1"]
    assert (first["state"], first["next_action"], first["attempts"], first["failure"]) == (
        "SUCCEEDED",
        "complete",
        1,
        None,
    )
    assert (first["result"]["order_id"], first["result"]["operation"]) == ("OK-1", "underwrite")
    assert (calls(loop, "OK-1"), completions(loop, "OK-1")) == (1, 1)


def test_definitive_failure_is_returned_at_once(loop: Loop) -> None:
    first = loop.first["FINAL-1"]
    assert (first["state"], first["next_action"], first["result"]) == ("FAILED", "return_failure", None)
    failure = first["failure"]
    assert failure["async_eligible"] is False
    assert failure["error_message"]
    assert failure["http_status"] is not None
    assert loop.order("FINAL-1")["state"] == "FAILED"
    assert calls(loop, "FINAL-1") == 1, "a FAILED order is not executed again"


def test_async_failure_then_success_on_reexecution(loop: Loop) -> None:
    first = loop.first["ASYNC-1"]
    assert (first["state"], first["next_action"]) == ("ASYNC_PROCESSING", "await_async")
    assert first["failure"]["async_eligible"] is True
    order = loop.order("ASYNC-1")
    assert (order["state"], order["attempt_count"]) == ("SUCCEEDED", 2)
    assert [a["outcome"] for a in order["attempts"]] == ["failure", "success"]
    assert order["result"]["order_id"] == "ASYNC-1"
    assert [(t["from_state"], t["to_state"]) for t in order["transitions"]][-1] == ("ASYNC_PROCESSING", "SUCCEEDED")
    assert (calls(loop, "ASYNC-1"), completions(loop, "ASYNC-1")) == (2, 1)


def test_unknown_outcome_is_settled_by_a_query_not_a_second_completion(loop: Loop) -> None:
    first = loop.first["UNKNOWN-1"]
    assert first["state"] == "ASYNC_PROCESSING"
    assert first["failure"]["error_message"].startswith("ReadTimeout")
    assert first["failure"]["http_status"] is None
    order = loop.order("UNKNOWN-1")
    assert order["state"] == "SUCCEEDED"
    assert [(a["kind"], a["outcome"]) for a in order["attempts"]] == [("call", "unknown"), ("query", "completed")]
    assert order["result"]["order_id"] == "UNKNOWN-1"
    assert calls(loop, "UNKNOWN-1") == 1, "no second POST"
    assert completions(loop, "UNKNOWN-1") == 1, "the insurer completed the order exactly once"


def test_a_timeout_without_completion_is_queried_then_sent_again(loop: Loop) -> None:
    assert loop.first["HANG-1"]["state"] == "ASYNC_PROCESSING"
    order = loop.order("HANG-1")
    assert order["state"] == "SUCCEEDED"
    assert [a["kind"] for a in order["attempts"]] == ["call", "query", "call"]
    assert order["attempts"][1]["outcome"] == "not_found"
    assert (calls(loop, "HANG-1"), completions(loop, "HANG-1")) == (2, 1)


def test_attempts_exhausted_is_dead(loop: Loop) -> None:
    assert loop.first["DEAD-1"]["state"] == "ASYNC_PROCESSING"
    order = loop.order("DEAD-1")
    assert (order["state"], order["next_action"], order["attempt_count"]) == ("DEAD", "return_failure", 3)
    assert order["next_attempt_at"] is None
    assert calls(loop, "DEAD-1") == 3
    assert loop.workers[-1]["by_state"] == {"DEAD": 1}


def test_requeue_of_a_failed_order_runs_it_again(loop: Loop) -> None:
    assert loop.first["REQUEUE-1"]["state"] == "FAILED"
    assert loop.requeued["state"] == "ASYNC_PROCESSING"
    order = loop.order("REQUEUE-1")
    assert order["state"] == "SUCCEEDED"
    assert [(t["from_state"], t["to_state"]) for t in order["transitions"]][-2:] == [
        ("FAILED", "ASYNC_PROCESSING"),
        ("ASYNC_PROCESSING", "SUCCEEDED"),
    ]
    assert (calls(loop, "REQUEUE-1"), completions(loop, "REQUEUE-1")) == (2, 1)
    assert loop.http.post("/orders/OK-1/requeue").status_code == 409


def test_the_first_worker_run_settled_what_was_due(loop: Loop) -> None:
    stats = loop.workers[0]
    assert stats["claimed"] == stats["finished"] == 5
    assert stats["by_state"] == {"SUCCEEDED": 4, "ASYNC_PROCESSING": 1}


def test_repeat_answers_from_the_store_without_calling_the_insurer(loop: Loop) -> None:
    before = ledger(loop)["calls"]
    for order_id in ("OK-1", "FINAL-1", "DEAD-1"):
        again = loop.process(order_id, payload(order_id))
        assert again.status_code == 200
        assert again.json()["state"] == loop.order(order_id)["state"]
    assert loop.process("OK-1", payload("OK-1")).json() == loop.first["OK-1"]
    assert ledger(loop)["calls"] == before


def test_same_order_id_with_another_body_gets_409(loop: Loop) -> None:
    before = loop.order("OK-1")
    response = loop.process("OK-1", {**payload("OK-1"), "premium": 9999})
    assert response.status_code == 409
    assert loop.order("OK-1") == before


def test_invalid_body_gets_422_and_writes_nothing(loop: Loop) -> None:
    response = loop.process("BAD ID", payload("OK-1"))
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "order_id"]
    response = loop.http.post("/process", json={"order_id": "NOPAYLOAD-1", "insurer": INSURER, "operation": "pay"})
    assert response.status_code == 422
    assert loop.http.get("/orders/NOPAYLOAD-1").status_code == 404


def test_body_over_the_limit_gets_413_and_writes_nothing(loop: Loop) -> None:
    response = loop.process("BIG-1", {"blob": "x" * (512 * 1024)})
    assert response.status_code == 413
    assert loop.http.get("/orders/BIG-1").status_code == 404


def test_unknown_insurer_gets_400_naming_it(loop: Loop) -> None:
    response = loop.process("NOBODY-1", {"premium": 1}, insurer="nobody-mutual")
    assert response.status_code == 400
    assert "nobody-mutual" in response.json()["detail"]
    assert loop.http.get("/orders/NOBODY-1").status_code == 404


def test_the_service_reports_what_happened(loop: Loop) -> None:
    ready = loop.http.get("/readyz")
    assert ready.status_code == 200
    assert loop.http.get("/model").json()["version"] == "2026-11-24T10-00-00-loop00"
    listed = loop.http.get("/orders", params={"state": "SUCCEEDED", "limit": 500}).json()
    assert {o["order_id"] for o in listed["orders"]} == {"OK-1", "ASYNC-1", "UNKNOWN-1", "HANG-1", "REQUEUE-1"}
    metrics = loop.http.get("/metrics").text
    assert 'asyncgate_orders{state="DEAD"} 1.0' in metrics
    assert all(count == 1 for count in ledger(loop)["completions"].values()), "no order completed twice"
