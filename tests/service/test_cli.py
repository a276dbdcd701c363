"""The `asyncgate` commands of the README's "Command line" table that no other test drives: generate-data,
train (--activate over an active version), evaluate --json, models list / activate / rollback, serve's
defaults, and a short demo. (`rules ...` is in test_cli_rules.py, `models report` and `export-outcomes`
in test_outcomes.py, serve's API-key checks in test_auth.py, worker and serve over real HTTP in
tests/integration.)

Training runs on small generated files (1,000-1,500 rows, under a second each, no held-out evaluation)
into a registry made once per module and copied for every test that changes it.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from model.registry import ACTIVE_FILE, active_version, list_versions
from service.cli import app as cli
from service.config import Settings
from tests.integration.conftest import child_env, free_port, start_process

#: The columns of docs/contract.md §5, in its order.
CONTRACT_COLUMNS = [
    "insurer",
    "operation",
    "error_code",
    "error_message",
    "http_status",
    "latency_ms",
    "async_eligible",
]


def run(*args: str, code: int = 0, env: dict[str, str] | None = None) -> str:
    result = CliRunner().invoke(cli, list(args), env=env)
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    return result.output


def generate(path: Path, rows: int, seed: int) -> Path:
    run("generate-data", "--rows", str(rows), "--seed", str(seed), "--out", str(path))
    return path


# -- generate-data --------------------------------------------------------------------------------


def test_generate_data_is_deterministic_for_a_seed_with_the_contract_columns(tmp_path: Path) -> None:
    output = run("generate-data", "--rows", "300", "--seed", "4", "--out", str(tmp_path / "a.csv"))
    assert "wrote 300 rows" in output and str(tmp_path / "a.csv") in output
    generate(tmp_path / "nested" / "b.csv", 300, 4)  # the folder is made
    generate(tmp_path / "c.csv", 300, 5)
    a = (tmp_path / "a.csv").read_bytes()
    assert a == (tmp_path / "nested" / "b.csv").read_bytes(), "same seed, same bytes"
    assert a != (tmp_path / "c.csv").read_bytes(), "another seed, another file"
    with (tmp_path / "a.csv").open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert reader.fieldnames is not None
    assert reader.fieldnames[: len(CONTRACT_COLUMNS)] == CONTRACT_COLUMNS
    assert len(rows) == 300
    assert {r["async_eligible"] for r in rows} == {"0", "1"}
    assert all(r["http_status"] == "" or 100 <= int(r["http_status"]) <= 599 for r in rows)
    assert all(r["latency_ms"] == "" or float(r["latency_ms"]) >= 0 for r in rows)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--rows", "0", "--seed", "1"], "--rows"),
        (["--rows", "-5", "--seed", "1"], "--rows"),
        (["--rows", "many", "--seed", "1"], "--rows"),
        (["--rows", "10", "--seed", "x"], "--seed"),
        (["--rows", "10"], "--seed"),
        (["--seed", "1"], "--rows"),
    ],
)
def test_generate_data_refuses_bad_arguments_naming_them(tmp_path: Path, args: list[str], named: str) -> None:
    out = tmp_path / "never.csv"
    output = run("generate-data", *args, "--out", str(out), code=2)
    assert named in output
    assert not out.exists()


def test_generate_data_needs_out() -> None:
    assert "--out" in run("generate-data", "--rows", "10", "--seed", "1", code=2)


# -- train and the registry -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("cli-data")
    return {
        name: generate(folder / f"{name}.csv", rows, seed)
        for name, rows, seed in [
            ("first", 1000, 11),
            ("second", 1200, 12),
            ("third", 1500, 13),
            ("labelled", 600, 14),
        ]
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, datasets: dict[str, Path]) -> dict[str, Any]:
    """A registry trained through the CLI: `first` (active: the registry had none), then `second`
    (without --activate: stays inactive). Tests copy it before changing it."""
    registry = tmp_path_factory.mktemp("cli-registry") / "models"
    first_out = run("train", "--data", str(datasets["first"]), "--out", str(registry), "--no-eval")
    first = active_version(registry)
    assert first is not None and f"version {first}" in first_out and "(active," in first_out
    second_out = run("train", "--data", str(datasets["second"]), "--out", str(registry), "--no-eval")
    second = next(v.version for v in list_versions(registry) if v.version != first)
    assert f"version {second}" in second_out and "(not active," in second_out
    return {"registry": registry, "first": first, "second": second}


@pytest.fixture
def registry(trained: dict[str, Any], tmp_path: Path) -> Path:
    copy = tmp_path / "models"
    shutil.copytree(trained["registry"], copy)
    return copy


def test_train_without_activate_leaves_the_active_version(trained: dict[str, Any]) -> None:
    assert active_version(trained["registry"]) == trained["first"]
    assert [v.version for v in list_versions(trained["registry"])] == sorted([trained["first"], trained["second"]])


def test_train_with_activate_over_an_active_version_makes_the_new_one_active(
    registry: Path, trained: dict[str, Any], datasets: dict[str, Path]
) -> None:
    output = run("train", "--data", str(datasets["third"]), "--out", str(registry), "--activate")
    new = active_version(registry)
    assert new not in (None, trained["first"], trained["second"])
    assert f"version {new}" in output and "(active," in output
    assert "holdout" in output, "without --no-eval the held-out figures are printed"
    run("models", "rollback", "--model-dir", str(registry))
    assert active_version(registry) == trained["first"], "the version it replaced is the one to go back to"


def test_train_refuses_a_bad_csv_naming_the_column(registry: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("insurer,operation,error_message\nacme,pay,timeout\n", encoding="utf-8")
    before = sorted(p.name for p in registry.iterdir())
    output = run("train", "--data", str(bad), "--out", str(registry), code=2)
    assert "async_eligible" in output
    assert sorted(p.name for p in registry.iterdir()) == before, "nothing written"


def test_models_list_marks_the_active_version(registry: Path, trained: dict[str, Any]) -> None:
    lines = run("models", "list", "--model-dir", str(registry)).splitlines()
    assert len(lines) == 2
    marked = {line[2:].split()[0]: line.startswith("*") for line in lines}
    assert marked == {trained["first"]: True, trained["second"]: False}
    assert all("rows=" in line and "async_f1=" in line for line in lines)
    assert "no versions in" in run("models", "list", "--model-dir", str(registry.parent / "empty"))


def test_models_activate_then_rollback(registry: Path, trained: dict[str, Any]) -> None:
    first, second = trained["first"], trained["second"]
    assert run("models", "activate", second, "--model-dir", str(registry)).strip() == f"active: {second}"
    assert (registry / ACTIVE_FILE).read_text(encoding="utf-8").strip() == second
    listed = run("models", "list", "--model-dir", str(registry))
    assert next(line for line in listed.splitlines() if line.startswith("*"))[2:].startswith(second)
    assert run("models", "rollback", "--model-dir", str(registry)).strip() == f"active: {first}"
    assert active_version(registry) == first
    output = run("models", "rollback", "--model-dir", str(registry), code=2)
    assert "no previously active version" in output
    assert active_version(registry) == first, "a refused rollback changes nothing"


def test_models_activate_an_unknown_version_fails_naming_it(registry: Path, trained: dict[str, Any]) -> None:
    output = run("models", "activate", "2020-01-01T00-00-00-nosuch", "--model-dir", str(registry), code=2)
    assert "2020-01-01T00-00-00-nosuch" in output
    assert active_version(registry) == trained["first"]


def test_models_commands_default_to_the_state_folder(
    registry: Path, trained: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without --model-dir the registry is <ASYNCGATE_STATE_DIR>/models (docs/contract.md §6)."""
    state = tmp_path / "state"
    state.mkdir()
    shutil.move(str(registry), state / "models")
    monkeypatch.setenv("ASYNCGATE_STATE_DIR", str(state))
    assert trained["first"] in run("models", "list")
    run("models", "activate", trained["second"])
    assert active_version(state / "models") == trained["second"]


