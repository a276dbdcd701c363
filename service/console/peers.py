"""What the console shows of the insurers' health and of the learning loop's drift, from typed dependencies.

- Circuit breakers: the runtime's InsurerHealth (service/health.py), read through `state(insurer)`
  and `retry_in(insurer)`: this process's view.
- Retry budget: the token buckets live in each worker process (service/budget.py), never in the
  API process that serves the console, so only the configured limits are shown
  (`Settings.retry_rate_per_s`, `retry_burst`).
- Drift figures: the learning loop's cached report (`Learning.drift_report(refresh=False)`, what
  GET /admin/drift serves); shown to admins only, the API's rule for /admin/drift. Reading it never
  recomputes the calibration (that reads the store).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import anyio.to_thread

from service.config import Settings
from service.health import InsurerHealth
from service.learning.loop import Learning

DRIFT_PATH: Final = "/admin/drift"


@dataclass(frozen=True)
class InsurerRow:
    insurer: str
    circuit: str  # closed / half_open / open
    retry_in_s: float


@dataclass(frozen=True)
class Resilience:
    breaker_policy: dict[str, Any]
    budget_policy: dict[str, Any]
    insurers: list[InsurerRow]


def resilience(health: InsurerHealth, settings: Settings, insurers: Iterable[str]) -> Resilience:
    """Breaker state per insurer as this process knows it, and the workers' retry budget limits."""
    rows = [InsurerRow(name, health.state(name).value, health.retry_in(name)) for name in sorted(set(insurers))]
    policy = health.policy
    return Resilience(
        breaker_policy={
            "window": policy.window,
            "failures": policy.failures,
            "cooldown_s": policy.cooldown_s,
            "probes": policy.probes,
        },
        budget_policy={"retry_rate_per_s": settings.retry_rate_per_s, "retry_burst": settings.retry_burst},
        insurers=rows,
    )


@dataclass(frozen=True)
class Drift:
    figures: dict[str, Any] | None
    reason: str | None  # why there are no figures


async def drift(learning: Learning, *, allowed: bool) -> Drift:
    """The drift report the learning loop keeps, cached: reading it here never recomputes the
    calibration against outcomes."""
    if not allowed:
        return Drift(None, f"drift figures need an admin key, as {DRIFT_PATH} does: log in with one")
    figures = await anyio.to_thread.run_sync(lambda: learning.drift_report(refresh=False))
    return Drift(dict(figures), None)
