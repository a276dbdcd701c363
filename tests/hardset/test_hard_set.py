"""The hand-written hard set (tests/hardset/hard_set.csv) is well formed, big enough and never leaked.

The set stands in for held-out sets of real failure messages (see README.md next to it). These tests check
the file only: its shape, its labels against the category rule, its group sizes, and that none of its
messages was pasted into the generator's vocabulary (synth/vocab/), which would make it a training set.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import pandas as pd
import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
HARD_SET = HERE / "hard_set.csv"
VOCAB = ROOT / "synth" / "vocab"

HEADER = [
    "insurer",
    "operation",
    "error_code",
    "error_message",
    "http_status",
    "latency_ms",
    "async_eligible",
    "category",
    "group",
]
OPERATIONS = {
    "underwrite",
    "pay",
    "issue_policy",
    "query",
    "cancel",
    "refund",
    "claim",
    "verify_identity",
    "notify",
    "other",
}
ASYNC_CATEGORIES = {
    "timeout",
    "connection",
    "throttling",
    "insurer_busy",
    "maintenance",
    "dependency",
    "pending_unknown",
    "lock_contention",
}
FINAL_CATEGORIES = {
    "validation",
    "identity_mismatch",
    "underwriting_decline",
    "duplicate_or_closed",
    "payment_declined",
    "auth_config",
    "product_unavailable",
}
MIN_PER_GROUP = {"hard_negative": 50, "hard_positive": 50, "wide": 60, "insurance": 60}
MIN_ROWS = 240
MIN_OVERLAP_CHARS = 12  # shorter messages ("系统错误", "Bad Gateway") may legitimately appear anywhere
CJK = re.compile(r"[\u3400-\u9fff]")
LATIN_WORD = re.compile(r"[A-Za-z]{3,}")
INSURER_KEY = re.compile(r"[a-z][a-z0-9_]*")


@pytest.fixture(scope="module")
def raw_rows() -> list[list[str]]:
    with HARD_SET.open(encoding="utf-8", newline="") as f:
        return list(csv.reader(f))


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return pd.read_csv(HARD_SET, dtype=str, keep_default_na=False, encoding="utf-8")


def test_header_is_exact(raw_rows):
    assert raw_rows[0] == HEADER


def test_every_row_has_every_column(raw_rows):
    bad = [n for n, row in enumerate(raw_rows[1:], start=2) if len(row) != len(HEADER)]
    assert not bad, f"lines with the wrong number of fields: {bad}"


def _row_problems(row: dict[str, str]) -> list[str]:
    problems = []
    if not INSURER_KEY.fullmatch(row["insurer"]):
        problems.append(f"insurer {row['insurer']!r} is not a lowercase key")
    if row["operation"] not in OPERATIONS:
        problems.append(f"operation {row['operation']!r}")
    if not row["error_message"].strip():
        problems.append("empty error_message")
    if row["async_eligible"] not in {"0", "1"}:
        problems.append(f"async_eligible {row['async_eligible']!r}")
    if row["http_status"]:
        if not row["http_status"].isdigit() or not 100 <= int(row["http_status"]) <= 599:
            problems.append(f"http_status {row['http_status']!r}")
    if row["latency_ms"]:
        try:
            latency = float(row["latency_ms"])
        except ValueError:
            latency = -1.0
        if not math.isfinite(latency) or latency < 0:
            problems.append(f"latency_ms {row['latency_ms']!r}")
    if row["category"] in ASYNC_CATEGORIES:
        if row["async_eligible"] != "1":
            problems.append(f"category {row['category']} is async but the label is {row['async_eligible']}")
    elif row["category"] in FINAL_CATEGORIES:
        if row["async_eligible"] != "0":
            problems.append(f"category {row['category']} is final but the label is {row['async_eligible']}")
    else:
        problems.append(f"category {row['category']!r}")
    if row["group"] not in MIN_PER_GROUP:
        problems.append(f"group {row['group']!r}")
    return problems


def test_every_row_parses_and_its_category_agrees_with_its_label(frame):
    problems = {}
    for n, row in enumerate(frame.to_dict("records"), start=2):
        found = _row_problems(row)
        if found:
            problems[n] = found
    assert not problems, problems


def test_enough_rows(frame):
    assert len(frame) >= MIN_ROWS


@pytest.mark.parametrize(("group", "minimum"), sorted(MIN_PER_GROUP.items()))
def test_each_group_is_big_enough_and_holds_both_classes(frame, group, minimum):
    rows = frame[frame["group"] == group]
    assert len(rows) >= minimum, f"{group}: {len(rows)} rows, want at least {minimum}"
    assert set(rows["async_eligible"]) == {"0", "1"}, f"{group} holds one class only"


def test_hard_groups_lean_the_way_they_are_named(frame):
    """hard_negative is mostly final failures worded like transient ones; hard_positive the reverse."""
    share = frame.groupby("group")["async_eligible"].apply(lambda s: (s == "1").mean())
    assert share["hard_negative"] < 0.3
    assert share["hard_positive"] > 0.7


def test_classes_are_roughly_balanced(frame):
    share = (frame["async_eligible"] == "1").mean()
    assert 0.35 <= share <= 0.55, f"async share {share:.2f}"


def test_both_languages_in_every_group_and_a_third_chinese(frame):
    chinese = frame["error_message"].map(lambda m: bool(CJK.search(m)))
    english = frame["error_message"].map(lambda m: bool(LATIN_WORD.search(CJK.sub("", m))) and not CJK.search(m))
    assert chinese.mean() >= 1 / 3, f"Chinese share {chinese.mean():.2f}"
    for group in MIN_PER_GROUP:
        in_group = frame["group"] == group
        assert chinese[in_group].any(), f"{group} has no Chinese message"
        assert english[in_group].any(), f"{group} has no English message"


def test_no_duplicate_code_and_message(frame):
    dupes = frame[frame.duplicated(["error_code", "error_message"], keep=False)]
    assert dupes.empty, dupes[["error_code", "error_message"]].to_string()


def test_no_message_was_pasted_into_the_generator_vocabulary(frame):
    """The hard set measures generalisation only while the generator has never seen it."""
    files = sorted(p for p in VOCAB.rglob("*") if p.is_file())
    assert files, f"no vocabulary files under {VOCAB}"
    texts = {p.relative_to(ROOT).as_posix(): p.read_text(encoding="utf-8", errors="replace") for p in files}
    leaked = []
    for message in frame["error_message"]:
        needle = message.strip()
        if len(needle) < MIN_OVERLAP_CHARS:
            continue
        leaked.extend(f"{name}: {needle[:80]}" for name, text in texts.items() if needle in text)
    assert not leaked, "hard-set messages found verbatim in synth/vocab/:\n" + "\n".join(leaked)
