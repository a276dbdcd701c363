"""One failure record gives the same Failure (and so the same features) through every path that builds
one: the API's request body, the worker's call result, training's CSV rows and the outcome export."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import pytest

from model.records import Failure, iter_failures
from model.text import field_features, normalize_message
from service.api.classify import failure_of
from service.api.schemas import ClassifyRequest
from service.gateway import CallResult
from service.learning.outcomes import COLUMNS, Outcome, csv_row
from service.store import AttemptRecord, FirstFailure, OrderState
from training.validate import load_failures

NOW = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)

RECORDS = [
    # (insurer, operation, error_code, error_message, http_status, latency_ms)
    ("acme", "underwrite", "E1001", "系统繁忙，请稍后再试", 503, 1840.0),
    ("acme", "pay", "", "Read timed out", None, 2001.3),  # an empty code is no code
    ("acme", "pay", "   ", "余额不足", 200, None),  # so is a blank one
    ("pingan_core", "issue_policy", "0", "", 500, 12.5),  # "0" is a code; an empty message stays ''
]


def _via_api(record: tuple) -> Failure:
    insurer, operation, code, message, status, latency = record
    body = ClassifyRequest(
        insurer=insurer,
        operation=operation,
        error_code=code,
        error_message=message,
        http_status=status,
        latency_ms=latency,
    )
    return failure_of(body)


def _via_worker(record: tuple) -> Failure:
    from service.processing import make_failure

    insurer, operation, code, message, status, latency = record
    call = CallResult("failure", None, code, message, status, latency)
    return make_failure(insurer, operation, call.error_code, call.error_message, call.http_status, call.latency_ms)


def _attempt(record: tuple) -> FirstFailure:
    insurer, operation, code, message, status, latency = record
    attempt = AttemptRecord(
        id=1,
        order_pk=1,
        at=NOW,
        kind="call",
        outcome="failure",
        latency_ms=latency,
        error_code=code,
        error_message=message,
        http_status=status,
        async_eligible=True,
        probability=0.9,
        category="insurer_busy",
        model_version="v1",
        explanation=None,
        actor="api",
    )
    return FirstFailure(1, "P1", insurer, operation, OrderState.SUCCEEDED, NOW, NOW, attempt, 1, 1)


def _via_training(records: list[tuple], tmp_path: Path) -> list[Failure]:
    path = tmp_path / "history.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["insurer", "operation", "error_code", "error_message", "http_status", "latency_ms", "async_eligible"]
        )
        for i, (insurer, operation, code, message, status, latency) in enumerate(records):
            writer.writerow(
                [
                    insurer,
                    operation,
                    code,
                    message,
                    "" if status is None else status,
                    "" if latency is None else latency,
                    i % 2,
                ]
            )
    return list(iter_failures(load_failures([path])))


def _via_export(records: list[tuple], tmp_path: Path) -> list[Failure]:
    path = tmp_path / "outcomes.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(COLUMNS))
        writer.writeheader()
        for i, record in enumerate(records):
            writer.writerow(csv_row(Outcome(_attempt(record), i % 2)))
    return list(iter_failures(load_failures([path])))


def _features(f: Failure) -> tuple[dict[str, float], str]:
    return field_features(f.insurer, f.operation, f.error_code, f.http_status, f.latency_ms), normalize_message(
        f.error_message
    )


@pytest.mark.parametrize("index", range(len(RECORDS)))
def test_every_path_builds_the_same_failure(index: int, tmp_path: Path) -> None:
    record = RECORDS[index]
    api = _via_api(record)
    assert _via_worker(record) == api
    assert Outcome(_attempt(record), 1).failure == api
    assert _via_training(RECORDS, tmp_path)[index] == api
    assert _via_export(RECORDS, tmp_path)[index] == api
    assert _features(_via_export(RECORDS, tmp_path)[index]) == _features(api)
    if not record[2] or not record[2].strip():
        assert api.error_code is None
