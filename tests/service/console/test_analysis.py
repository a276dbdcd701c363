"""Pure parts of the console: failure grouping and ranking, outcome labels, live calibration, access, card rows."""

from __future__ import annotations

import datetime as dt
from typing import Any

from model.text import normalize_message
from service.api.auth import ApiKeys, Role
from service.console.access import access_for
from service.console.activity import ActivityCache
from service.console.failures import group_failures, live_calibration, observed_label, top_codes
from service.console.views import activity_chart, card_facts, gate_metrics
from service.store import OrderState
from service.store.insights import ActivityBucket, FailureObservation

T = dt.datetime(2026, 11, 24, 10, 0, tzinfo=dt.UTC)


def obs(pk: int, message: str, state: OrderState, *, p: float = 0.9, calls: int = 2, code: str | None = "E1") -> Any:
    return FailureObservation(
        at=T - dt.timedelta(seconds=pk),
        order_pk=pk,
        order_id=f"P{pk}",
        insurer="acme" if pk % 2 else "beta",
        operation="pay",
        order_state=state,
        order_attempts=calls,
        error_code=code,
        error_message=message,
        http_status=503,
        outcome="failure",
        async_eligible=p >= 0.5,
        probability=p,
        category="insurer_busy",
        model_version="v1",
    )


def test_outcome_labels_follow_the_learning_loop() -> None:
    assert observed_label(obs(1, "m", OrderState.SUCCEEDED)) == 1
    assert observed_label(obs(1, "m", OrderState.DEAD)) == 0
    assert observed_label(obs(1, "m", OrderState.FAILED, calls=2)) == 0
    assert observed_label(obs(1, "m", OrderState.FAILED, calls=1)) is None  # final at once: untested
    assert observed_label(obs(1, "m", OrderState.ASYNC_PROCESSING)) is None


def test_messages_differing_only_in_ids_fall_together_and_disagreements_rank_first() -> None:
    observations = [
        # busy: async verdict, mostly succeeded later (agreement), the biggest group
        *(obs(i, f"System busy, order P2026112400{i:03d}", OrderState.SUCCEEDED) for i in range(1, 9)),
        # gateway: async verdict, but the orders died (disagreement)
        *(obs(i, f"upstream 10.0.0.{i} refused", OrderState.DEAD) for i in range(20, 23)),
        # final verdict that re-execution proved wrong (explored orders that succeeded)
        *(obs(i, "余额不足", OrderState.SUCCEEDED, p=0.1, code="E9") for i in range(30, 32)),
    ]
    groups = group_failures(observations)
    expected = [
        normalize_message(m) for m in ("upstream 10.0.0.1 refused", "余额不足", "System busy, order P2026112400001")
    ]
    assert [g.template for g in groups] == expected
    dead, wrong_final, busy = groups
    assert (dead.verdict, dead.disagrees, dead.against_verdict, dead.disagreement) == ("async", True, 3, 1.0)
    assert (wrong_final.verdict, wrong_final.disagrees, wrong_final.succeeded) == ("final", True, 2)
    assert (busy.failures, busy.orders, busy.disagrees, busy.resolved) == (8, 8, False, 8)
    assert busy.example == "System busy, order P2026112400001", "the newest raw message is the example"
    assert busy.insurers == {"acme": 4, "beta": 4}


def test_a_split_verdict_is_mixed_and_never_called_a_disagreement() -> None:
    mixed = group_failures([obs(1, "x", OrderState.DEAD, p=0.9), obs(2, "x", OrderState.DEAD, p=0.1)])[0]
    assert mixed.verdict == "mixed" and mixed.disagreement is None and not mixed.disagrees


def test_top_codes_and_live_calibration() -> None:
    observations = [obs(i, "m", OrderState.SUCCEEDED, p=0.95) for i in range(1, 4)]
    observations += [obs(i, "m", OrderState.DEAD, p=0.92, code=None) for i in range(4, 5)]
    observations += [obs(i, "m", OrderState.FAILED, p=0.05, calls=1, code=None) for i in range(5, 9)]
    codes = top_codes(observations)
    assert [(c.error_code, c.failures) for c in codes] == [("(no code)", 5), ("E1", 3)]
    assert codes[0].async_share == 0.2
    bins = live_calibration(observations)
    assert len(bins) == 1 and bins[0].orders == 4, "final-at-once orders carry no label"
    assert bins[0].observed_async == 0.75 and abs(bins[0].mean_probability - 0.9425) < 1e-9


def test_access_roles() -> None:
    keys = ApiKeys.parse("read-key-0123456789:read,admin-key-0123456789:admin")
    assert access_for(None, None).can_admin
    reader = access_for(keys, "read-key-0123456789")
    assert reader.can_read and not reader.can_admin and reader.role is Role.READ
    assert access_for(keys, "admin-key-0123456789").can_admin
    nobody = access_for(keys, "guess-0123456789012")
    assert not nobody.can_read and nobody.role is None


def test_activity_chart_fills_every_hour_and_leaves_empty_rates_blank() -> None:
    buckets = [
        ActivityBucket(T, "acme", 4, 1),
        ActivityBucket(T + dt.timedelta(hours=2), "beta", 2, 2),
    ]
    chart = activity_chart(buckets, T, T + dt.timedelta(hours=3), ["acme", "beta"])
    assert chart["labels"] == ["11-24 10:00", "11-24 11:00", "11-24 12:00"]
    assert chart["throughput"] == [{"label": "acme", "data": [4, 0, 0]}, {"label": "beta", "data": [0, 0, 2]}]
    assert chart["async_rate"][0]["data"] == [0.25, None, None]


def test_card_rows() -> None:
    card = {
        "version": "v1",
        "threshold": 0.2,
        "metrics": {"holdout": {"model": {"rows": 10, "async": {"f1": 0.9}, "ece": 0.01}, "status_rule": "n/a"}},
    }
    rows = gate_metrics(card)
    assert [(r.split, r.scorer, r.rows, r.async_f1, r.ece, r.roc_auc) for r in rows] == [
        ("holdout", "model", 10, 0.9, 0.01, None)
    ]
    assert ("threshold", "0.2") in card_facts(card)


class _CountingStore:
    """Stands in for OrderStore.activity: one order per insurer per hour, and a log of the windows read."""

    def __init__(self) -> None:
        self.reads: list[tuple[dt.datetime, dt.datetime]] = []

    def activity(self, *, since: dt.datetime, until: dt.datetime) -> list[ActivityBucket]:
        self.reads.append((since, until))
        hours = [since + dt.timedelta(hours=i) for i in range(int((until - since) / dt.timedelta(hours=1)) + 1)]
        return [ActivityBucket(h, "acme", 1, 0) for h in hours if h < until]


def test_activity_cache_reads_settled_hours_once() -> None:
    cache, store = ActivityCache(settle=dt.timedelta(minutes=10)), _CountingStore()
    now = T + dt.timedelta(hours=5, minutes=30)
    first = cache.read(store, since=T, now=now)  # type: ignore[arg-type]
    assert [b.hour for b in first] == [T + dt.timedelta(hours=i) for i in range(6)]
    assert store.reads == [(T, now)]
    later = now + dt.timedelta(minutes=20)  # 15:00-16:00 settled at 16:10; 16:00 is still open
    again = cache.read(store, since=T, now=later)  # type: ignore[arg-type]
    assert [b.hour for b in again] == [b.hour for b in first]
    assert store.reads[1] == (T + dt.timedelta(hours=5), later), "only the open hour is read again"
