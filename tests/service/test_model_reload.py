"""Hot reload: POST /admin/model/reload and the ACTIVE file watch swap the model, or keep the old one (409)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from model.artifact import PROTOCOL, ArtifactError
from model.registry import activate
from service.app import create_app
from service.config import Settings
from service.learning.reload import ModelRejected, load_checked
from tests.service.conftest import MockInsurer, TestClient, registry
from tests.service.learning_models import save_toy


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry with v1 (active) and v2, both good."""
    root = tmp_path_factory.mktemp("registry")
    save_toy(root, "v1")
    save_toy(root, "v2")
    activate(root, "v1")
    return root


def copy_registry(source: Path, target: Path) -> Path:
    import shutil

    shutil.copytree(source, target)
    return target


@pytest.fixture
def start(tmp_path: Path) -> Iterator:
    clients: list[TestClient] = []
    closers = []

    def run(model_dir: Path, **overrides: object) -> TestClient:
        settings = Settings(
            state_dir=tmp_path / "state", db_url=f"sqlite:///{tmp_path}/state/a.db", model_dir=model_dir, **overrides
        )
        http = MockInsurer().http_client()
        closers.append(http)
        client = TestClient(create_app(settings, insurers=registry(), http_client=http))
        client.__enter__()
        clients.append(client)
        return client

    yield run
    for client in clients:
        client.__exit__(None, None, None)
    for http in closers:
        anyio.run(http.aclose)


def serving(client: TestClient) -> str:
    version: str = client.get("/model").json()["version"]
    return version


def test_reload_swaps_to_the_active_version(models: Path, tmp_path: Path, start):
    root = copy_registry(models, tmp_path / "r")
    client = start(root, model_watch_s=0)
    assert serving(client) == "v1"
    activate(root, "v2")
    answer = client.post("/admin/model/reload")
    assert answer.status_code == 200 and answer.json() == {"model_version": "v2"}
    assert serving(client) == "v2"
    assert (
        client.post("/classify", json={"insurer": "acme", "operation": "pay", "error_message": "x"}).json()[
            "model_version"
        ]
        == "v2"
    )
    assert 'asyncgate_model_info{version="v2"} 1.0' in client.get("/metrics").text


def test_a_tampered_version_is_refused_and_the_old_model_keeps_serving(models: Path, tmp_path: Path, start):
    root = copy_registry(models, tmp_path / "r")
    client = start(root, model_watch_s=0)
    model_file = root / "v2" / "model.skops"
    model_file.write_bytes(model_file.read_bytes()[:-10])
    activate(root, "v2")
    answer = client.post("/admin/model/reload")
    assert answer.status_code == 409
    assert "SHA-256" in answer.json()["detail"] and "old model keeps serving" in answer.json()["detail"]
    assert serving(client) == "v1"
    (root / "ACTIVE").write_text("v9\n")  # a version that does not exist
    answer = client.post("/admin/model/reload")
    assert answer.status_code == 409 and "v9" in answer.json()["detail"]
    assert serving(client) == "v1"
    assert 'asyncgate_model_reloads_total{result="rejected"} 2.0' in client.get("/metrics").text


def test_the_watch_reloads_when_active_changes(models: Path, tmp_path: Path, start):
    root = copy_registry(models, tmp_path / "r")
    client = start(root, model_watch_s=0.05)
    activate(root, "v2")
    deadline = time.monotonic() + 10
    while serving(client) != "v2" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert serving(client) == "v2"


def test_reload_under_concurrent_requests_drops_none(models: Path, tmp_path: Path, start):
    root = copy_registry(models, tmp_path / "r")
    client = start(root, model_watch_s=0)
    statuses: list[int] = []
    versions: set[str] = set()
    stop = threading.Event()

    def classify() -> None:
        while not stop.is_set():
            r = client.post("/classify", json={"insurer": "acme", "operation": "pay", "error_message": "系统繁忙"})
            statuses.append(r.status_code)
            versions.add(r.json().get("model_version", "?"))

    threads = [threading.Thread(target=classify) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        for version in ("v2", "v1", "v2"):
            activate(root, version)
            assert client.post("/admin/model/reload").status_code == 200
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert statuses and set(statuses) == {200}
    assert versions <= {"v1", "v2"}


def test_load_checked_refuses_what_does_not_load(tmp_path: Path):
    with pytest.raises(ArtifactError, match=r"no model_card\.json"):
        load_checked(tmp_path)
    (tmp_path / "model_card.json").write_text(f'{{"protocol": {PROTOCOL}, "libraries": {{"scikit-learn": "0.1"}}}}')
    with pytest.raises(ArtifactError, match="scikit-learn"):
        load_checked(tmp_path)


def test_model_rejected_names_the_reason():
    assert "old model keeps serving: broken" in str(ModelRejected(Path("/m"), "broken"))
