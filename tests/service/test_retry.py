"""The retry policy: delay bounds, DEAD by attempts and by age, validation, determinism."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.retry import RetryPolicy, next_attempt_at

NOW = dt.datetime(2026, 11, 24, 10, 0, tzinfo=dt.UTC)


class Highest(random.Random):
    """An rng whose uniform(a, b) always returns b: the longest possible delay."""

    def uniform(self, a: float, b: float) -> float:
        return b


@given(
    base_s=st.floats(min_value=0.001, max_value=100.0),
    spread=st.floats(min_value=1.0, max_value=1000.0),
    max_attempts=st.integers(min_value=2, max_value=40),
    data=st.data(),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_delay_is_between_zero_and_the_capped_exponential(
    base_s: float, spread: float, max_attempts: int, data: st.DataObject, seed: int
) -> None:
    policy = RetryPolicy(base_s=base_s, max_s=base_s * spread, max_attempts=max_attempts, max_age_s=1e12)
    attempts = data.draw(st.integers(min_value=1, max_value=max_attempts - 1), label="attempts")
    when = next_attempt_at(policy, attempts=attempts, first_failure_at=NOW, now=NOW, rng=random.Random(seed))
    assert when is not None
    delay = (when - NOW).total_seconds()
    assert 0.0 <= delay <= min(policy.max_s, base_s * 2 ** (attempts - 1))


def test_the_cap_doubles_then_stays_at_max_s() -> None:
    policy = RetryPolicy(base_s=5.0, max_s=600.0, max_attempts=12, max_age_s=1e9)
    caps = [policy.delay_cap(n) for n in range(1, 11)]
    assert caps == [5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 600.0, 600.0, 600.0]
    longest = [next_attempt_at(policy, attempts=n, first_failure_at=NOW, now=NOW, rng=Highest()) for n in range(1, 11)]
    assert [(t - NOW).total_seconds() for t in longest if t is not None] == caps
    assert policy.delay_cap(10_000) == 600.0  # no overflow for absurd counts


def test_jitter_spreads_over_the_whole_interval() -> None:
    policy = RetryPolicy(base_s=10.0, max_s=10.0, max_attempts=3, max_age_s=1e9)
    rng = random.Random(7)
    delays = []
    for _ in range(300):
        when = next_attempt_at(policy, attempts=1, first_failure_at=NOW, now=NOW, rng=rng)
        assert when is not None
        delays.append((when - NOW).total_seconds())
    assert min(delays) < 1.0
    assert max(delays) > 9.0
    assert len(set(delays)) > 250


def test_same_seed_same_schedule() -> None:
    policy = RetryPolicy()
    runs = [
        [next_attempt_at(policy, attempts=n, first_failure_at=NOW, now=NOW, rng=rng) for n in range(1, 8)]
        for rng in (random.Random(42), random.Random(42))
    ]
    assert runs[0] == runs[1]


@pytest.mark.parametrize("max_attempts", [1, 2, 3, 8])
def test_dead_when_attempts_are_exhausted(max_attempts: int) -> None:
    policy = RetryPolicy(max_attempts=max_attempts)

    def schedule(attempts: int) -> dt.datetime | None:
        return next_attempt_at(policy, attempts=attempts, first_failure_at=NOW, now=NOW, rng=random.Random(1))

    assert schedule(max_attempts) is None
    assert schedule(max_attempts + 1) is None
    if max_attempts > 1:
        assert schedule(max_attempts - 1) is not None


def test_dead_when_the_next_attempt_would_pass_max_age() -> None:
    policy = RetryPolicy(base_s=60.0, max_s=60.0, max_age_s=3600.0)
    first = NOW - dt.timedelta(seconds=3600 - 60)
    # exactly at the limit is still allowed; one microsecond later is not
    at_limit = next_attempt_at(policy, attempts=2, first_failure_at=first, now=NOW, rng=Highest())
    assert at_limit == first + dt.timedelta(seconds=3600)
    later = NOW + dt.timedelta(microseconds=1)
    assert next_attempt_at(policy, attempts=2, first_failure_at=first, now=later, rng=Highest()) is None


def test_dead_when_the_age_is_already_exceeded() -> None:
    policy = RetryPolicy(max_age_s=3600.0)
    first = NOW - dt.timedelta(hours=2)
    for seed in range(20):
        assert next_attempt_at(policy, attempts=1, first_failure_at=first, now=NOW, rng=random.Random(seed)) is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"base_s": 0.0}, "base_s must be positive"),
        ({"base_s": -1.0}, "base_s must be positive"),
        ({"max_s": 0.0}, "max_s must be positive"),
        ({"max_age_s": -5.0}, "max_age_s must be positive"),
        ({"base_s": 10.0, "max_s": 5.0}, r"max_s \(5.0\) must be at least base_s \(10.0\)"),
        ({"max_attempts": 0}, "max_attempts must be at least 1"),
        ({"max_attempts": 2.5}, "max_attempts must be an integer"),
        ({"max_attempts": True}, "max_attempts must be an integer"),
        ({"base_s": float("nan")}, "base_s must be a finite number"),
        ({"max_s": float("inf")}, "max_s must be a finite number"),
        ({"max_age_s": "1d"}, "max_age_s must be a finite number"),
    ],
)
def test_invalid_policies_are_rejected(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**fields)  # type: ignore[arg-type]


def test_attempts_start_at_one() -> None:
    with pytest.raises(ValueError, match="attempts must be at least 1"):
        next_attempt_at(RetryPolicy(), attempts=0, first_failure_at=NOW, now=NOW, rng=random.Random(0))
