"""The learning loop end to end, over real processes: orders through two simulated insurers, outcomes
exported, a model retrained on history + outcomes, activated by hot reload under load without a
failed request, and the drift report reacting to a new insurer speaking the `new-codes` scenario.

One SQLite database, one `serve` and one continuous `worker`; the first model is trained on a small
generated history (the known insurer is named after the simulator's own partner style, so its codes
are in training; `newco` is not).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from model.registry import active_version, list_versions
from service.simulator.behaviour import default_style
from synth.vocabulary import load_vocabulary
from tests.integration.conftest import RunningProcess, Simulator, child_env, free_port, start_process
from training.generate import generate_failures, write_failures_csv
from training.train import train_artifact

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HISTORY_ROWS = 6000
SETTLE_S = 45.0


def cli(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "service", *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def send(client: httpx.Client, insurer: str, prefix: str, count: int) -> list[dict[str, Any]]:
    def one(n: int) -> dict[str, Any]:
        body = {"order_id": f"{prefix}-{n:04d}", "insurer": insurer, "operation": "underwrite", "payload": {"n": n}}
        answer = client.post("/process", json=body)
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(one, range(count)))


def pending(client: httpx.Client) -> int:
    return len(client.get("/orders", params={"state": "ASYNC_PROCESSING", "limit": 500}).json()["orders"])


@pytest.fixture
def loop(tmp_path: Path, simulator: Callable[..., Simulator]) -> Iterator[dict[str, Any]]:
    known = default_style(load_vocabulary())
    registry = tmp_path / "models"
    history = tmp_path / "history.csv"
    write_failures_csv(generate_failures(HISTORY_ROWS, seed=5), history)
    first = train_artifact([history], registry, make_active=True, holdout_metrics=False)
    normal = simulator(scenario="normal", seed=1)
    novel = simulator(scenario="new-codes", seed=2)
    insurers = tmp_path / "insurers.toml"
    insurers.write_text(
        f'[insurers.{known}]\nbase_url = "{normal.url}"\ntimeout_s = 1.0\n'
        f'[insurers.newco]\nbase_url = "{novel.url}"\ntimeout_s = 1.0\n'
    )
    db_url = f"sqlite:///{tmp_path / 'loop.db'}"
    env = child_env(
        {
            "ASYNCGATE_DB_URL": db_url,
            "ASYNCGATE_MODEL_DIR": str(registry),
            "ASYNCGATE_INSURERS_FILE": str(insurers),
            "ASYNCGATE_STATE_DIR": str(tmp_path / "state"),
            "ASYNCGATE_RETRY_BASE_S": "0.2",
            "ASYNCGATE_RETRY_MAX_S": "0.5",
            "ASYNCGATE_RETRY_MAX_ATTEMPTS": "4",
            "ASYNCGATE_WORKER_POLL_S": "0.1",
            "ASYNCGATE_EXPLORATION_RATE": "0.5",
            "ASYNCGATE_MODEL_WATCH_S": "0.5",
            "ASYNCGATE_DRIFT_MIN_FAILURES": "8",
            "ASYNCGATE_LOG_LEVEL": "WARNING",
        }
    )
    port = free_port()
    processes: list[RunningProcess] = []
    try:
        serve = [sys.executable, "-m", "service", "serve", "--port", str(port)]
        processes.append(
            start_process(serve, port=port, log_path=tmp_path / "serve.log", ready_path="/readyz", env=env)
        )
        with (tmp_path / "worker.log").open("ab") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "service", "worker"], stdout=log, stderr=subprocess.STDOUT, env=env
            )
        processes.append(RunningProcess(["worker"], worker, 0, tmp_path / "worker.log"))
        yield {
            "known": known,
            "registry": registry,
            "history": history,
            "first": first.version,
            "db_url": db_url,
            "env": env,
            "url": f"http://127.0.0.1:{port}",
            "tmp": tmp_path,
        }
    finally:
        for process in reversed(processes):
            process.stop()


def test_outcomes_retrain_hot_reload_and_drift(loop: dict[str, Any]) -> None:
    env, registry, tmp = loop["env"], loop["registry"], loop["tmp"]
    with httpx.Client(base_url=loop["url"], timeout=10.0, trust_env=False) as client:
        # 1. orders through the known insurer; the worker settles every async one
        answers = send(client, loop["known"], "K", 150)
        assert {a["state"] for a in answers} <= {"SUCCEEDED", "FAILED", "ASYNC_PROCESSING"}
        deadline = time.monotonic() + SETTLE_S
        while pending(client) and time.monotonic() < deadline:
            time.sleep(0.3)
        assert pending(client) == 0

        # 2. export the outcomes (CLI) and retrain on history + outcomes (CLI): a new, inactive version
        outcomes = tmp / "outcomes.csv"
        print(cli("export-outcomes", "--db-url", loop["db_url"], "--out", str(outcomes), env=env))
        with outcomes.open(encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        assert rows and {r["async_eligible"] for r in rows} <= {"0", "1"}
        assert all(r["final_state"] in ("SUCCEEDED", "FAILED", "DEAD") for r in rows)
        cli(
            "train",
            "--data",
            str(loop["history"]),
            "--data",
            str(outcomes),
            "--out",
            str(registry),
            "--no-eval",
            env=env,
        )
        second = next(v for v in list_versions(registry) if v.version != loop["first"])
        assert [s["path"] for s in second.card["training_data"]["sources"]] == [str(loop["history"]), str(outcomes)]
        assert active_version(registry) == loop["first"]

        # 3. activate it (CLI) and hot-reload while requests keep coming: none may fail
        failures: list[str] = []
        versions: set[str] = set()
        stop = threading.Event()

        def load() -> None:
            with httpx.Client(base_url=loop["url"], timeout=10.0, trust_env=False) as own:
                body = {"insurer": loop["known"], "operation": "pay", "error_message": "系统繁忙，请稍后再试"}
                while not stop.is_set():
                    try:
                        answer = own.post("/classify", json=body)
                    except httpx.HTTPError as exc:
                        failures.append(repr(exc))
                        continue
                    if answer.status_code != 200:
                        failures.append(f"{answer.status_code} {answer.text[:200]}")
                    else:
                        versions.add(answer.json()["model_version"])

        threads = [threading.Thread(target=load) for _ in range(4)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(0.5)
            cli("models", "activate", second.version, "--model-dir", str(registry), env=env)
            reloaded = client.post("/admin/model/reload")
            assert reloaded.status_code == 200 and reloaded.json() == {"model_version": second.version}
            time.sleep(0.5)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
        assert failures == []
        assert versions == {loop["first"], second.version}
        assert client.get("/model").json()["version"] == second.version

        # 4. a new insurer with new codes: the drift report names it
        before = client.get("/admin/drift").json()
        assert "newco" not in before["insurers"]
        send(client, "newco", "N", 120)
        drift = client.get("/admin/drift", params={"refresh": "true"}).json()
        newco = drift["insurers"]["newco"]
        assert newco["in_training"] is False and newco["unseen_code_share"] == 1.0
        assert any(a["kind"] == "unseen_codes" and a["insurer"] == "newco" for a in drift["alerts"])
        assert drift["status"] == "drifting"
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"]["drift"]["status"] == "drifting"
        metrics = client.get("/metrics").text
        assert 'asyncgate_drift_unseen_code_share{insurer="newco"} 1.0' in metrics
        print(json.dumps({"outcome_rows": len(rows), "drift_alerts": drift["alerts"]}, ensure_ascii=False))