# -- evaluate -------------------------------------------------------------------------------------


def test_evaluate_prints_and_writes_the_metrics_json(
    trained: dict[str, Any], datasets: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "reports" / "eval.json"
    output = run(
        "evaluate", "--model-dir", str(trained["registry"]), "--data", str(datasets["labelled"]), "--json", str(out)
    )
    assert f"model {trained['first']} on {datasets['labelled']} (600 rows)" in output
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["model_version"] == trained["first"], "the registry's active version"
    scored = report["data"]
    assert set(scored) >= {"model", "status_rule", "keyword_rule"}, "the model next to the rule baselines"
    model = scored["model"]
    assert model["rows"] == 600
    assert sum(model["confusion"].values()) == 600
    assert 0.0 <= model["async"]["f1"] <= 1.0 and 0.0 <= model["ece"] <= 1.0
    assert 0.0 < model["threshold"] < 1.0


def test_evaluate_takes_an_artifact_folder_and_prints_without_json(
    trained: dict[str, Any], datasets: dict[str, Path], tmp_path: Path
) -> None:
    artifact = trained["registry"] / trained["second"]
    output = run("evaluate", "--model-dir", str(artifact), "--data", str(datasets["labelled"]))
    assert f"model {trained['second']}" in output
    assert list(tmp_path.iterdir()) == []


def test_evaluate_refuses_a_missing_model_or_bad_data(
    trained: dict[str, Any], datasets: dict[str, Path], tmp_path: Path
) -> None:
    empty = tmp_path / "no-models"
    empty.mkdir()
    assert str(empty) in run("evaluate", "--model-dir", str(empty), "--data", str(datasets["labelled"]), code=2)
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "insurer,operation,error_code,error_message,http_status,latency_ms,async_eligible\n"
        "acme,pay,,timeout,abc,1.0,1\n",
        encoding="utf-8",
    )
    output = run("evaluate", "--model-dir", str(trained["registry"]), "--data", str(bad), code=2)
    assert "http_status" in output


