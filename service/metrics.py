"""Prometheus metrics of one process, on its own CollectorRegistry (no global state between apps).

Request latency per route, classifications by verdict and category, orders by state (read from the
store at scrape time), re-execution outcomes, insurer call latency and outcomes per insurer, circuit
breaker states and short-circuited calls per insurer, retry-budget deferrals, the model version
as an info-style gauge, and order events (docs/contract.md §8): webhook tries by outcome, events given
up, delivery lag, and (read from the store at scrape time, in a process that delivers) undelivered
events by state and the oldest undelivered event's age.

The insurers' shared state (docs/architecture.md, "Shared insurer state") is read at scrape time from
the runtime's InsurerHealth and retry budget, as of their last sync: one fleet figure per insurer,
the same from every process (`asyncgate_insurer_fleet_*`, `asyncgate_retry_budget_*`; the label
`scope` is "fleet", or "process" while this process falls back to its own view).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from service.scoring import Verdict

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class _OrderStates(Collector):
    def __init__(self, counts: Callable[[], dict[str, int]]):
        self._counts = counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("asyncgate_orders", "Orders by state, read from the store", labels=["state"])
        try:
            counts = self._counts()
        except Exception:
            counts = {}
        for state, count in sorted(counts.items()):
            family.add_metric([state], count)
        yield family


class _InsurerFigures(Collector):
    """Gauges of the insurers' health and retry budget, from the runtime's figures at scrape time."""

    def __init__(self, health: Callable[[], Mapping[str, Any]], budget: Callable[[], Mapping[str, Any]]):
        self._health = health
        self._budget = budget

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ["insurer", "scope"]
        p = GaugeMetricFamily(
            "asyncgate_insurer_throttle_reject_probability",
            "Share of calls refused locally by the adaptive throttle (the fleet's figure)",
            labels=labels,
        )
        state = GaugeMetricFamily(
            "asyncgate_insurer_fleet_state", "Insurer guard state: 0 closed, 1 throttling, 2 open", labels=labels
        )
        requests = GaugeMetricFamily(
            "asyncgate_insurer_fleet_requests", "Calls and queries made to the insurer in the window", labels=labels
        )
        accepts = GaugeMetricFamily(
            "asyncgate_insurer_fleet_accepts", "Of those, the ones the insurer accepted", labels=labels
        )
        first = GaugeMetricFamily(
            "asyncgate_insurer_fleet_first_call_rate", "Orders' first calls per second over the window", labels=labels
        )
        rate = GaugeMetricFamily(
            "asyncgate_retry_budget_rate_per_s", "The insurer's retry budget (re-executions per second)", labels=labels
        )
        granted = GaugeMetricFamily(
            "asyncgate_retry_budget_tokens_used",
            "Retry tokens taken from the insurer's budget (fleet: since its row was made)",
            labels=labels,
        )
        try:
            health, budget = self._health(), self._budget()
        except Exception:
            health, budget = {}, {}
        for name, h in sorted(health.items()):
            scope = ["fleet" if h.shared else "process"]
            p.add_metric([name, *scope], h.reject_probability)
            state.add_metric([name, *scope], STATE_VALUE.get(h.state.value, 0))
            requests.add_metric([name, *scope], h.requests)
            accepts.add_metric([name, *scope], h.accepts)
            first.add_metric([name, *scope], h.first_call_rate)
        for name, b in sorted(budget.items()):
            scope = ["fleet" if b.shared else "process"]
            rate.add_metric([name, *scope], b.rate_per_s)
            granted.add_metric([name, *scope], b.granted_total)
        yield from (p, state, requests, accepts, first, rate, granted)


#: guard state -> gauge value (as service.breaker.STATE_VALUE, by the state's name)
STATE_VALUE = {"closed": 0, "half_open": 1, "open": 2}


class _EventBacklog(Collector):
    def __init__(self, summary: Callable[[], Any]):
        self._summary = summary

    def collect(self) -> Iterator[GaugeMetricFamily]:
        age = GaugeMetricFamily(
            "asyncgate_events_oldest_undelivered_age_seconds",
            "Age of the oldest event waiting for webhook delivery (0 when none)",
        )
        undelivered = GaugeMetricFamily(
            "asyncgate_events_undelivered", "Events not delivered, by delivery state", labels=["state"]
        )
        try:
            summary = self._summary()
        except Exception:
            return
        oldest = summary.oldest_pending_at
        age.add_metric([], 0.0 if oldest is None else max(0.0, (dt.datetime.now(dt.UTC) - oldest).total_seconds()))
        for state, count in sorted(summary.counts.items()):
            undelivered.add_metric([state], count)
        yield age
        yield undelivered


class Metrics:
    """All metrics of one process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._order_states: _OrderStates | None = None
        self._insurer_figures: _InsurerFigures | None = None
        r = self.registry
        self.requests = Histogram(
            "asyncgate_http_request_seconds",
            "HTTP request latency by route",
            ["method", "route", "status"],
            registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self.classifications = Counter(
            "asyncgate_classifications_total", "Failures classified", ["verdict", "category"], registry=r
        )
        self.transitions = Counter(
            "asyncgate_order_transitions_total", "Orders moved to a state", ["state", "actor"], registry=r
        )
        self.insurer_calls = Histogram(
            "asyncgate_insurer_call_seconds",
            "Insurer call latency by outcome",
            ["insurer", "outcome"],
            registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self.insurer_queries = Counter(
            "asyncgate_insurer_queries_total",
            "Status queries before re-sending",
            ["insurer", "outcome"],
            registry=r,
        )
        self.reexecutions = Counter(
            "asyncgate_reexecutions_total",
            "Orders re-executed by the worker, by resulting state",
            ["state"],
            registry=r,
        )
        self.replays = Counter(
            "asyncgate_idempotent_replays_total", "Repeated /process answered from the store", registry=r
        )
        self.model_info = Gauge("asyncgate_model_info", "The model that serves (value 1)", ["version"], registry=r)
        self.circuit_state = Gauge(
            "asyncgate_insurer_circuit_state",
            "Circuit breaker per insurer: 0 closed, 1 half-open, 2 open",
            ["insurer"],
            registry=r,
        )
        self.circuit_changes = Counter(
            "asyncgate_insurer_circuit_changes_total", "Circuit breaker state changes", ["insurer", "state"], registry=r
        )
        self.short_circuited = Counter(
            "asyncgate_insurer_short_circuited_total",
            "Calls not made because the insurer's circuit was open",
            ["insurer", "actor"],
            registry=r,
        )
        self.budget_deferred = Counter(
            "asyncgate_retry_budget_deferred_total",
            "Re-executions put back because the insurer's retry budget was spent",
            ["insurer"],
            registry=r,
        )
        self.webhook_tries = Counter(
            "asyncgate_webhook_deliveries_total",
            "Webhook delivery tries by outcome: acknowledged (2xx), rejected (other status), timeout, unreachable",
            ["outcome"],
            registry=r,
        )
        self.webhook_failed = Counter(
            "asyncgate_webhook_events_failed_total",
            "Events given up after the maximum delivery age (marked failed; redeliverable)",
            registry=r,
        )
        self.webhook_delivery_lag = Histogram(
            "asyncgate_webhook_delivery_lag_seconds",
            "From an event's transition to its acknowledgement",
            registry=r,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0, 86400.0),
        )
        self._event_backlog: _EventBacklog | None = None

    def watch_events(self, summary: Callable[[], Any]) -> None:
        """Report undelivered events from `summary` (an EventStore.summary; a restarted lifespan replaces it)."""
        if self._event_backlog is not None:
            self.registry.unregister(self._event_backlog)
        self._event_backlog = _EventBacklog(summary)
        self.registry.register(self._event_backlog)

    def webhook_try(self, outcome: str) -> None:
        self.webhook_tries.labels(outcome=outcome).inc()

    def webhook_gave_up(self) -> None:
        self.webhook_failed.inc()

    def webhook_lag(self, seconds: float) -> None:
        self.webhook_delivery_lag.observe(max(0.0, seconds))

    def watch_orders(self, counts: Callable[[], dict[str, int]]) -> None:
        """Report orders by state from `counts` (a restarted lifespan replaces the previous source)."""
        if self._order_states is not None:
            self.registry.unregister(self._order_states)
        self._order_states = _OrderStates(counts)
        self.registry.register(self._order_states)

    def watch_insurers(self, health: Callable[[], Mapping[str, Any]], budget: Callable[[], Mapping[str, Any]]) -> None:
        """Report the insurers' shared figures from `health()` and `budget()` (a restarted lifespan
        replaces the previous source)."""
        if self._insurer_figures is not None:
            self.registry.unregister(self._insurer_figures)
        self._insurer_figures = _InsurerFigures(health, budget)
        self.registry.register(self._insurer_figures)

    def set_model(self, version: str) -> None:
        self.model_info.clear()
        self.model_info.labels(version=version).set(1)

    def classified(self, verdict: Verdict) -> None:
        self.classifications.labels(
            verdict="async" if verdict.async_eligible else "final", category=verdict.category or "none"
        ).inc()

    def insurer_call(self, insurer: str, outcome: str, latency_ms: float) -> None:
        self.insurer_calls.labels(insurer=insurer, outcome=outcome).observe(latency_ms / 1000.0)

    def query(self, insurer: str, outcome: str) -> None:
        self.insurer_queries.labels(insurer=insurer, outcome=outcome).inc()

    def transition(self, state: str, actor: str) -> None:
        self.transitions.labels(state=state, actor="api" if actor.startswith("api") else "worker").inc()

    def circuit(self, insurer: str, state: str, value: int) -> None:
        self.circuit_state.labels(insurer=insurer).set(value)
        self.circuit_changes.labels(insurer=insurer, state=state).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
