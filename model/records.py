"""Failure records: one clean tuple per failure, from a DataFrame (CSV) or a request.

Both training (DataFrame rows) and serving (JSON requests) reduce a failure to a `Failure`:
empty strings, NaN and pandas NA become None, so every feature function sees one shape.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from model.schema import FEATURE_COLUMNS

if TYPE_CHECKING:
    import pandas as pd


class Failure(NamedTuple):
    """One failed synchronous call; every field but error_message may be None."""

    insurer: str | None
    operation: str | None
    error_code: str | None
    error_message: str
    http_status: int | None
    latency_ms: float | None


def is_missing(value: Any) -> bool:
    """None, NaN or pandas' NA (pandas is imported only where frames are: serving never loads it)."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    pandas = sys.modules.get("pandas")
    return pandas is not None and value is pandas.NA


def _text(value: Any) -> str | None:
    if is_missing(value):
        return None
    text = str(value)
    return text if text.strip() else None


def _int(value: Any) -> int | None:
    if is_missing(value):
        return None
    return int(value)


def _float(value: Any) -> float | None:
    if is_missing(value):
        return None
    number = float(value)
    return None if math.isnan(number) else number


def make_failure(
    insurer: Any, operation: Any, error_code: Any, error_message: Any, http_status: Any, latency_ms: Any
) -> Failure:
    """The one construction of a Failure from raw field values: a request body, a call's result, a stored
    attempt or a CSV row. Empty or blank strings, NaN and pandas NA become None (the message ''), so
    the same failure gives the same features whichever way it came in."""
    return Failure(
        _text(insurer),
        _text(operation),
        _text(error_code),
        _text(error_message) or "",
        _int(http_status),
        _float(latency_ms),
    )


def failure_from_mapping(record: Mapping[str, Any]) -> Failure:
    """A request body or dict row → Failure (missing keys are None)."""
    return make_failure(*(record.get(name) for name in FEATURE_COLUMNS))


def iter_failures(frame: pd.DataFrame) -> Iterator[Failure]:
    """Rows of a frame holding FEATURE_COLUMNS → Failures, in order."""
    import pandas as pd

    columns = [frame[name] if name in frame.columns else pd.Series([None] * len(frame)) for name in FEATURE_COLUMNS]
    for values in zip(*columns, strict=True):
        yield make_failure(*values)


def frame_from_failures(failures: list[Failure]) -> pd.DataFrame:
    """Failures → the DataFrame shape the sklearn pipeline takes (the reference path)."""
    import pandas as pd

    frame = pd.DataFrame(failures, columns=list(FEATURE_COLUMNS))
    frame["http_status"] = frame["http_status"].astype("Int64")
    frame["latency_ms"] = frame["latency_ms"].astype("float64")
    return frame
