"""Exploration and shadow scoring of first failures, through POST /process and the worker."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry

from model.records import Failure
from service.learning.drift import DriftMonitor, Familiarity
from service.learning.outcomes import decision_of, iter_first_failures, label_of
from service.learning.shadow import ShadowScorer
from service.learning.watch import ExplorationPolicy, FailureWatch
from service.scoring import ServingModel
from service.store import OrderStore, create_db_engine
from tests.service.conftest import SMALL_RETRY, Service, busy, failure, final, run_worker
from tests.service.learning_models import save_toy

#: The toy model is unsure about this one (p ≈ 0.08, under its threshold 0.17): explorable.
UNSURE = "invalid signature"
#: ... and sure about this one (p < 0.001): never explored.
SURE = "产品已停售 order P1234567890"
FAMILIAR = Familiarity(known_share=1.0, code_known=True, mostly_unseen=False)
UNFAMILIAR = Familiarity(known_share=1.0, code_known=False, mostly_unseen=False)


def verdict(model: ServingModel, message: str):
    return model.classify(Failure("acme", "underwrite", "E2001", message, 200, 30.0))


def test_policy_never_explores_async_unknown_or_confident_final(serving_model: ServingModel):
    policy = ExplorationPolicy(rate=1.0, min_probability=0.05, floor_probability=0.01)
    unsure, sure, busy_ = (verdict(serving_model, m) for m in (UNSURE, SURE, "系统繁忙，请稍后再试"))
    assert 0.05 <= unsure.probability < unsure.threshold and sure.probability < 0.01 and busy_.async_eligible
    assert policy.eligible(unsure, FAMILIAR, unknown=False)
    assert not policy.eligible(unsure, FAMILIAR, unknown=True)
    assert not policy.eligible(sure, UNFAMILIAR, unknown=False)  # confidently final, however unfamiliar
    assert not policy.eligible(busy_, UNFAMILIAR, unknown=False)
    assert not ExplorationPolicy(rate=0.0).eligible(unsure, UNFAMILIAR, unknown=False)
    between = ExplorationPolicy(rate=1.0, min_probability=0.5, floor_probability=0.01)
    assert not between.eligible(unsure, FAMILIAR, unknown=False)  # neither unsure enough nor unfamiliar
    assert between.eligible(unsure, UNFAMILIAR, unknown=False)


def test_rate_is_the_share_explored(serving_model: ServingModel):
    watch = FailureWatch(
        CollectorRegistry(),
        drift=DriftMonitor(),
        shadow=ShadowScorer(CollectorRegistry()),
        exploration=ExplorationPolicy(rate=0.25, min_probability=0.05),
    )
    failure_ = Failure("acme", "underwrite", "E2001", UNSURE, 200, 30.0)
    rng = random.Random(1)
    explored = sum(
        watch.first_failure(serving_model, failure_, verdict(serving_model, UNSURE), unknown=False, rng=rng).exploration
        for _ in range(2000)
    )
    assert 400 < explored < 600


def metric(svc: Service, name: str) -> float:
    for line in svc.client.get("/metrics").text.splitlines():
        if line.startswith(name):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_exploration_keeps_an_unsure_final_failure_async_and_it_gets_an_outcome(
    start_service: Callable[..., Service], serving_model: ServingModel
):
    svc = start_service(exploration_rate=1.0, **SMALL_RETRY)
    svc.insurer.script("X1", failure(UNSURE, code="E2001"))
    svc.insurer.script("X2", failure(SURE, code="E2001"))
    first = svc.process("X1").json()
    assert first["state"] == "ASYNC_PROCESSING" and first["next_action"] == "await_async"
    assert first["failure"]["async_eligible"] is False and first["failure"]["exploration"] is True
    assert svc.process("X2").json()["state"] == "FAILED"  # confidently final: never explored
    assert metric(svc, 'asyncgate_exploration_total{insurer="acme"}') == 1.0
    svc.wait_until_due("X1")
    run_worker(svc, serving_model)  # the retry fails the same way: now FAILED, no second exploration
    order = svc.order("X1")
    assert order["state"] == "FAILED"
    assert [a["exploration"] for a in order["attempts"]] == [True, False]
    engine = create_db_engine(svc.settings.resolved_db_url)
    try:
        (row,) = [r for r in iter_first_failures(OrderStore(engine)) if r.order_id == "X1"]
    finally:
        engine.dispose()
    assert (decision_of(row), label_of(row)) == ("exploration", 0)  # "final" was right this time


def test_without_exploration_the_same_failure_is_final(start_service: Callable[..., Service]):
    svc = start_service()
    svc.insurer.script("X1", failure(UNSURE, code="E2001"))
    body = svc.process("X1").json()
    assert body["state"] == "FAILED" and body["failure"]["exploration"] is False


def test_shadow_model_scores_and_disagreements_are_counted(start_service: Callable[..., Service], tmp_path: Path):
    contrarian = save_toy(tmp_path / "registry", "contrarian", contrarian=True)
    svc = start_service(shadow_model=str(contrarian))
    svc.insurer.script("S1", busy())
    svc.insurer.script("S2", final())
    assert svc.process("S1").json()["state"] == "ASYNC_PROCESSING"  # the shadow never decides
    assert svc.process("S2").json()["state"] == "FAILED"
    assert metric(svc, "asyncgate_shadow_scored_total") == 2.0
    text = svc.client.get("/metrics").text
    assert 'direction="async_to_final"' in text and 'direction="final_to_async"' in text
    shadow = svc.client.get("/admin/shadow").json()
    assert shadow["shadow"] == "contrarian"
    assert {d["direction"] for d in shadow["recent_disagreements"]} == {"async_to_final", "final_to_async"}


def test_a_broken_shadow_model_is_dropped_not_fatal(start_service: Callable[..., Service], tmp_path: Path):
    svc = start_service(shadow_model=str(tmp_path / "nothing-here"))
    svc.insurer.script("S1", busy())
    assert svc.process("S1").json()["state"] == "ASYNC_PROCESSING"
    assert svc.client.get("/admin/shadow").json()["shadow"] is None


def test_readyz_has_a_drift_entry_that_never_fails_readiness(start_service: Callable[..., Service]):
    svc = start_service(drift_min_failures=1, drift_max_unseen_message_share=0.0)
    svc.insurer.script("R1", failure("Zeitüberschreitung ÄÖÜ ßß", code="Q"))
    svc.process("R1")
    ready = svc.client.get("/readyz")
    assert ready.status_code == 200
    drift = ready.json()["checks"]["drift"]
    assert drift["ok"] is True and drift["status"] == "drifting"
    assert any("unseen_ngrams" in alert for alert in drift["alerts"])
    report = svc.client.get("/admin/drift", params={"refresh": "true"}).json()
    assert report["failures"] == 1 and report["calibration"]["outcomes"] == 0