# -- serve's defaults -----------------------------------------------------------------------------


def test_serve_defaults_resolve_to_loopback_8000_and_the_local_state_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without flags or variables: 127.0.0.1:8000, SQLite under ./.asyncgate, the registry beside it, and
    the default model made (or found) before uvicorn starts. uvicorn is replaced: nothing binds."""
    import uvicorn

    import service.app
    import service.cli

    monkeypatch.chdir(tmp_path)
    order: list[str] = []
    seen: dict[str, Any] = {}

    def ensure(settings: Settings) -> None:
        order.append("model")
        seen["ensured"] = settings

    def create(settings: Settings) -> str:
        seen["app"] = settings
        return "the app"

    def fake_run(app: Any, **kw: Any) -> None:
        order.append("uvicorn")
        seen["uvicorn"] = (app, kw)

    monkeypatch.setattr(service.cli, "ensure_default_model", ensure)
    monkeypatch.setattr(service.app, "create_app", create)
    monkeypatch.setattr(uvicorn, "run", fake_run)
    monkeypatch.setattr("service.logs.configure_logging", lambda level: None)
    run("serve")
    assert order == ["model", "uvicorn"]
    app, options = seen["uvicorn"]
    assert app == "the app"
    assert (options["host"], options["port"]) == ("127.0.0.1", 8000)
    settings: Settings = seen["app"]
    assert settings is seen["ensured"]
    assert settings.resolved_db_url == "sqlite:///.asyncgate/asyncgate.db"
    assert settings.resolved_model_dir == Path(".asyncgate/models")
    assert settings.resolved_insurers_file is None, "no ./insurers.toml here"
    (tmp_path / "insurers.toml").write_text("", encoding="utf-8")
    assert settings.resolved_insurers_file == Path("insurers.toml"), "read when present"


def test_the_default_model_is_trained_once_when_the_registry_is_empty(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from service.cli import ensure_default_model

    monkeypatch.setenv("ASYNCGATE_DEFAULT_TRAIN_ROWS", "1000")
    settings = Settings(state_dir=tmp_path / "state")
    ensure_default_model(settings)
    versions = list_versions(tmp_path / "state" / "models")
    assert len(versions) == 1 and versions[0].active
    assert versions[0].card["training_data"]["rows"] == 1000
    assert (tmp_path / "state" / "data" / "default-1000-7.csv").is_file(), "the generated data is kept"
    ensure_default_model(settings)
    assert list_versions(tmp_path / "state" / "models") == versions, "found, not trained again"


@pytest.mark.integration
@pytest.mark.slow
def test_asyncgate_serve_from_an_empty_folder_comes_up_ready(tmp_path: Path) -> None:
    """The installed console script, defaults except the port, in an empty working folder: it trains
    the default model (small: ASYNCGATE_DEFAULT_TRAIN_ROWS) under ./.asyncgate and answers /readyz."""
    script = Path(sys.executable).with_name("asyncgate")
    assert script.is_file(), f"no console script beside {sys.executable}"
    work = tmp_path / "empty"
    work.mkdir()
    port = free_port()
    env = child_env({"ASYNCGATE_DEFAULT_TRAIN_ROWS": "1000"})
    argv = [str(script), "serve", "--port", str(port)]
    log = tmp_path / "serve.log"
    server = start_process(argv, port=port, log_path=log, ready_path="/readyz", env=env, timeout_s=180, cwd=work)
    try:
        ready = httpx.get(f"{server.url}/readyz", timeout=10, trust_env=False)
        assert ready.status_code == 200, ready.text
        model = httpx.get(f"{server.url}/model", timeout=10, trust_env=False).json()
    finally:
        server.stop()
    state = work / ".asyncgate"
    assert (state / "asyncgate.db").is_file(), "SQLite under the local state folder"
    assert active_version(state / "models") == model["version"], "the default model, trained on first use"
    assert model["training_data"]["rows"] == 1000


# -- demo -----------------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.slow
def test_demo_runs_the_loop_and_reports_no_double_completion(trained: dict[str, Any], tmp_path: Path) -> None:
    """`asyncgate demo` with few orders and an existing registry (no default-model training): it starts
    the simulator, the service and the worker, settles every order and exits 0."""
    env = child_env({"TMPDIR": str(tmp_path)})  # the demo's state folder (tempfile.mkdtemp) lands here
    argv = [sys.executable, "-m", "service", "demo", "--orders", "12", "--scenario", "flaky"]
    argv += ["--model-dir", str(trained["registry"]), "--timeout-s", "90", "--seed", "3"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert "asyncgate demo: 12 orders, scenario flaky" in done.stdout
    assert "orders completed twice: 0" in done.stdout
    rows = re.findall(r"^\W*(SUCCEEDED|FAILED|ASYNC_PROCESSING|DEAD)\W+(\d+)\W+(\d+)\W*$", done.stdout, flags=re.M)
    table = {state: (int(first), int(end)) for state, first, end in rows}
    assert set(table) == {"SUCCEEDED", "FAILED", "ASYNC_PROCESSING", "DEAD"}, done.stdout
    assert sum(first for first, _ in table.values()) == 12
    assert sum(end for _, end in table.values()) == 12
    assert table["ASYNC_PROCESSING"][1] == 0, "every async order settled"
    (work,) = [p for p in tmp_path.iterdir() if p.name.startswith("asyncgate-demo-")]
    assert (work / "demo.db").is_file()
