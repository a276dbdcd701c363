"""Outcome labels from real order histories (SQLite and PostgreSQL), the CSV export, the per-version
report and the CLI commands that run them."""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from service.cli import app as cli
from service.learning.outcomes import COLUMNS, export_outcomes, iter_first_failures, label_of
from service.learning.report import calibration, decision_quality, model_report
from service.scoring import ServingModel
from service.store import OrderStore, create_db_engine
from tests.service.conftest import (
    BUSY_MESSAGE,
    MODEL_VERSION,
    SMALL_RETRY,
    Service,
    busy,
    failure,
    final,
    raises,
    run_worker,
    success,
)
from tests.service.learning_models import save_toy

ID_NUMBER = "110101199003071234"


def drive(svc: Service, model: ServingModel) -> None:
    """Orders with every kind of history; E is left pending and F never fails."""
    svc.insurer.script("A", failure(f"{BUSY_MESSAGE} 证件号 {ID_NUMBER}", code="E1001", status=503), success())
    svc.insurer.script("B", final())
    svc.insurer.script("C", busy(), final())
    svc.insurer.script("D", busy())
    svc.insurer.script("G", raises(httpx.ReadTimeout, completes=True))
    for order_id in "ABCDG":
        svc.process(order_id)
    for _ in range(2):  # D is DEAD after its third call
        svc.wait_until_due("D")
        run_worker(svc, model)
    svc.insurer.script("E", busy())
    svc.process("E")
    svc.process("F")


@pytest.fixture
def driven(start_service: Callable[..., Service], db_url: str, serving_model: ServingModel) -> Service:
    svc = start_service(db_url=db_url, **SMALL_RETRY)
    drive(svc, serving_model)
    return svc


@pytest.fixture
def open_store() -> Iterator[Callable[[Service], OrderStore]]:
    engines: list[sa.Engine] = []

    def open_(svc: Service) -> OrderStore:
        engines.append(create_db_engine(svc.settings.resolved_db_url))
        return OrderStore(engines[-1])

    yield open_
    for engine in engines:
        engine.dispose()


def test_labels_follow_what_reexecution_showed(driven: Service, open_store):
    rows = {r.order_id: r for r in iter_first_failures(open_store(driven), page=2)}  # pages of 2
    assert set(rows) == set("ABCDEG")  # F never failed
    labels = {order_id: label_of(row) for order_id, row in rows.items()}
    assert labels == {"A": 1, "B": None, "C": 0, "D": 0, "E": None, "G": 1}
    assert rows["D"].later_calls == 2 and rows["B"].later_calls == 0
    assert rows["G"].attempt.outcome == "unknown" and rows["G"].later_calls == 0 and rows["G"].later_attempts == 1
    assert rows["A"].attempt.model_version == MODEL_VERSION


def test_since_filters_on_the_time_of_the_first_failure(driven: Service, open_store):
    store = open_store(driven)
    assert list(iter_first_failures(store, since=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1))) == []
    assert len(list(iter_first_failures(store, since=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)))) == 6


