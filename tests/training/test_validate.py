"""Bad training data gets an error naming the file, column and row — and nothing is written."""

from pathlib import Path

import pytest

from training.train import train_artifact
from training.validate import DataError, load_failures

HEADER = "insurer,operation,error_code,error_message,http_status,latency_ms,async_eligible"


def _csv(tmp_path: Path, *lines: str, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_valid_file_is_typed(tmp_path):
    path = _csv(tmp_path, HEADER, "acme,pay,E1,系统繁忙,503,12.5,1", "acme,pay,,余额不足,,,0")
    frame = load_failures([path])
    assert frame["http_status"].tolist()[0] == 503
    assert frame["http_status"].isna().tolist() == [False, True]
    assert frame["error_code"].iloc[0] == "E1"
    assert frame["error_code"].isna().tolist() == [False, True]
    assert frame["async_eligible"].tolist() == [1, 0]


def test_extra_columns_are_allowed(tmp_path):
    path = _csv(tmp_path, HEADER + ",ts,category", "acme,pay,E1,busy,503,1,1,2026-01-01,insurer_busy", "a,pay,,x,,,0,,")
    assert "category" in load_failures([path]).columns


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([HEADER.replace(",latency_ms", ""), "acme,pay,E1,busy,503,1"], "missing column(s) latency_ms"),
        (
            [HEADER, "acme,pay,E1,busy,abc,1,1", "a,pay,,x,,,0"],
            "column http_status, row 1 (line 2): 'abc' is not an integer",
        ),
        (
            [HEADER, "acme,pay,E1,busy,503,1,1", "a,pay,,x,,fast,0"],
            "column latency_ms, row 2 (line 3): 'fast' is not a number",
        ),
        ([HEADER, "acme,pay,E1,busy,503,1,1", "a,pay,,x,,-4,0"], "column latency_ms, row 2 (line 3): -4 is negative"),
        (
            [HEADER, "acme,pay,E1,busy,503,1,yes", "a,pay,,x,,,0"],
            "column async_eligible, row 1 (line 2): 'yes' is not 0 or 1",
        ),
        ([HEADER, "acme,pay,E1,busy,503,1,1", ",,,,,,", "a,pay,,x,,,0"], "row 2 (line 3) is empty"),
        ([HEADER, "acme,pay,E1,busy,503,1,1", ",pay,,x,,,0"], "column insurer, row 2 (line 3): empty"),
        ([HEADER, "acme,pay,E1,busy,503,1,1", "a,pay,,x,,,1"], "has only class [1]"),
        ([HEADER, "acme,pay,E1,busy,99,1,1", "a,pay,,x,,,0"], "99 is outside 100..599"),
        ([HEADER], "no data rows"),
    ],
)
def test_bad_files_name_the_problem(tmp_path, lines, message):
    path = _csv(tmp_path, *lines)
    with pytest.raises(DataError) as info:
        load_failures([path])
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_not_utf8(tmp_path):
    path = tmp_path / "gbk.csv"
    path.write_bytes((HEADER + "\nacme,pay,E1,系统繁忙,503,1,1\n").encode("gbk"))
    with pytest.raises(DataError, match="not UTF-8"):
        load_failures([path])


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_failures([tmp_path / "nope.csv"])


def test_training_on_bad_data_writes_nothing(tmp_path):
    path = _csv(tmp_path, HEADER, "acme,pay,E1,busy,503,1,1", "a,pay,,x,,,2")
    registry = tmp_path / "models"
    with pytest.raises(DataError):
        train_artifact([path], registry)
    assert not registry.exists()
