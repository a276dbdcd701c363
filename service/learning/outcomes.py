"""Outcome labels: each order's first failure, labelled by what re-execution showed (docs/contract.md §6).

    SUCCEEDED after the failure (a later call or a status query)       → 1 (it was async-eligible)
    DEAD (re-execution exhausted its attempts or age)                  → 0
    FAILED after at least one more call (a retry failed definitively)  → 0
    FAILED at the first call (classified final, never re-executed)     → no outcome: left out
    ASYNC_PROCESSING (still being re-executed)                         → pending: left out

`export_outcomes(store, path)` writes these rows as a docs/contract.md §5 CSV, personal data masked,
with extra columns for provenance; `labelled_first_failures` yields them for reports and calibration.

`label_source` says where a row came from: `outcome` when the model decided the first failure, `rule`
when an operator's rule did (`rule_id` names it). The label is what re-execution showed either way,
but a rule chose which failures were re-executed at all (a rule's final failures never get a label,
its async ones always do), so data scientists may want to weigh or filter the `rule` rows.
The known biases of these labels are documented in docs/learning-loop.md.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from model.privacy import mask_personal_data
from model.records import Failure, make_failure
from model.schema import CATEGORIES, REQUIRED_COLUMNS
from service.store import FirstFailure, OrderState, OrderStore

Label = Literal[0, 1]
PAGE: Final = 500
EXTRA_COLUMNS: Final = (
    "category",
    "ts",
    "order_id",
    "final_state",
    "decision",
    "probability",
    "model_version",
    "exploration",
    "later_calls",
    "label_source",
    "rule_id",
)
COLUMNS: Final = (*REQUIRED_COLUMNS, *EXTRA_COLUMNS)


def outcome_label(state: OrderState, later_calls: int) -> Label | None:
    """The one outcome rule (module docstring): an order in `state` after `later_calls` calls made after
    its first failure → 1, 0, or None (pending, or never re-executed)."""
    if state is OrderState.SUCCEEDED:
        return 1
    if state is OrderState.DEAD:
        return 0
    if state is OrderState.FAILED and later_calls > 0:
        return 0
    return None


def label_of(row: FirstFailure) -> Label | None:
    """The label of an order's first failure (`outcome_label` of its state and later calls)."""
    return outcome_label(row.state, row.later_calls)


def label_source(row: FirstFailure) -> str:
    """`rule` when an operator's rule decided the first failure, else `outcome` (module docstring)."""
    return "rule" if row.attempt.decided_by == "rule" else "outcome"


def decision_of(row: FirstFailure) -> str:
    """What the service did with the first failure: async, final, exploration or unknown_outcome."""
    attempt = row.attempt
    if attempt.exploration:
        return "exploration"
    if attempt.outcome == "unknown":
        return "unknown_outcome"
    if attempt.async_eligible is None:
        return "unclassified"
    return "async" if attempt.async_eligible else "final"


@dataclass(frozen=True)
class Outcome:
    """One first failure with its label."""

    row: FirstFailure
    label: Label

    @property
    def failure(self) -> Failure:
        row, a = self.row, self.row.attempt
        return make_failure(row.insurer, row.operation, a.error_code, a.error_message, a.http_status, a.latency_ms)


def iter_first_failures(
    store: OrderStore, *, since: dt.datetime | None = None, page: int = PAGE
) -> Iterator[FirstFailure]:
    """Every order's first failure (first failure at or after `since`), page by page, oldest order first."""
    after = 0
    while True:
        rows = store.first_failures(since=since, after_pk=after, limit=page)
        yield from rows
        if len(rows) < page:
            return
        after = rows[-1].order_pk


def labelled_first_failures(rows: Iterable[FirstFailure]) -> Iterator[Outcome]:
    """The rows that have an outcome, with it."""
    for row in rows:
        label = label_of(row)
        if label is not None:
            yield Outcome(row, label)


def _text(value: object) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return str(value)


def csv_row(outcome: Outcome) -> dict[str, str]:
    """The CSV row of one outcome: text fields masked; the category only when it agrees with the label."""
    row, a = outcome.row, outcome.row.attempt
    category = a.category if a.category in CATEGORIES and CATEGORIES[a.category] == bool(outcome.label) else None
    return {
        "insurer": row.insurer,
        "operation": row.operation,
        "error_code": mask_personal_data(a.error_code or ""),
        "error_message": mask_personal_data(a.error_message or ""),
        "http_status": _text(a.http_status),
        "latency_ms": _text(a.latency_ms),
        "async_eligible": str(outcome.label),
        "category": category or "",
        "ts": a.at.astimezone(dt.UTC).isoformat(timespec="seconds"),
        "order_id": mask_personal_data(row.order_id),
        "final_state": row.state.value,
        "decision": decision_of(row),
        "probability": _text(None if a.probability is None else round(a.probability, 6)),
        "model_version": a.model_version or "",
        "exploration": "1" if a.exploration else "0",
        "later_calls": str(row.later_calls),
        "label_source": label_source(row),
        "rule_id": _text(a.rule_id),
    }


@dataclass(frozen=True)
class ExportSummary:
    path: Path
    first_failures: int
    rows: int
    positives: int
    pending: int
    no_outcome: int
    exploration: int

    def describe(self) -> str:
        share = f"{self.positives / self.rows:.1%}" if self.rows else "n/a"
        return (
            f"wrote {self.rows} labelled rows ({share} async-eligible, {self.exploration} from exploration) to "
            f"{self.path}; of {self.first_failures} first failures, {self.pending} are still pending and "
            f"{self.no_outcome} were final at once (no outcome)"
        )


def export_outcomes(store: OrderStore, path: Path, *, since: dt.datetime | None = None) -> ExportSummary:
    """Write the labelled first failures as CSV (written to a temp file, then renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    counts = {"first": 0, "rows": 0, "positives": 0, "pending": 0, "none": 0, "exploration": 0}
    with partial.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(COLUMNS), lineterminator="\n")
        writer.writeheader()
        for row in iter_first_failures(store, since=since):
            counts["first"] += 1
            label = label_of(row)
            if label is None:
                counts["pending" if row.state is OrderState.ASYNC_PROCESSING else "none"] += 1
                continue
            outcome = Outcome(row, label)
            writer.writerow(csv_row(outcome))
            counts["rows"] += 1
            counts["positives"] += label
            counts["exploration"] += int(bool(row.attempt.exploration))
    partial.replace(path)
    return ExportSummary(
        path,
        counts["first"],
        counts["rows"],
        counts["positives"],
        counts["pending"],
        counts["none"],
        counts["exploration"],
    )