def test_export_writes_labelled_masked_rows(driven: Service, open_store, tmp_path: Path):
    out = tmp_path / "out" / "outcomes.csv"
    summary = export_outcomes(open_store(driven), out)
    assert (summary.first_failures, summary.rows, summary.positives, summary.pending, summary.no_outcome) == (
        6,
        4,
        2,
        1,
        1,
    )
    with out.open(encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == COLUMNS
        rows = {r["order_id"]: r for r in reader}
    assert {k: r["async_eligible"] for k, r in rows.items()} == {"A": "1", "C": "0", "D": "0", "G": "1"}
    assert ID_NUMBER not in out.read_text(encoding="utf-8")
    assert "<ID_NUMBER>" in rows["A"]["error_message"]
    assert rows["A"]["category"] == "insurer_busy"  # agrees with label 1: kept
    assert rows["C"]["category"] == ""  # an async-side category on a 0 label would teach the head wrong
    assert rows["G"]["decision"] == "unknown_outcome" and rows["A"]["decision"] == "async"
    assert rows["D"]["final_state"] == "DEAD" and rows["D"]["later_calls"] == "2"


def test_report_compares_live_decisions_and_outcomes(driven: Service, open_store, serving_model: ServingModel):
    rows = list(iter_first_failures(open_store(driven)))
    report = model_report(rows, {"again": serving_model})
    entry = report["versions"][MODEL_VERSION]
    assert entry["first_failures"] == 6
    assert entry["outcomes"] == {"1": 2, "0": 2, "pending": 1, "no_outcome": 1}
    assert entry["decisions"] == {"async": 4, "final": 1, "unknown_outcome": 1}
    assert entry["async_later_succeeded"] == pytest.approx(1 / 3, abs=1e-3)  # A of A, C, D
    candidate = report["candidates"]["again"]
    assert candidate["rows"] == 4
    assert candidate["agreement_with_live"] == 1.0  # the same model decides the same


def test_calibration_and_decision_quality_arithmetic():
    cal = calibration([(0.05, 0), (0.05, 0), (0.95, 1), (0.95, 0)])
    assert cal["outcomes"] == 4
    assert cal["ece"] == pytest.approx(0.5 * 0.05 + 0.5 * 0.45)
    assert [b["n"] for b in cal["bins"]] == [2, 2]
    quality = decision_quality([(True, 1), (True, 0), (False, 1), (False, 0)], cost_ratio=5.0)
    assert quality == {"rows": 4, "accuracy": 0.5, "recall": 0.5, "precision": 0.5, "cost_per_row": 1.5}
    assert calibration([])["ece"] is None


def test_cli_export_outcomes_and_models_report(start_service: Callable[..., Service], serving_model, tmp_path: Path):
    svc = start_service(**SMALL_RETRY)
    drive(svc, serving_model)
    registry = tmp_path / "registry"
    save_toy(registry, "cand-1")
    runner = CliRunner()
    db = svc.settings.resolved_db_url
    out = tmp_path / "o.csv"
    result = runner.invoke(cli, ["export-outcomes", "--db-url", db, "--out", str(out), "--since", "2020-01-01"])
    assert result.exit_code == 0, result.output
    assert "wrote 4 labelled rows" in result.output
    report_json = tmp_path / "report.json"
    args = ["models", "report", "--db-url", db, "--model-dir", str(registry), "--candidate", "cand-1"]
    result = runner.invoke(cli, [*args, "--json", str(report_json)])
    assert result.exit_code == 0, result.output
    assert MODEL_VERSION in result.output and "cand-1" in result.output
    assert json.loads(report_json.read_text())["candidates"]["cand-1"]["rows"] == 4
    bad = runner.invoke(cli, ["export-outcomes", "--db-url", db, "--out", str(out), "--since", "yesterday"])
    assert bad.exit_code == 2 and "ISO-8601" in bad.output


def test_rule_decided_first_failures_are_labelled_with_their_source(
    start_service: Callable[..., Service], serving_model: ServingModel, tmp_path: Path
):
    svc = start_service(**SMALL_RETRY)

    def rule(**fields: object) -> int:
        response = svc.client.post("/admin/rules", json={"decision": "async", "reason": "ops"} | fields)
        assert response.status_code == 201, response.text
        rule_id: int = response.json()["rule_id"]
        return rule_id

    agrees = rule(error_code="E1001", category="insurer_busy")  # the model says async too
    flips = rule(message_contains="身份证")  # the model says final
    svc.insurer.script("RA", busy(), success())
    svc.insurer.script("RB", final(), success())
    svc.insurer.script("RC", failure(BUSY_MESSAGE, code="E7", status=503), success())
    for order_id in ("RA", "RB", "RC"):
        assert svc.process(order_id).json()["state"] == "ASYNC_PROCESSING"
        svc.wait_until_due(order_id)
    run_worker(svc, serving_model)
    out = tmp_path / "outcomes.csv"
    engine = create_db_engine(svc.settings.resolved_db_url)
    try:
        store = OrderStore(engine)
        export_outcomes(store, out)
        svc.app.state.rules.flush(store)
    finally:
        engine.dispose()
    with out.open(encoding="utf-8") as handle:
        rows = {r["order_id"]: r for r in csv.DictReader(handle)}
    assert {k: (r["label_source"], r["rule_id"], r["async_eligible"]) for k, r in rows.items()} == {
        "RA": ("rule", str(agrees), "1"),
        "RB": ("rule", str(flips), "1"),
        "RC": ("outcome", "", "1"),
    }
    report = svc.client.get("/admin/model/report").json()
    by_rule = {entry["rule_id"]: entry for entry in report["rules"]}
    assert (by_rule[agrees]["hits"], by_rule[agrees]["overrides"]) == (1, 0)
    assert (by_rule[flips]["hits"], by_rule[flips]["overrides"], by_rule[flips]["override_share"]) == (1, 1, 1.0)
    assert by_rule[flips]["outcomes"]["1"] == 1 and by_rule[flips]["later_succeeded"] == 1.0
    assert by_rule[flips]["match"] == {"message_contains": "身份证"}
