"""signed-form end to end on real processes: the simulator speaking it under /signed, `python -m service
serve` taking /process, `python -m service worker --once` re-executing, and the signed query deciding an
unknown outcome; the key from the environment variable the insurers file names (docs/adapters.md)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from model.artifact import save_artifact
from model.classifier import build_classifier
from model.registry import activate
from service.simulator.signed import SIM_SIGN_KEY
from tests.integration.conftest import CLEAN_EXIT, RunningProcess, Simulator, child_env, start_simulator
from tests.integration.test_service_loop import RETRY, run_worker, settle, start_service, vocabulary_frame

pytestmark = pytest.mark.integration

TIMEOUT_S = 3.0
HANG_S = 8.0
SCRIPTS: dict[str, list[str]] = {
    "SF-OK": ["success"],
    "SF-ASYNC": ["lock_contention", "success"],
    "SF-UNKNOWN": ["complete_then_timeout"],
}


@dataclass
class Run:
    sim: Simulator
    service: RunningProcess
    first: dict[str, dict[str, Any]] = field(default_factory=dict)
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    forged: dict[str, Any] = field(default_factory=dict)
    workers: list[dict[str, Any]] = field(default_factory=list)

    def ledger(self) -> dict[str, Any]:
        return self.sim.ledger()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    work = tmp_path_factory.mktemp("signed")
    frame = vocabulary_frame(2000, seed=3)
    classifier = build_classifier({"random_state": 0}).fit(frame, frame["async_eligible"], frame["category"])
    registry = work / "registry"
    save_artifact(classifier, registry, version="2026-12-03T10-00-00-signed", data={"rows": len(frame)})
    activate(registry, "2026-12-03T10-00-00-signed")
    sim = start_simulator(work, scenario="fast", seed=5)
    insurers = work / "insurers.toml"
    insurers.write_text(
        f'[insurers.sf]\nbase_url = "{sim.url}/signed"\ntimeout_s = {TIMEOUT_S}\nadapter = "signed-form"\n'
        'sign_key_env = "SF_SIGN_KEY"\nsign_type = "HMAC-SHA256"\n\n'
        f'[insurers.sf-md5]\nbase_url = "{sim.url}/signed"\ntimeout_s = {TIMEOUT_S}\nadapter = "signed-form"\n'
        f'sign_key = "{SIM_SIGN_KEY}"\nsign_type = "MD5"\n\n'
        f'[insurers.sf-wrong-key]\nbase_url = "{sim.url}/signed"\ntimeout_s = {TIMEOUT_S}\nadapter = "signed-form"\n'
        'sign_key = "not-the-simulators-key"\n',
        encoding="utf-8",
    )
    tail = ["--db-url", f"sqlite:///{work}/asyncgate.db", "--model-dir", str(registry), "--insurers", str(insurers)]
    env = child_env({**RETRY, "ASYNCGATE_STATE_DIR": str(work / "state"), "SF_SIGN_KEY": SIM_SIGN_KEY})
    service = None
    try:
        service = start_service(work, tail, env)
        result = Run(sim, service)
        with httpx.Client(base_url=service.url, timeout=15.0, trust_env=False) as http:

            def process(order_id: str, insurer: str, script: list[str]) -> dict[str, Any]:
                payload = {"premium": 1200, "sim": {"script": script, "delay_s": HANG_S}}
                body = {"order_id": order_id, "insurer": insurer, "operation": "underwrite", "payload": payload}
                response = http.post("/process", json=body)
                assert response.status_code == 200, response.text
                answer: dict[str, Any] = response.json()
                return answer

            for order_id, script in SCRIPTS.items():
                result.first[order_id] = process(order_id, "sf", script)
            result.first["SF-MD5"] = process("SF-MD5", "sf-md5", ["success"])
            result.forged = process("SF-FORGED", "sf-wrong-key", ["success"])
            settle()
            result.workers.append(run_worker(tail, env))  # SF-ASYNC: call again; SF-UNKNOWN: query first
            for order_id in [*SCRIPTS, "SF-MD5"]:
                result.orders[order_id] = http.get(f"/orders/{order_id}").json()
        yield result
    finally:
        if service is not None:
            assert service.stop() in CLEAN_EXIT, service.output()
        assert sim.stop() in CLEAN_EXIT, sim.process.output()


def test_process_succeeds_through_signed_form(run: Run) -> None:
    for order_id in ("SF-OK", "SF-MD5"):
        first = run.first[order_id]
        assert (first["state"], first["failure"]) == ("SUCCEEDED", None), first
        assert first["result"]["order_id"] == order_id
    assert run.ledger()["completions"]["SF-OK:underwrite"] == 1


def test_an_async_failure_is_re_executed_by_the_worker(run: Run) -> None:
    first = run.first["SF-ASYNC"]
    assert first["state"] == "ASYNC_PROCESSING", first
    assert first["failure"]["error_code"], "the signed FAIL's err_code reached the order"
    assert run.orders["SF-ASYNC"]["state"] == "SUCCEEDED"
    ledger = run.ledger()
    assert (ledger["calls_by_key"]["SF-ASYNC:underwrite"], ledger["completions"]["SF-ASYNC:underwrite"]) == (2, 1)


def test_an_unknown_outcome_is_settled_by_the_signed_query_without_a_second_call(run: Run) -> None:
    first = run.first["SF-UNKNOWN"]
    assert first["state"] == "ASYNC_PROCESSING", first
    assert first["failure"]["error_message"].startswith("ReadTimeout")
    assert run.orders["SF-UNKNOWN"]["state"] == "SUCCEEDED"
    ledger = run.ledger()
    assert ledger["calls_by_key"]["SF-UNKNOWN:underwrite"] == 1, "the query found it completed: no second call"
    assert ledger["completions"]["SF-UNKNOWN:underwrite"] == 1


def test_a_request_signed_with_the_wrong_key_never_reaches_the_ledger(run: Run) -> None:
    failure = run.forged["failure"]
    assert failure is not None and "signature" in failure["error_message"], run.forged
    assert failure["http_status"] == 400
    assert "SF-FORGED:underwrite" not in run.ledger()["calls_by_key"]
