"""The simulator's ledger: idempotent completion, double completion made visible, atomic persistence."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from service.simulator.ledger import Ledger, LedgerFileError, atomic_write


def test_same_key_completes_once_and_replays_the_same_data() -> None:
    async def main() -> Ledger:
        ledger = Ledger()
        first = await ledger.complete("O1:pay", "O1:pay", "O1", "pay")
        second = await ledger.complete("O1:pay", "O1:pay", "O1", "pay")
        assert first is second
        assert ledger.replay("O1:pay") == first
        assert ledger.completed("O1:pay") == first
        return ledger

    ledger = asyncio.run(main())
    assert ledger.completions == {"O1:pay": 1}
    assert ledger.replay("other") is None
    assert ledger.replay(None) is None


def test_without_idempotency_key_an_order_is_completed_again() -> None:
    async def main() -> Ledger:
        ledger = Ledger()
        await ledger.complete("O1:pay", None, "O1", "pay")
        await ledger.complete("O1:pay", None, "O1", "pay")
        return ledger

    assert asyncio.run(main()).completions == {"O1:pay": 2}


def test_calls_are_counted_per_key() -> None:
    ledger = Ledger()
    assert [ledger.record_call("a"), ledger.record_call("b"), ledger.record_call("a")] == [1, 1, 2]
    assert ledger.snapshot() == {"completions": {}, "calls": 3, "calls_by_key": {"a": 2, "b": 1}, "orders": 0}


def test_state_file_round_trip_and_reset(tmp_path: Path) -> None:
    state = tmp_path / "sub" / "ledger.json"

    async def fill() -> dict[str, object]:
        ledger = Ledger.open(state)
        ledger.record_call("O1:pay")
        return await ledger.complete("O1:pay", "O1:pay", "O1", "pay")

    data = asyncio.run(fill())
    reopened = Ledger.open(state)
    assert reopened.completed("O1:pay") == data
    assert reopened.replay("O1:pay") == data
    assert reopened.snapshot()["calls_by_key"] == {"O1:pay": 1}
    asyncio.run(reopened.reset())
    assert Ledger.open(state).snapshot() == {"completions": {}, "calls": 0, "calls_by_key": {}, "orders": 0}
    assert [p.name for p in state.parent.iterdir()] == ["ledger.json"]  # no temp file left behind


@pytest.mark.parametrize(
    "content",
    ["not json", "[]", '{"version": 99}', '{"version": 1, "orders": {}}', '{"version": 1, "orders": 3}'],
)
def test_unreadable_state_file_is_refused(tmp_path: Path, content: str) -> None:
    state = tmp_path / "ledger.json"
    state.write_text(content)
    with pytest.raises(LedgerFileError, match=str(state)):
        Ledger.open(state)


def test_atomic_write_replaces_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "f.json"
    atomic_write(path, json.dumps({"a": 1}).encode())
    atomic_write(path, b"{}")
    assert path.read_bytes() == b"{}"
    assert list(tmp_path.iterdir()) == [path]
