"""What the console shows of the insurers' health and of the learning loop's drift, from typed dependencies.

- Insurer health: the runtime's InsurerHealth (service/health.py): `state(insurer)`, `retry_in(insurer)`
  and `figure(insurer)` — the fleet's figure (requests and accepts of every serve and worker process
  in the window, the throttle's refusal probability), or this process's own while the database is
  unreachable (then marked so), with this process's share beside it.
- Retry budget: the fleet's bucket per insurer (service/budget.py), as the runtime last read it
  (`InsurerHealth.budget_figures`): its rate, max(floor, share x first-call rate), and the tokens
  taken by all workers; the configured floor, share and burst beside it.
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
    shared: bool = False  # the figures below are the fleet's (else this process's own)
    reject_probability: float = 0.0
    requests: int = 0  # in the throttle window, all processes
    accepts: int = 0
    local_requests: int = 0  # of those, this process's
    first_call_rate: float = 0.0
    budget_rate_per_s: float | None = None  # None: no re-execution budget figure yet
    budget_used: int = 0


@dataclass(frozen=True)
class Resilience:
    breaker_policy: dict[str, Any]
    budget_policy: dict[str, Any]
    insurers: list[InsurerRow]


def resilience(health: InsurerHealth, settings: Settings, insurers: Iterable[str]) -> Resilience:
    """Health and retry budget per insurer: the fleet's figures (this process's own while it cannot
    reach the database), and the configured limits."""
    budgets = health.budget_figures()
    rows = []
    for name in sorted(set(insurers)):
        figure = health.figure(name)
        budget = budgets.get(name)
        rows.append(
            InsurerRow(
                name,
                health.state(name).value,
                health.retry_in(name),
                shared=figure.shared,
                reject_probability=figure.reject_probability,
                requests=figure.requests,
                accepts=figure.accepts,
                local_requests=figure.local_requests,
                first_call_rate=figure.first_call_rate,
                budget_rate_per_s=budget.rate_per_s if budget is not None else None,
                budget_used=budget.granted_total if budget is not None else 0,
            )
        )
    policy = health.policy
    return Resilience(
        breaker_policy={
            "window": policy.window,
            "failures": policy.failures,
            "cooldown_s": policy.cooldown_s,
            "probes": policy.probes,
        },
        budget_policy={
            "retry_rate_per_s": settings.retry_rate_per_s,
            "retry_burst": settings.retry_burst,
            "retry_budget_share": settings.retry_budget_share,
            "shared_state": settings.shared_state,
            "guard": health.guard,
        },
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
