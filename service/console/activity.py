"""Hourly activity for the overview, with settled hours kept in memory so a page reads only the recent ones.

Orders received in an hour, and whether they went async, stop changing once their synchronous call
is over (seconds after they arrive; only an operator's requeue changes it later). So an hour that
ended more than `settle` ago is read from the store once and kept (per process, at most
`keep_hours`); the hours after it are read on every request. A 7-day overview then costs one
aggregate over the week the first time and an aggregate over the last hour or so afterwards.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Final

from service.store.insights import ActivityBucket, ConsoleReads, iter_hours

HOUR: Final = dt.timedelta(hours=1)


class ActivityCache:
    """Settled hours' buckets by hour (an empty list: an hour without orders)."""

    def __init__(self, *, settle: dt.timedelta = dt.timedelta(minutes=10), keep_hours: int = 31 * 24) -> None:
        self.settle = settle
        self.keep_hours = keep_hours
        self._hours: dict[dt.datetime, list[ActivityBucket]] = {}
        self._lock = threading.Lock()

    def read(self, reads: ConsoleReads, *, since: dt.datetime, now: dt.datetime) -> list[ActivityBucket]:
        """Buckets of the whole hours from `since` (floored to the hour) up to `now`, oldest first."""
        hours = list(iter_hours(since, now))
        settled_before = now - self.settle
        with self._lock:
            missing = [h for h in hours if h not in self._hours or h + HOUR > settled_before]
        if missing:
            fresh: dict[dt.datetime, list[ActivityBucket]] = {h: [] for h in hours if h >= missing[0]}
            for bucket in reads.activity(since=missing[0], until=now):
                fresh.setdefault(bucket.hour, []).append(bucket)
            with self._lock:
                self._hours.update((h, b) for h, b in fresh.items() if h + HOUR <= settled_before)
                self._evict(now)
        else:
            fresh = {}
        with self._lock:
            return [b for h in hours for b in fresh.get(h, self._hours.get(h, []))]

    def _evict(self, now: dt.datetime) -> None:
        oldest = now - self.keep_hours * HOUR
        for hour in [h for h in self._hours if h < oldest]:
            del self._hours[hour]

    def clear(self) -> None:
        with self._lock:
            self._hours.clear()
