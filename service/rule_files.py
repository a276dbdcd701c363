"""Rules as files, for review in a pull request: `asyncgate rules export` writes them, `rules import` reads them.

TOML (one `[[rules]]` table per rule; a null field is left out) or CSV (a header row with the seven
fields; an empty cell is null). Only what an operator sets is written, in rule_id order, with no
timestamps or hit counts: exporting the same rules always gives the same bytes, so a diff shows only
real changes, and export → import → export is byte for byte the same. Reading validates every row
(service.rules.RuleDraft) before anything is written; `RuleFileError` lists every bad row and field.
"""

from __future__ import annotations

import csv
import io
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import ValidationError

from service.errors import AsyncgateError
from service.rules import RuleDraft
from service.store import RuleRecord
from service.store.records import RULE_FIELDS

Format = Literal["toml", "csv"]
FORMATS: Final = ("toml", "csv")
HEADER: Final = "# asyncgate operators' rules: `asyncgate rules import FILE` applies them (docs/contract.md §7)\n"


class RuleFileError(AsyncgateError, ValueError):
    """{where}: {problem}

    A rules file that cannot be read or holds invalid rows; the message names each row and field.
    """


def format_of(path: Path) -> Format:
    suffix = path.suffix.lower().lstrip(".")
    if suffix == "toml":
        return "toml"
    if suffix == "csv":
        return "csv"
    raise RuleFileError(where=path, problem="a rules file ends in .toml or .csv")


def _toml_string(text: str) -> str:
    out = ['"']
    for char in text:
        if char == '"':
            out.append('\\"')
        elif char == "\\":
            out.append("\\\\")
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def to_toml(rules: Iterable[RuleRecord]) -> str:
    blocks = [HEADER]
    for rule in sorted(rules, key=lambda r: r.rule_id):
        lines = ["[[rules]]"]
        for name in RULE_FIELDS:
            value = getattr(rule, name)
            if value is not None:
                lines.append(f"{name} = {_toml_string(value)}")
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def to_csv(rules: Iterable[RuleRecord]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(RULE_FIELDS)
    for rule in sorted(rules, key=lambda r: r.rule_id):
        writer.writerow(["" if getattr(rule, name) is None else getattr(rule, name) for name in RULE_FIELDS])
    return buffer.getvalue()


def render(rules: Iterable[RuleRecord], fmt: Format) -> str:
    return to_toml(rules) if fmt == "toml" else to_csv(rules)


def _rows(text: str, fmt: Format, where: str) -> list[Any]:
    if fmt == "toml":
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise RuleFileError(where=where, problem=f"not valid TOML: {exc}") from exc
        unknown = sorted(set(document) - {"rules"})
        if unknown:
            raise RuleFileError(
                where=where, problem=f"unknown top-level key {unknown[0]!r}; rules are [[rules]] tables"
            )
        rows = document.get("rules", [])
        if not isinstance(rows, list):
            raise RuleFileError(where=where, problem="'rules' must be an array of tables ([[rules]])")
        return rows
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    unknown = [name for name in header if name not in RULE_FIELDS]
    if unknown:
        raise RuleFileError(where=where, problem=f"unknown column {unknown[0]!r}; columns are {', '.join(RULE_FIELDS)}")
    if "decision" not in header or "reason" not in header:
        raise RuleFileError(where=where, problem="the header needs at least the columns decision and reason")
    rows = []
    for row in reader:
        if None in row:  # more cells than the header has columns
            rows.append({"_extra_cells": row.pop(None)} | row)
        else:
            rows.append({k: (v if v != "" else None) for k, v in row.items()})
    return rows


def parse_rules(text: str, fmt: Format, *, where: str = "rules file") -> list[RuleDraft]:
    """Every row validated; RuleFileError naming each bad row (1 = the first rule) and field."""
    drafts: list[RuleDraft] = []
    problems: list[str] = []
    for number, row in enumerate(_rows(text, fmt, where), start=1):
        if not isinstance(row, dict):
            problems.append(f"row {number}: not a table of fields")
            continue
        if "_extra_cells" in row:
            problems.append(f"row {number}: more cells than the header has columns")
            continue
        try:
            drafts.append(RuleDraft.model_validate(row))
        except ValidationError as exc:
            for error in exc.errors():
                field = ".".join(str(part) for part in error["loc"]) or "row"
                problems.append(f"row {number}, field {field}: {error['msg']}")
    if problems:
        raise RuleFileError(
            where=where, problem=f"nothing imported, {len(problems)} problem(s):\n  " + "\n  ".join(problems)
        )
    return drafts


def read_rules_file(path: Path) -> list[RuleDraft]:
    fmt = format_of(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleFileError(where=path, problem=f"cannot be read: {exc}") from exc
    return parse_rules(text, fmt, where=str(path))
