"""The simulator's behaviour: scripts, seeded scenarios and failures worded by the shared vocabulary."""

from __future__ import annotations

import statistics
from typing import Any

import pytest

from model.schema import CATEGORIES
from service.simulator.behaviour import (
    HANG_S,
    OUTAGE_UP_S,
    SCENARIOS,
    THROTTLE_RPS,
    Behaviour,
    Plan,
    Script,
    ScriptError,
    SimulatorConfigError,
    parse_script,
)
from synth.vocabulary import load_vocabulary


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def behaviour(scenario: str = "normal", seed: int = 0, **kwargs: Any) -> Behaviour:
    return Behaviour(scenario=scenario, seed=seed, style=kwargs.pop("style", None), **kwargs)


def plans(b: Behaviour, n: int) -> list[Plan]:
    return [b.plan() for _ in range(n)]


def test_parse_script() -> None:
    assert parse_script({"amount": 1}) is None
    script = parse_script({"sim": {"script": ["timeout", "success"], "delay_s": 2, "latency_ms": 250}})
    assert script == Script(("timeout", "success"), 2.0, 0.25)
    assert [script.step(n) for n in (1, 2, 3, 9)] == ["timeout", "success", "success", "success"]


@pytest.mark.parametrize(
    "sim",
    [
        "success",
        {"script": []},
        {"script": "success"},
        {"script": ["succes"]},
        {"script": [1]},
        {"script": ["success"], "delay_s": -1},
        {"script": ["success"], "delay_s": True},
        {"script": ["success"], "latency_ms": "5"},
    ],
)
def test_malformed_script_is_refused(sim: object) -> None:
    with pytest.raises(ScriptError):
        parse_script({"sim": sim})


def test_scripted_steps() -> None:
    b = behaviour()
    script = Script(("success", "timeout", "complete_then_timeout", "html_502", "html_504", "malformed", "reset"), 4.0)
    got = [b.scripted(script, n) for n in range(1, 8)]
    assert [p.action for p in got] == ["success", "hang", "complete_then_hang", "page", "page", "malformed", "reset"]
    assert (got[1].delay_s, got[2].delay_s) == (4.0, 4.0)
    assert (got[3].status, got[4].status) == (502, 504)
    assert "502 Bad Gateway" in got[3].body and "<html>" in got[3].body
    assert got[5].status == 200 and not got[5].body.rstrip().endswith("}")


@pytest.mark.parametrize("category", [c for c in CATEGORIES if c != "timeout"])  # "timeout" is the hang step
def test_every_category_step_is_a_vocabulary_failure(category: str) -> None:
    b = behaviour()
    plan = b.scripted(Script((category,), latency_s=0.0), 1)
    assert plan.label.startswith(f"{category}:")
    assert plan.delay_s == 0.0
    if plan.action == "failure":
        assert plan.error_message
        assert 200 <= plan.status < 600
        template = plan.label.split(":", 1)[1]
        assert template.startswith(f"{category}.") or "." in template
    else:  # a category that only happens at a proxy or on the wire
        assert plan.action in ("page", "hang", "reset")


@pytest.mark.parametrize("scenario", ["normal", "flaky", "new-codes"])
def test_same_seed_same_answers(scenario: str) -> None:
    first = plans(behaviour(scenario, seed=7), 300)
    assert first == plans(behaviour(scenario, seed=7), 300)
    assert first != plans(behaviour(scenario, seed=8), 300)


def test_reset_reseeds() -> None:
    b = behaviour("flaky", seed=3)
    first = plans(b, 50)
    b.reset()
    assert plans(b, 50) == first


@pytest.mark.parametrize(("scenario", "low", "high"), [("normal", 0.82, 0.92), ("flaky", 0.49, 0.63)])
def test_success_rates(scenario: str, low: float, high: float) -> None:
    got = plans(behaviour(scenario, seed=1), 3000)
    rate = sum(p.action == "success" for p in got) / len(got)
    assert low <= rate <= high
    failures = [p for p in got if p.action == "failure"]
    assert len({p.label.split(":")[0] for p in failures}) >= 8  # transient and business categories


def test_normal_latency_is_around_80_ms_and_slow_has_a_long_tail() -> None:
    normal = [p.delay_s for p in plans(behaviour("normal", seed=2), 2000) if p.action == "success"]
    slow = [p.delay_s for p in plans(behaviour("slow", seed=2), 2000) if p.action == "success"]
    assert 0.06 <= statistics.median(normal) <= 0.10
    assert 1.2 <= statistics.median(slow) <= 1.9
    assert sum(d > 3.0 for d in slow) / len(slow) > 0.1


def test_fast_never_sleeps_nor_fails() -> None:
    assert {(p.action, p.delay_s) for p in plans(behaviour("fast"), 500)} == {("success", 0.0)}


def test_outage_alternates_healthy_and_down() -> None:
    clock = Clock()
    b = behaviour("outage", seed=4, clock=clock)
    assert not b.down()
    healthy = plans(b, 200)
    clock.now += OUTAGE_UP_S + 1
    assert b.down()
    down = plans(b, 200)
    assert sum(p.action == "success" for p in healthy) > 150
    assert all((p.action == "hang" and p.delay_s == HANG_S) or p.status == 503 for p in down)
    assert {p.action for p in down} >= {"hang"}
    clock.now += 10
    assert not b.down()


def test_throttle_rejects_above_the_rate() -> None:
    clock = Clock()
    b = behaviour("throttle", seed=5, clock=clock)
    burst = plans(b, THROTTLE_RPS + 10)
    assert all(p.status != 429 for p in burst[:THROTTLE_RPS])
    assert all(p.status == 429 and p.label.startswith("throttling:") for p in burst[THROTTLE_RPS:])
    clock.now += 1.5
    assert b.plan().status != 429


def test_new_codes_words_failures_in_an_unusual_style(monkeypatch: pytest.MonkeyPatch) -> None:
    import synth.vocabulary

    styles: list[str] = []
    real = synth.vocabulary.render_failure

    def spy(vocab: Any, partner: str, *args: Any, **kwargs: Any) -> Any:
        styles.append(partner)
        return real(vocab, partner, *args, **kwargs)

    b = behaviour("new-codes", seed=6)
    monkeypatch.setattr("service.simulator.behaviour.render_failure", spy)
    plans(b, 300)
    assert set(styles) == {b.novel_style}
    assert b.novel_style != b.style
    assert load_vocabulary().partners[b.novel_style].since > load_vocabulary().partners[b.style].since


def test_style_and_scenario_are_checked() -> None:
    with pytest.raises(SimulatorConfigError, match="scenario"):
        behaviour("nope")
    with pytest.raises(SimulatorConfigError, match="style"):
        behaviour(style="nobody")
    b = behaviour()
    with pytest.raises(SimulatorConfigError):
        b.switch("nope")
    for name in SCENARIOS:
        b.switch(name)
        assert b.scenario == name
