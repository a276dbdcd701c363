"""`asyncgate rules ...`: add, list, remove, import and export (TOML and CSV) on a real SQLite database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from service.cli import app as cli
from service.rule_files import parse_rules, to_csv, to_toml
from service.store import OrderStore, create_db_engine, migrate


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/cli-rules.db"


def run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def run_failing(*args: str, code: int = 2) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == code, result.output
    return result.output


def live(db: str) -> list[dict[str, object]]:
    rules: list[dict[str, object]] = json.loads(run("rules", "list", "--db-url", db, "--json"))["rules"]
    return rules


TRICKY_REASON = 'says "retry later"\\ but means it,\nsecond line\ttab, 逗号，'


def add_three(db: str) -> None:
    run("rules", "add", "--db-url", db, "--decision", "final", "--reason", "hard stop", "--error-code", "E1")
    run(
        "rules",
        "add",
        "--db-url",
        db,
        "--decision",
        "async",
        "--reason",
        TRICKY_REASON,
        "--insurer",
        "acme",
        "--message-contains",
        " 系统繁忙 ",
        "--category",
        "insurer_busy",
    )
    run(
        "rules",
        "add",
        "--db-url",
        db,
        "--decision",
        "final",
        "--reason",
        "r3",
        "--operation",
        "pay",
        "--error-code",
        "X",
    )


def test_add_list_and_remove(db: str) -> None:
    add_three(db)
    rules = live(db)
    assert [r["decision"] for r in rules] == ["final", "async", "final"]
    assert rules[1]["message_contains"] == " 系统繁忙 " and rules[1]["reason"] == TRICKY_REASON.strip()
    assert {r["created_by"] for r in rules} == {"cli"} and all(r["hits"] == 0 for r in rules)
    text = run("rules", "list", "--db-url", db)
    assert "#1 final when error_code='E1': hard stop" in text
    assert "removed #1" in run("rules", "remove", "1", "--db-url", db)
    assert [r["rule_id"] for r in live(db)] == [2, 3]
    assert "does not exist" in run_failing("rules", "remove", "1", "--db-url", db, code=1)


def test_add_refuses_a_bad_rule_naming_the_field(db: str) -> None:
    output = run_failing("rules", "add", "--db-url", db, "--decision", "async", "--reason", "r")
    assert "message_contains" in output and "both be null" in output
    output = run_failing(
        "rules", "add", "--db-url", db, "--decision", "async", "--reason", "r", "--error-code", "E", "--category", "x"
    )
    assert "category" in output and "unknown category" in output
    assert live(db) == []


@pytest.mark.parametrize("fmt", ["toml", "csv"])
def test_export_import_round_trip_is_lossless(db: str, tmp_path: Path, fmt: str) -> None:
    add_three(db)
    exported = tmp_path / f"rules.{fmt}"
    run("rules", "export", "--db-url", db, "--format", fmt, "--out", str(exported))
    assert run("rules", "export", "--db-url", db, "--format", fmt) == exported.read_text(encoding="utf-8"), "stdout"
    fresh = f"sqlite:///{tmp_path}/fresh.db"
    assert "3 added, 0 already live, 0 removed" in run("rules", "import", str(exported), "--db-url", fresh)
    again = tmp_path / f"again.{fmt}"
    run("rules", "export", "--db-url", fresh, "--format", fmt, "--out", str(again))
    assert again.read_bytes() == exported.read_bytes()
    fields = ("insurer", "operation", "error_code", "message_contains", "decision", "category", "reason")
    assert [[r[f] for f in fields] for r in live(fresh)] == [[r[f] for f in fields] for r in live(db)]
    assert "0 added, 3 already live" in run("rules", "import", str(exported), "--db-url", db), "re-import: a no-op"


def test_import_replace_removes_rules_the_file_lacks(db: str, tmp_path: Path) -> None:
    add_three(db)
    path = tmp_path / "one.toml"
    path.write_text('[[rules]]\nerror_code = "E1"\ndecision = "final"\nreason = "hard stop"\n', encoding="utf-8")
    assert "1 already live, 2 removed" in run("rules", "import", str(path), "--db-url", db, "--replace")
    assert [r["error_code"] for r in live(db)] == ["E1"]


@pytest.mark.parametrize(
    ("name", "content", "problems"),
    [
        (
            "bad.toml",
            '[[rules]]\nerror_code = "E1"\ndecision = "final"\nreason = "ok"\n\n'
            '[[rules]]\nerror_code = "E2"\ndecision = "sometimes"\nreason = "x"\n\n'
            '[[rules]]\ndecision = "async"\nreason = ""\n',
            ["row 2, field decision", "row 3, field message_contains", "row 3, field reason"],
        ),
        (
            "bad.csv",
            "error_code,message_contains,decision,category,reason\nE1,,final,,ok\nE2,,async,validation,x\n",
            ["row 2, field category"],
        ),
        ("bad.csv", "error_code,decision,reason,colour\nE1,final,ok,red\n", ["unknown column 'colour'"]),
        ("bad.toml", "[[rules]\n", ["not valid TOML"]),
        ("bad.txt", "", ["ends in .toml or .csv"]),
    ],
)
def test_import_checks_every_row_first_and_writes_nothing_on_error(
    db: str, tmp_path: Path, name: str, content: str, problems: list[str]
) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    output = run_failing("rules", "import", str(path), "--db-url", db)
    for problem in problems:
        assert problem in output
    engine = create_db_engine(db)
    migrate(engine)
    try:
        assert OrderStore(engine).rules.rules_version() == 0, "the good rows were not written either"
    finally:
        engine.dispose()


def test_the_formats_escape_what_they_must() -> None:
    from service.store import RuleRecord

    rule = RuleRecord(1, None, None, None, 'a "q" \\ \x01 ctrl', "final", None, 'two\nlines, quoted "x"', None, "t")  # type: ignore[arg-type]
    for fmt, text in (("toml", to_toml([rule])), ("csv", to_csv([rule]))):
        (draft,) = parse_rules(text, fmt)  # type: ignore[arg-type]
        assert (draft.message_contains, draft.reason) == (rule.message_contains, rule.reason), fmt
