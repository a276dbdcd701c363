"""Drift of live failures from what the serving model was trained on, over a sliding time window.

Each order's first failure is observed once (`observe`); against the serving model's training
profile (model/profile.py) and vocabulary the monitor tracks, per window:

    unseen n-grams   share of messages whose known n-gram share is below `unseen_ngram_cutoff`
    unseen codes     per insurer, share of coded failures whose code the insurer never showed in training
    async rate       per insurer, the live async-eligible rate against the training-time rate
    calibration      live probabilities against observed outcomes (read from the store, cached)

`report(model)` gives the figures and the alerts (a threshold crossed with enough failures behind
it); a newly raised alert is logged as a warning once. Counters restart when the serving model
changes: drift is always measured against the model that serves.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Final

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from model.profile import TrainingProfile
from model.records import Failure
from service.learning.outcomes import iter_first_failures, labelled_first_failures
from service.learning.report import calibration
from service.rules import model_async_eligible
from service.scoring import ServingModel, Verdict
from service.store import OrderStore, StoreUnavailable

log = logging.getLogger("asyncgate.drift")
BUCKETS: Final = 12
MAX_CODES_KEPT: Final = 50
#: First failures read at most for one live-calibration figure.
MAX_CALIBRATION_ROWS: Final = 20_000


@dataclass(frozen=True)
class DriftThresholds:
    """When a drift figure raises an alert (see Settings.drift_*)."""

    window_s: float = 3600.0
    min_failures: int = 30
    unseen_ngram_cutoff: float = 0.5
    max_unseen_message_share: float = 0.2
    max_unseen_code_share: float = 0.2
    max_async_rate_delta: float = 0.25
    max_calibration_error: float = 0.15
    min_outcomes: int = 50


@dataclass
class _Insurer:
    failures: int = 0
    async_decisions: int = 0
    coded: int = 0
    unseen: int = 0
    unseen_codes: Counter[str] = field(default_factory=Counter)

    def add(self, other: _Insurer) -> None:
        self.failures += other.failures
        self.async_decisions += other.async_decisions
        self.coded += other.coded
        self.unseen += other.unseen
        self.unseen_codes.update(other.unseen_codes)


@dataclass
class _Bucket:
    index: int
    messages: int = 0
    mostly_unseen: int = 0
    insurers: dict[str, _Insurer] = field(default_factory=dict)


@dataclass(frozen=True)
class Familiarity:
    """How familiar one failure is to the serving model."""

    known_share: float
    code_known: bool | None
    mostly_unseen: bool

    @property
    def unfamiliar(self) -> bool:
        return self.mostly_unseen or self.code_known is False


class DriftMonitor:
    """Windowed drift counters of one process; thread-safe (observed on the event loop, read in threads)."""

    def __init__(self, thresholds: DriftThresholds | None = None, *, clock: Callable[[], float] = time.monotonic):
        self.thresholds = thresholds or DriftThresholds()
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: list[_Bucket] = []
        self._version: str | None = None
        self._profile = TrainingProfile()
        self._raised: set[tuple[str, str]] = set()
        self.calibration: dict[str, Any] | None = None
        self._calibrated_at = 0.0

    def _bucket_s(self) -> float:
        return self.thresholds.window_s / BUCKETS

    def _adopt(self, model: ServingModel) -> None:
        if model.version != self._version:
            self._version = model.version
            self._profile = TrainingProfile.from_card(model.card)
            self._buckets = []
            self.calibration = None

    def familiarity(self, model: ServingModel, failure: Failure) -> Familiarity:
        with self._lock:
            self._adopt(model)
            profile = self._profile
        share = model.scorer.known_ngram_share(failure.error_message)
        code_known = profile.knows_code(failure.insurer, failure.error_code)
        return Familiarity(share, code_known, share < self.thresholds.unseen_ngram_cutoff)

    def observe(self, model: ServingModel, failure: Failure, verdict: Verdict) -> Familiarity:
        """Count one first failure; returns how familiar it was."""
        seen = self.familiarity(model, failure)
        index = int(self._clock() // self._bucket_s())
        with self._lock:
            if not self._buckets or self._buckets[-1].index != index:
                self._buckets.append(_Bucket(index))
                del self._buckets[: -BUCKETS - 1]
            bucket = self._buckets[-1]
            bucket.messages += 1
            bucket.mostly_unseen += int(seen.mostly_unseen)
            insurer = bucket.insurers.setdefault(failure.insurer or "", _Insurer())
            insurer.failures += 1
            # the model's own decision: a rule pinning a kind of failure is not drift of the data
            insurer.async_decisions += int(bool(model_async_eligible(verdict.explanation, verdict.async_eligible)))
            if seen.code_known is not None:
                insurer.coded += 1
                if not seen.code_known and failure.error_code is not None:
                    insurer.unseen += 1
                    if failure.error_code in insurer.unseen_codes or len(insurer.unseen_codes) < MAX_CODES_KEPT:
                        insurer.unseen_codes[failure.error_code] += 1
        return seen

    def _window(self) -> tuple[int, int, dict[str, _Insurer]]:
        oldest = int(self._clock() // self._bucket_s()) - BUCKETS + 1
        messages = unseen = 0
        insurers: dict[str, _Insurer] = {}
        for bucket in self._buckets:
            if bucket.index < oldest:
                continue
            messages += bucket.messages
            unseen += bucket.mostly_unseen
            for name, counts in bucket.insurers.items():
                insurers.setdefault(name, _Insurer()).add(counts)
        return messages, unseen, insurers

    def refresh_calibration(self, store: OrderStore, *, since: dt.datetime | None = None) -> dict[str, Any]:
        """Live probabilities against outcomes of first failures since `since`, kept for reports."""
        rows = islice(iter_first_failures(store, since=since), MAX_CALIBRATION_ROWS)  # bounded at any volume
        pairs = [
            (o.row.attempt.probability, o.label)
            for o in labelled_first_failures(rows)
            if o.row.attempt.probability is not None and o.row.attempt.model_version == self._version
        ]
        result = calibration(pairs) | {"computed_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
        self.calibration = result
        return result

    def refresh_if_stale(self, store: OrderStore, *, window_s: float, max_age_s: float) -> None:
        """Recompute the calibration when it is older than `max_age_s` (a database outage keeps the old one)."""
        now = self._clock()
        if self.calibration is not None and now - self._calibrated_at < max_age_s:
            return
        self._calibrated_at = now
        try:
            self.refresh_calibration(store, since=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=window_s))
        except StoreUnavailable as exc:
            log.warning("drift: calibration not refreshed, database unavailable: %s", exc)

    def report(self, model: ServingModel) -> dict[str, Any]:
        """The drift figures of the window and the alerts they raise (new alerts are logged)."""
        t = self.thresholds
        with self._lock:
            self._adopt(model)
            messages, unseen, insurers = self._window()
            profile = self._profile
        alerts: list[dict[str, Any]] = []
        share = unseen / messages if messages else None
        if share is not None and messages >= t.min_failures and share > t.max_unseen_message_share:
            alerts.append(_alert("unseen_ngrams", "", share, t.max_unseen_message_share, messages))
        per_insurer = {}
        for name, c in sorted(insurers.items()):
            code_share = c.unseen / c.coded if c.coded else None
            rate = c.async_decisions / c.failures if c.failures else None
            trained = profile.async_rate(name)
            entry = {
                "failures": c.failures,
                "in_training": name in profile.insurers if profile.available else None,
                "unseen_code_share": _round(code_share),
                "unseen_codes": dict(c.unseen_codes.most_common(10)),
                "async_rate": _round(rate),
                "training_async_rate": trained,
            }
            per_insurer[name] = entry
            if code_share is not None and c.coded >= t.min_failures and code_share > t.max_unseen_code_share:
                alerts.append(_alert("unseen_codes", name, code_share, t.max_unseen_code_share, c.coded))
            delta = None if rate is None or trained is None else abs(rate - trained)
            if delta is not None and c.failures >= t.min_failures and delta > t.max_async_rate_delta:
                alerts.append(_alert("async_rate", name, delta, t.max_async_rate_delta, c.failures))
        cal = self.calibration
        if (
            cal
            and cal["ece"] is not None
            and cal["outcomes"] >= t.min_outcomes
            and cal["ece"] > t.max_calibration_error
        ):
            alerts.append(_alert("calibration", "", cal["ece"], t.max_calibration_error, cal["outcomes"]))
        self._log_changes(alerts)
        return {
            "model_version": model.version,
            "status": "drifting" if alerts else "ok",
            "window_s": t.window_s,
            "failures": messages,
            "training_profile": profile.available,
            "unseen_ngrams": {"cutoff": t.unseen_ngram_cutoff, "mostly_unseen": unseen, "share": _round(share)},
            "insurers": per_insurer,
            "calibration": cal,
            "thresholds": t.__dict__,
            "alerts": alerts,
        }

    def _log_changes(self, alerts: list[dict[str, Any]]) -> None:
        keys = {(a["kind"], a["insurer"]) for a in alerts}
        with self._lock:
            raised, cleared = keys - self._raised, self._raised - keys
            self._raised = keys
        for alert in alerts:
            if (alert["kind"], alert["insurer"]) in raised:
                log.warning("drift: %s", alert["message"], extra={"drift": alert["kind"], "insurer": alert["insurer"]})
        for kind, insurer in cleared:
            log.info("drift cleared: %s %s", kind, insurer, extra={"drift": kind, "insurer": insurer})


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _alert(kind: str, insurer: str, value: float, threshold: float, basis: int) -> dict[str, Any]:
    where = f" for {insurer}" if insurer else ""
    return {
        "kind": kind,
        "insurer": insurer,
        "value": round(value, 4),
        "threshold": threshold,
        "basis": basis,
        "message": f"{kind}{where} is {value:.3f}, above {threshold} (over {basis})",
    }


class DriftCollector(Collector):
    """Prometheus gauges of a drift report, computed at scrape time."""

    def __init__(self, report: Callable[[], dict[str, Any]]):
        self._report = report

    def describe(self) -> list[GaugeMetricFamily]:
        """Nothing up front: registering must not compute a report (it reads the store)."""
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        report = self._report()
        yield GaugeMetricFamily(
            "asyncgate_drift_failures", "First failures observed in the drift window", report["failures"]
        )
        share = report["unseen_ngrams"]["share"]
        yield GaugeMetricFamily(
            "asyncgate_drift_unseen_message_share", "Share of messages with mostly unseen n-grams", share or 0.0
        )
        codes = GaugeMetricFamily(
            "asyncgate_drift_unseen_code_share", "Share of codes unseen in training", labels=["insurer"]
        )
        rates = GaugeMetricFamily(
            "asyncgate_drift_async_rate", "Live async-eligible rate of first failures", labels=["insurer"]
        )
        trained = GaugeMetricFamily(
            "asyncgate_drift_training_async_rate", "Training-time async rate", labels=["insurer"]
        )
        for name, entry in report["insurers"].items():
            if entry["unseen_code_share"] is not None:
                codes.add_metric([name], entry["unseen_code_share"])
            if entry["async_rate"] is not None:
                rates.add_metric([name], entry["async_rate"])
            if entry["training_async_rate"] is not None:
                trained.add_metric([name], entry["training_async_rate"])
        yield from (codes, rates, trained)
        cal = report["calibration"] or {}
        if cal.get("ece") is not None:
            yield GaugeMetricFamily(
                "asyncgate_drift_calibration_error", "Expected calibration error vs outcomes", cal["ece"]
            )
        alerts = GaugeMetricFamily("asyncgate_drift_alerts", "Drift thresholds crossed", labels=["kind"])
        kinds = Counter(a["kind"] for a in report["alerts"])
        for kind in ("unseen_ngrams", "unseen_codes", "async_rate", "calibration"):
            alerts.add_metric([kind], kinds.get(kind, 0))
        yield alerts
