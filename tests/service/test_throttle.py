"""Adaptive throttling (service/throttle.py) and the adaptive guard of InsurerHealth, on driven clocks."""

from __future__ import annotations

import random

import pytest

from service.breaker import BreakerState
from service.health import InsurerHealth
from service.metrics import Metrics
from service.throttle import AdaptiveThrottle, ThrottlePolicy


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def _drive(throttle: AdaptiveThrottle, clock: Clock, *, accept_every: int, attempts: int) -> tuple[int, int]:
    """`attempts` requests, 10 ms apart; the insurer accepts one call in `accept_every` (0: none)."""
    sent = accepted = 0
    for _ in range(attempts):
        clock.now += 0.01
        if throttle.allow():
            sent += 1
            ok = accept_every > 0 and sent % accept_every == 0
            accepted += ok
            throttle.record(failed=not ok)
    return sent, accepted


def test_a_healthy_insurer_is_never_slowed() -> None:
    clock = Clock()
    throttle = AdaptiveThrottle(ThrottlePolicy(), clock=clock, rng=random.Random(1))
    sent, _ = _drive(throttle, clock, accept_every=1, attempts=2_000)
    assert sent == 2_000 and throttle.reject_probability() == 0.0


def test_an_insurer_accepting_a_third_gets_calls_in_proportion() -> None:
    clock = Clock()
    throttle = AdaptiveThrottle(ThrottlePolicy(accept_multiplier=2.0), clock=clock, rng=random.Random(2))
    sent, accepted = _drive(throttle, clock, accept_every=3, attempts=6_000)
    # p = (requests - 2 * accepts) / (requests + 1): with a third accepted, about a third is refused
    assert 0.6 < sent / 6_000 < 0.75, sent
    assert accepted == sent // 3


def test_a_dead_insurer_gets_probes_only_and_is_noticed_when_back() -> None:
    clock = Clock()
    policy = ThrottlePolicy(window_s=60.0, buckets=12, min_requests=20)
    throttle = AdaptiveThrottle(policy, clock=clock, rng=random.Random(3))
    sent, _ = _drive(throttle, clock, accept_every=0, attempts=5_000)
    assert sent < 150, sent  # 5,000 wanted in 50 s: min_requests, then a trickle (~sqrt(50 s x 100/s))
    assert throttle.reject_probability() > 0.95
    clock.now += 61.0  # a window later its failures have slid out: calls go again
    assert throttle.reject_probability() == 0.0
    sent_back, _ = _drive(throttle, clock, accept_every=1, attempts=500)
    assert sent_back == 500


def test_nothing_is_refused_below_min_requests_and_k_zero_disables() -> None:
    clock = Clock()
    throttle = AdaptiveThrottle(ThrottlePolicy(min_requests=20), clock=clock, rng=random.Random(4))
    for _ in range(19):
        throttle.record(failed=True)
    assert throttle.reject_probability() == 0.0
    throttle.record(failed=True)
    assert throttle.reject_probability() == pytest.approx(20 / 21)
    off = AdaptiveThrottle(ThrottlePolicy(accept_multiplier=0.0, min_requests=0), clock=clock)
    for _ in range(100):
        off.record(failed=True)
    assert off.reject_probability() == 0.0 and off.allow()


@pytest.mark.parametrize(
    ("fields", "message"),
    [({"window_s": 0}, "window"), ({"buckets": 0}, "buckets"), ({"min_requests": -1}, "min_requests")],
)
def test_policy_refuses_nonsense(fields: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ThrottlePolicy(**fields)  # type: ignore[arg-type]


def test_the_adaptive_guard_reports_states_and_blocks_a_dead_insurer(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    health = InsurerHealth(
        None, Metrics(), clock=clock, guard="adaptive", throttle=ThrottlePolicy(min_requests=10), rng=random.Random(5)
    )
    for _ in range(10):
        health.record("acme", failed=False)
        health.record("dead", failed=True)
    assert health.state("acme") is BreakerState.CLOSED and health.reject_probability("acme") == 0.0
    for _ in range(40):
        health.record("dead", failed=True)
    assert health.state("dead") is BreakerState.OPEN and health.blocked() == set(), "open, but probes still drawn"
    for _ in range(100):
        health.record("dead", failed=True)
    assert health.reject_probability("dead") >= 0.99 and health.blocked() == {"dead"}, "dead: not claimed for now"
    assert health.retry_in("dead") > 0
    assert any("circuit for insurer dead: closed → open (throttling" in r.getMessage() for r in caplog.records)
    none = InsurerHealth(None, Metrics(), clock=clock, guard="none")
    for _ in range(100):
        none.record("dead", failed=True)
    assert none.allow("dead") and none.blocked() == set()
