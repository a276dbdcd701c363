"""DriftMonitor: unseen n-grams and codes, async rate against training, calibration, window, alerts."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from model.records import Failure
from service.learning.drift import DriftCollector, DriftMonitor, DriftThresholds
from service.scoring import ServingModel, Verdict
from tests.service.learning_models import load_toy

THRESHOLDS = DriftThresholds(window_s=120.0, min_failures=10, max_async_rate_delta=0.3, min_outcomes=5)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> ServingModel:
    return load_toy(tmp_path_factory.mktemp("registry"), "v1")


def observe(monitor: DriftMonitor, model: ServingModel, n: int, **fields: object) -> None:
    values: dict[str, object] = {
        "insurer": "acme",
        "operation": "underwrite",
        "error_code": "E1001",
        "error_message": "系统繁忙，请稍后再试 order P1234567890",
        "http_status": 503,
        "latency_ms": 20.0,
    }
    values.update(fields)
    failure = Failure(**values)  # type: ignore[arg-type]
    for _ in range(n):
        monitor.observe(model, failure, model.classify(failure))


def kinds(report: dict) -> set[tuple[str, str]]:
    return {(a["kind"], a["insurer"]) for a in report["alerts"]}


def test_familiar_failures_raise_nothing(model: ServingModel):
    monitor = DriftMonitor(THRESHOLDS, clock=Clock())
    observe(monitor, model, 7)  # async-eligible, as about a third of acme's training rows
    observe(monitor, model, 13, error_code="SYSTEMERROR", error_message="余额不足 order P1234567890", http_status=200)
    report = monitor.report(model)
    assert report["status"] == "ok" and report["alerts"] == []
    assert report["failures"] == 20
    assert report["insurers"]["acme"]["async_rate"] == 0.35
    assert report["insurers"]["acme"]["unseen_code_share"] == 0.0
    assert report["insurers"]["acme"]["in_training"] is True
    assert report["training_profile"] is True


def test_a_new_insurer_with_new_codes_raises_unseen_codes(model: ServingModel, caplog: pytest.LogCaptureFixture):
    monitor = DriftMonitor(THRESHOLDS, clock=Clock())
    observe(monitor, model, 5, insurer="newco", error_code="NX-1")
    assert kinds(monitor.report(model)) == set()  # not enough failures yet
    with caplog.at_level(logging.WARNING, logger="asyncgate.drift"):
        observe(monitor, model, 10, insurer="newco", error_code="NX-2")
        report = monitor.report(model)
        monitor.report(model)  # the same alert is logged once
    entry = report["insurers"]["newco"]
    assert entry["in_training"] is False
    assert entry["unseen_code_share"] == 1.0
    assert entry["unseen_codes"] == {"NX-2": 10, "NX-1": 5}
    assert ("unseen_codes", "newco") in kinds(report)
    assert report["status"] == "drifting"
    assert len([r for r in caplog.records if "unseen_codes for newco" in r.getMessage()]) == 1


def test_mostly_unseen_messages_raise_unseen_ngrams(model: ServingModel):
    monitor = DriftMonitor(THRESHOLDS, clock=Clock())
    observe(monitor, model, 12, error_message="Zeitüberschreitung der Verbindung ÄÖÜ ßß")
    report = monitor.report(model)
    assert report["unseen_ngrams"]["share"] == 1.0
    assert ("unseen_ngrams", "") in kinds(report)


def test_async_rate_against_training(model: ServingModel):
    monitor = DriftMonitor(THRESHOLDS, clock=Clock())
    observe(monitor, model, 12)  # all async-eligible; acme's training rate is about 0.35
    report = monitor.report(model)
    assert report["insurers"]["acme"]["async_rate"] == 1.0
    assert report["insurers"]["acme"]["training_async_rate"] == pytest.approx(0.35, abs=0.1)
    assert ("async_rate", "acme") in kinds(report)


def test_old_failures_leave_the_window_and_a_new_model_restarts_the_counts(model: ServingModel, tmp_path: Path):
    clock = Clock()
    monitor = DriftMonitor(THRESHOLDS, clock=clock)
    observe(monitor, model, 15, insurer="newco", error_code="NX")
    clock.now += 60
    observe(monitor, model, 3)
    assert monitor.report(model)["failures"] == 18
    clock.now += 70  # the first 15 are now older than the 120 s window
    report = monitor.report(model)
    assert report["failures"] == 3
    assert "newco" not in report["insurers"]
    other = load_toy(tmp_path, "v2")
    observe(monitor, other, 2)
    assert monitor.report(other)["failures"] == 2


def test_calibration_alert_needs_enough_outcomes(model: ServingModel):
    monitor = DriftMonitor(THRESHOLDS, clock=Clock())
    monitor.calibration = {"outcomes": 4, "ece": 0.5, "bins": []}
    assert kinds(monitor.report(model)) == set()
    monitor.calibration = {"outcomes": 40, "ece": 0.5, "bins": []}
    assert kinds(monitor.report(model)) == {("calibration", "")}


def test_the_collector_exports_gauges(model: ServingModel):
    monitor = DriftMonitor(THRESHOLDS, clock=Clock())
    observe(monitor, model, 12, insurer="newco", error_code="NX")
    monitor.calibration = {"outcomes": 40, "ece": 0.05, "bins": []}
    registry = CollectorRegistry()
    registry.register(DriftCollector(lambda: monitor.report(model)))
    text = generate_latest(registry).decode()
    assert 'asyncgate_drift_unseen_code_share{insurer="newco"} 1.0' in text
    assert 'asyncgate_drift_alerts{kind="unseen_codes"} 1.0' in text
    assert "asyncgate_drift_calibration_error 0.05" in text
    assert "asyncgate_drift_failures 12.0" in text


def test_verdict_exploration_flag_is_not_in_the_api_shape(model: ServingModel):
    verdict: Verdict = model.classify(Failure("acme", "pay", None, "x", None, None))
    assert "exploration" not in verdict.as_dict()


def test_the_async_rate_counts_the_models_decision_not_a_rules(model: ServingModel):
    from service.rules import RuleBook, RuleSet
    from service.store import RuleRecord

    pin_final = RuleRecord(1, None, None, "E1001", None, "final", None, "ops", dt.datetime.now(dt.UTC), "t")
    book = RuleBook(RuleSet([pin_final], 1))
    monitor = DriftMonitor(THRESHOLDS, clock=Clock())
    failure = Failure("acme", "underwrite", "E1001", "系统繁忙，请稍后再试 order P1234567890", 503, 20.0)
    for _ in range(7):
        pinned = book.classify(model, failure)
        assert pinned.decided_by == "rule" and not pinned.async_eligible
        monitor.observe(model, failure, pinned)
    observe(monitor, model, 13, error_code="SYSTEMERROR", error_message="余额不足 order P1234567890", http_status=200)
    assert monitor.report(model)["insurers"]["acme"]["async_rate"] == 0.35, "as if no rule pinned the 7"
