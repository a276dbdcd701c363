"""Failure records: one clean tuple per failure, from a DataFrame (CSV) or a request.

Both training (DataFrame rows) and serving (JSON requests) reduce a failure to a `Failure`:
empty strings, NaN and pandas NA become None, so every feature function sees one shape.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import pandas as pd

from model.schema import FEATURE_COLUMNS


class Failure(NamedTuple):
    """One failed synchronous call; every field but error_message may be None."""

    insurer: str | None
    operation: str | None
    error_code: str | None
    error_message: str
    http_status: int | None
    latency_ms: float | None


def _text(value: Any) -> str | None:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value)
    return text if text.strip() else None


def _int(value: Any) -> int | None:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return int(value)


def _float(value: Any) -> float | None:
    if value is None or value is pd.NA:
        return None
    number = float(value)
    return None if math.isnan(number) else number


def failure_from_mapping(record: Mapping[str, Any]) -> Failure:
    """A request body or dict row → Failure (missing keys are None)."""
    return Failure(
        insurer=_text(record.get("insurer")),
        operation=_text(record.get("operation")),
        error_code=_text(record.get("error_code")),
        error_message=_text(record.get("error_message")) or "",
        http_status=_int(record.get("http_status")),
        latency_ms=_float(record.get("latency_ms")),
    )


def iter_failures(frame: pd.DataFrame) -> Iterator[Failure]:
    """Rows of a frame holding FEATURE_COLUMNS → Failures, in order."""
    columns = [frame[name] if name in frame.columns else pd.Series([None] * len(frame)) for name in FEATURE_COLUMNS]
    for insurer, operation, code, message, status, latency in zip(*columns, strict=True):
        yield Failure(
            _text(insurer), _text(operation), _text(code), _text(message) or "", _int(status), _float(latency)
        )


def frame_from_failures(failures: list[Failure]) -> pd.DataFrame:
    """Failures → the DataFrame shape the sklearn pipeline takes (the reference path)."""
    frame = pd.DataFrame(failures, columns=list(FEATURE_COLUMNS))
    frame["http_status"] = frame["http_status"].astype("Int64")
    frame["latency_ms"] = frame["latency_ms"].astype("float64")
    return frame
