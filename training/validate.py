"""Reading historical failures (CSV, docs/contract.md §5) with errors that name the column and row.

`load_failures(paths)` returns one clean frame (the 7 contract columns typed, other columns kept as
text) or raises DataError before anything is trained or written.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from model.schema import LABEL_COLUMN, REQUIRED_COLUMNS


class DataError(ValueError):
    """The training data is not usable: {problem} (names the file, column and row at fault)."""


def _row(position: int) -> str:
    # position: 0-based index in the data; data row 1 is the line after the header
    return f"row {position + 1} (line {position + 2})"


def read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{path}: empty file, expected a header row with {', '.join(REQUIRED_COLUMNS)}") from exc
    except pd.errors.ParserError as exc:
        raise DataError(f"{path}: malformed CSV: {exc}") from exc
    return frame


def validate_failures(raw: pd.DataFrame, source: str) -> pd.DataFrame:
    """Type and check a frame read as text; raise DataError naming the first problem found."""
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise DataError(f"{source}: missing column(s) {', '.join(missing)} (found: {', '.join(map(str, raw.columns))})")
    if raw.empty:
        raise DataError(f"{source}: no data rows")
    text = raw[list(REQUIRED_COLUMNS)].apply(lambda col: col.str.strip())
    empty_rows = np.flatnonzero((text == "").all(axis=1).to_numpy())
    if len(empty_rows):
        raise DataError(f"{source}: {_row(int(empty_rows[0]))} is empty")
    for column in ("insurer", "operation"):
        blank = np.flatnonzero((text[column] == "").to_numpy())
        if len(blank):
            raise DataError(f"{source}: column {column}, {_row(int(blank[0]))}: empty, a name is required")
    frame = raw.copy()
    frame["insurer"] = text["insurer"]
    frame["operation"] = text["operation"]
    frame["error_code"] = text["error_code"].where(text["error_code"] != "", None)
    frame["error_message"] = raw["error_message"]
    frame["http_status"] = _integers(text["http_status"], "http_status", source, low=100, high=599)
    frame["latency_ms"] = _numbers(text["latency_ms"], "latency_ms", source)
    labels = text[LABEL_COLUMN]
    bad = np.flatnonzero(~labels.isin(["0", "1"]).to_numpy())
    if len(bad):
        value = labels.iloc[bad[0]]
        raise DataError(f"{source}: column {LABEL_COLUMN}, {_row(int(bad[0]))}: {value!r} is not 0 or 1")
    frame[LABEL_COLUMN] = labels.astype(np.int64)
    return frame


def _integers(column: pd.Series, name: str, source: str, *, low: int, high: int) -> pd.Series:
    present = column != ""
    numbers = pd.to_numeric(column.where(present, None), errors="coerce")
    bad = np.flatnonzero((present & (numbers.isna() | (numbers % 1 != 0))).to_numpy())
    if len(bad):
        raise DataError(f"{source}: column {name}, {_row(int(bad[0]))}: {column.iloc[bad[0]]!r} is not an integer")
    out_of_range = np.flatnonzero((present & ((numbers < low) | (numbers > high))).to_numpy())
    if len(out_of_range):
        value = column.iloc[out_of_range[0]]
        raise DataError(f"{source}: column {name}, {_row(int(out_of_range[0]))}: {value} is outside {low}..{high}")
    return numbers.astype("Int64")


def _numbers(column: pd.Series, name: str, source: str) -> pd.Series:
    present = column != ""
    numbers = pd.to_numeric(column.where(present, None), errors="coerce")
    bad = np.flatnonzero((present & (numbers.isna() | ~np.isfinite(numbers.fillna(0)))).to_numpy())
    if len(bad):
        raise DataError(f"{source}: column {name}, {_row(int(bad[0]))}: {column.iloc[bad[0]]!r} is not a number")
    negative = np.flatnonzero((present & (numbers < 0)).to_numpy())
    if len(negative):
        raise DataError(f"{source}: column {name}, {_row(int(negative[0]))}: {column.iloc[negative[0]]} is negative")
    return numbers.astype("float64")


def load_failures(paths: Sequence[Path], *, need_both_classes: bool = True) -> pd.DataFrame:
    """Read and validate one or more CSVs into one frame (a `source` column names each row's file)."""
    if not paths:
        raise DataError("no data files given")
    frames = []
    for path in paths:
        frame = validate_failures(read_csv(path), str(path))
        frame["source"] = str(path)
        frames.append(frame)
    merged = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if need_both_classes:
        classes = sorted(set(merged[LABEL_COLUMN].unique().tolist()))
        if classes != [0, 1]:
            raise DataError(
                f"{', '.join(map(str, paths))}: column {LABEL_COLUMN} has only class {classes}; "
                "training needs both 0 and 1"
            )
    return merged
