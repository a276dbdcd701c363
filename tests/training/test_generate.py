"""The synthetic history: deterministic, contract-shaped, realistically imbalanced, gappy, noisy and drifting."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from model.schema import CATEGORIES, OPERATIONS, REQUIRED_COLUMNS
from synth.vocabulary import load_vocabulary
from training.generate import COLUMNS, END, START, generate_failures, write_failures_csv

ROWS = 20_000


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return generate_failures(ROWS, seed=42)


def _progress(ts: pd.Series) -> pd.Series:
    """Time fraction of each row's timestamp within the generator's range."""
    seconds = (pd.to_datetime(ts, utc=True) - pd.Timestamp(START)).dt.total_seconds()
    return pd.Series(seconds.to_numpy(dtype=float) / (END - START).total_seconds(), index=ts.index)


def test_same_seed_same_frame_and_bytes_different_seed_differs(tmp_path: Path) -> None:
    first, second = generate_failures(2_000, seed=5), generate_failures(2_000, seed=5)
    pd.testing.assert_frame_equal(first, second)
    write_failures_csv(first, tmp_path / "a.csv")
    write_failures_csv(second, tmp_path / "b.csv")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    other = generate_failures(2_000, seed=6)
    assert not first["error_message"].equals(other["error_message"])


def test_columns_and_dtypes(frame: pd.DataFrame) -> None:
    assert list(frame.columns) == list(COLUMNS)
    assert list(frame.columns[: len(REQUIRED_COLUMNS)]) == list(REQUIRED_COLUMNS)
    assert len(frame) == ROWS
    assert str(frame["http_status"].dtype) == "Int64"
    assert frame["latency_ms"].dtype == "float64"
    assert set(frame["async_eligible"].unique()) == {0, 1}
    assert set(frame["operation"]) == set(OPERATIONS)
    assert frame["error_message"].str.len().min() > 0


def test_rows_are_sorted_by_utc_timestamp_within_the_range(frame: pd.DataFrame) -> None:
    assert frame["ts"].str.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ").all()
    assert frame["ts"].is_monotonic_increasing
    assert datetime.fromisoformat(frame["ts"].iloc[0]) >= START
    assert datetime.fromisoformat(frame["ts"].iloc[-1]) <= END


def test_async_share_is_about_a_third(frame: pd.DataFrame) -> None:
    assert 0.30 <= frame["async_eligible"].mean() <= 0.40


def test_label_noise_is_about_two_percent_and_keeps_the_category(frame: pd.DataFrame) -> None:
    truth = frame["category"].map(CATEGORIES).astype(int)
    flipped = (frame["async_eligible"] != truth).mean()
    assert 0.012 <= flipped <= 0.03


def test_missing_value_shares(frame: pd.DataFrame) -> None:
    assert 0.30 <= frame["http_status"].isna().mean() <= 0.40
    assert 0.25 <= frame["latency_ms"].isna().mean() <= 0.35
    assert 0.08 <= frame["error_code"].isna().mean() <= 0.35


def test_client_surface_rows_have_no_code_and_no_status(frame: pd.DataFrame) -> None:
    surface = {t.id: t.surface for t in load_vocabulary().templates}
    client = frame[frame["template_id"].map(surface) == "client"]
    assert len(client) > 500
    assert client["error_code"].isna().all() and client["http_status"].isna().all()
    gateway = frame[frame["template_id"].map(surface) == "gateway"]
    assert len(gateway) > 100 and gateway["error_code"].isna().all()


def test_breadth_of_partners_categories_and_languages(frame: pd.DataFrame) -> None:
    assert frame["insurer"].nunique() >= 25
    assert set(frame["category"]) == set(CATEGORIES)
    assert set(frame["language"]) == {"zh", "en", "mixed"}
    assert frame["template_id"].nunique() >= 500
    assert (frame["language"] == "mixed").mean() >= 0.04


def test_categories_fit_their_operations(frame: pd.DataFrame) -> None:
    pairs = Counter(zip(frame["operation"], frame["category"], strict=True))
    assert pairs["underwrite", "payment_declined"] == 0
    assert pairs["pay", "underwriting_decline"] == 0
    assert pairs["query", "underwriting_decline"] == 0
    assert pairs["pay", "payment_declined"] > pairs["issue_policy", "payment_declined"]
    assert pairs["underwrite", "underwriting_decline"] > pairs["issue_policy", "underwriting_decline"]
    identity = frame[frame["category"] == "identity_mismatch"]["operation"].value_counts()
    assert identity.index[0] in ("verify_identity", "underwrite")


def test_drift_late_partners_templates_and_codes(frame: pd.DataFrame) -> None:
    progress = _progress(frame["ts"])
    for partner in load_vocabulary().partners.values():
        seen = progress[frame["insurer"] == partner.name]
        if partner.since > 0 and len(seen):
            assert seen.min() >= partner.since - 1e-6, partner.name
    first_template = progress.groupby(frame["template_id"]).min().to_numpy(dtype=float)
    assert (first_template > 0.5).sum() >= 10
    coded = frame["error_code"].notna()
    first_code = progress[coded].groupby(frame["error_code"][coded]).min().to_numpy(dtype=float)
    assert (first_code > 0.45).sum() >= 5


def test_statuses_sometimes_contradict_the_failure(frame: pd.DataFrame) -> None:
    status = frame["http_status"]
    assert (status == 200).sum() / status.notna().sum() > 0.3
    validation = frame[frame["category"] == "validation"]["http_status"]
    assert (validation == 500).sum() > 0 and (validation == 400).sum() > 0


def test_client_timeouts_sit_at_the_partner_timeout(frame: pd.DataFrame) -> None:
    vocab = load_vocabulary()
    surface = {t.id: t.surface for t in vocab.templates}
    rows = frame[(frame["category"] == "timeout") & (frame["template_id"].map(surface) == "client")]
    rows = rows[rows["latency_ms"].notna()]
    limit = rows["insurer"].map({p.name: p.timeout_s * 1000 for p in vocab.partners.values()})
    ratio = rows["latency_ms"] / limit
    assert len(rows) > 200 and ratio.min() >= 1.0 and ratio.quantile(0.95) < 1.05
    validation = frame[(frame["category"] == "validation")]["latency_ms"].dropna()
    assert validation.median() < 150


def test_csv_has_header_empty_cells_and_round_trips(tmp_path: Path) -> None:
    df = generate_failures(500, seed=1)
    path = tmp_path / "out" / "failures.csv"
    write_failures_csv(df, path)
    text = path.read_text(encoding="utf-8")
    assert text.splitlines()[0] == ",".join(COLUMNS)
    back = pd.read_csv(path, keep_default_na=False, dtype=str)
    assert len(back) == 500
    assert (back["http_status"] == "").sum() == df["http_status"].isna().sum()
    assert (back["error_code"] == "").sum() == df["error_code"].isna().sum()
    assert back["http_status"][back["http_status"] != ""].str.fullmatch(r"\d{3}").all()


def test_zero_rows_gives_an_empty_frame_with_the_columns() -> None:
    df = generate_failures(0, seed=1)
    assert list(df.columns) == list(COLUMNS) and df.empty
