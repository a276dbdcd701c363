"""The console's optional sources, read through app.state with getattr: absent pieces read as "not available".

- Circuit breakers: `app.state.breakers`, or the OrderProcessor's `breakers` (service/breaker.py),
  read through `state(insurer)` and `retry_in(insurer)`.
- Retry budget: `app.state.retry_budget` / `app.state.budget` when this process holds one
  (service/budget.py: `wait_s`, `known`, `granted`); otherwise only the configured limits
  (`Settings.retry_rate_per_s`, `retry_burst`), since the token buckets live in worker processes.
- Drift figures: the learning loop's cached report (`app.state.learning.drift_report(refresh=False)`,
  what GET /admin/drift serves) or a mapping in `app.state.drift`; shown to admins only, the API's
  rule for /admin/drift. Reading it never recomputes the calibration (that reads the store).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol, runtime_checkable

import anyio.to_thread
from fastapi import FastAPI

DRIFT_PATH: Final = "/admin/drift"


@runtime_checkable
class BreakerView(Protocol):
    def state(self, insurer: str) -> Any: ...

    def retry_in(self, insurer: str) -> float: ...


@runtime_checkable
class BudgetView(Protocol):
    def wait_s(self, insurer: str) -> float: ...

    def known(self) -> set[str]: ...


@dataclass(frozen=True)
class InsurerHealth:
    insurer: str
    circuit: str | None  # closed / half_open / open; None: no breaker in this process
    retry_in_s: float | None
    budget_wait_s: float | None  # None: no budget in this process, or no re-execution yet
    budget_granted: int | None


@dataclass(frozen=True)
class Resilience:
    breakers: bool
    budget: bool
    breaker_policy: dict[str, Any] | None
    budget_policy: dict[str, Any] | None
    insurers: list[InsurerHealth]


def _first(holders: Iterable[Any], names: Iterable[str], kind: type) -> Any:
    for holder in holders:
        if holder is None:
            continue
        for name in names:
            found = getattr(holder, name, None)
            if isinstance(found, kind):
                return found
    return None


def resilience(app: FastAPI, insurers: Iterable[str]) -> Resilience:
    """Breaker and budget state per insurer, as far as this process knows them."""
    state = app.state
    holders = (state, getattr(state, "processor", None), getattr(state, "worker", None))
    breakers = _first(holders, ("breakers", "breaker"), BreakerView)
    budget = _first(holders, ("retry_budget", "budget"), BudgetView)
    known = budget.known() if budget is not None else set()
    granted: Mapping[str, int] = getattr(budget, "granted", {}) if budget is not None else {}
    rows = []
    for name in sorted(set(insurers)):
        circuit = retry_in = None
        if breakers is not None:
            raw = breakers.state(name)
            circuit = str(getattr(raw, "value", raw))
            retry_in = float(breakers.retry_in(name))
        wait = float(budget.wait_s(name)) if budget is not None and name in known else None
        rows.append(InsurerHealth(name, circuit, retry_in, wait, granted.get(name) if budget is not None else None))
    policy = getattr(breakers, "policy", None)
    breaker_policy = (
        {k: getattr(policy, k) for k in ("window", "failures", "cooldown_s", "probes") if hasattr(policy, k)}
        if policy is not None
        else None
    )
    settings = getattr(state, "settings", None)
    budget_policy = {
        k: getattr(settings, k) for k in ("retry_rate_per_s", "retry_burst") if hasattr(settings, k)
    } or None
    return Resilience(breakers is not None, budget is not None, breaker_policy, budget_policy, rows)


@dataclass(frozen=True)
class Drift:
    figures: dict[str, Any] | None
    reason: str | None  # why there are no figures


async def drift(app: FastAPI, *, allowed: bool) -> Drift:
    """The drift report the service keeps (`app.state.learning.drift_report`, or a mapping in
    `app.state.drift`), cached: reading it here never recomputes the calibration against outcomes."""
    if not allowed:
        return Drift(None, f"drift figures need an admin key, as {DRIFT_PATH} does: log in with one")
    report = getattr(getattr(app.state, "learning", None), "drift_report", None)
    if callable(report):
        figures = await anyio.to_thread.run_sync(lambda: report(refresh=False))
        if isinstance(figures, Mapping):
            return Drift(dict(figures), None)
    held = getattr(app.state, "drift", None)
    if isinstance(held, Mapping):
        return Drift(dict(held), None)
    return Drift(None, "not available: this service keeps no drift figures")
