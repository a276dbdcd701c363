"""The simulated insurer's ledger: which orders it completed and how often, optionally persisted to a file.

An order is `{order_id}:{operation}`. Completing an order records its success data and counts the
completion; the count of a correctly idempotent client's orders stays 1 forever, so a count of 2
proves an order was completed twice. Calls are counted per Idempotency-Key (the order key when a
request carries none). Idempotency keys seen on a completing call map to the order they completed,
so a replay with the same key returns the same data without completing again.

With a state file, every completion (and reset) is written before the answer leaves: the file is
replaced atomically (temp file, fsync, rename), so a restart on the same file sees every order
that a client was told was completed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from service.errors import AsyncgateError

STATE_VERSION: Final = 1


class LedgerFileError(AsyncgateError, ValueError):
    """{where}: {problem}

    The simulator's state file exists but cannot be read as a ledger.
    """


@dataclass
class Ledger:
    """Orders completed, completions per order, calls per key; JSON-serialisable state."""

    state_file: Path | None = None
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)  # order key -> success data
    completions: dict[str, int] = field(default_factory=dict)  # order key -> times completed
    idempotency: dict[str, str] = field(default_factory=dict)  # Idempotency-Key -> order key
    calls: int = 0
    calls_by_key: dict[str, int] = field(default_factory=dict)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    @classmethod
    def open(cls, state_file: Path | None) -> Ledger:
        """An empty ledger, or the one saved in `state_file` when that file exists."""
        ledger = cls(state_file=state_file)
        if state_file is None or not state_file.exists():
            return ledger
        try:
            doc = json.loads(state_file.read_text(encoding="utf-8"))
            if doc.get("version") != STATE_VERSION:
                raise LedgerFileError(where=state_file, problem=f"unsupported ledger version {doc.get('version')!r}")
            ledger.orders = {str(k): dict(v) for k, v in doc["orders"].items()}
            ledger.completions = {str(k): int(v) for k, v in doc["completions"].items()}
            ledger.idempotency = {str(k): str(v) for k, v in doc["idempotency"].items()}
            ledger.calls = int(doc["calls"])
            ledger.calls_by_key = {str(k): int(v) for k, v in doc["calls_by_key"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            if isinstance(exc, LedgerFileError):
                raise
            raise LedgerFileError(where=state_file, problem=f"not a simulator ledger: {exc!r}") from exc
        return ledger

    def record_call(self, key: str) -> int:
        """Count one call for `key`; returns its number for that key (1 for the first)."""
        self.calls += 1
        count = self.calls_by_key.get(key, 0) + 1
        self.calls_by_key[key] = count
        return count

    def replay(self, idempotency_key: str | None) -> dict[str, Any] | None:
        """The success data of the order this key already completed, else None."""
        if idempotency_key is None:
            return None
        order_key = self.idempotency.get(idempotency_key)
        return None if order_key is None else self.orders.get(order_key)

    def completed(self, order_key: str) -> dict[str, Any] | None:
        """The success data of a completed order, else None."""
        return self.orders.get(order_key)

    async def complete(
        self, order_key: str, idempotency_key: str | None, order_id: str, operation: str
    ) -> dict[str, Any]:
        """Complete the order (unless this key already did) and persist; returns its success data.

        Without an Idempotency-Key the simulated insurer cannot tell a retry from a new request: it
        completes the order again and the completion count shows it.
        """
        existing = self.replay(idempotency_key)
        if existing is not None:
            return existing
        data = self.orders.get(order_key) or success_data(order_id, operation)
        self.orders[order_key] = data
        self.completions[order_key] = self.completions.get(order_key, 0) + 1
        if idempotency_key is not None:
            self.idempotency[idempotency_key] = order_key
        await self.save()
        return data

    async def reset(self) -> None:
        """Forget every order and call (and persist the empty ledger)."""
        self.orders.clear()
        self.completions.clear()
        self.idempotency.clear()
        self.calls = 0
        self.calls_by_key.clear()
        await self.save()

    def snapshot(self) -> dict[str, Any]:
        """What GET /_sim/ledger shows."""
        return {
            "completions": dict(self.completions),
            "calls": self.calls,
            "calls_by_key": dict(self.calls_by_key),
            "orders": len(self.orders),
        }

    async def save(self) -> None:
        """Write the whole ledger to the state file, atomically; no-op without a state file."""
        if self.state_file is None:
            return
        async with self._lock:  # snapshot under the lock: writes land in the order they were taken
            data = json.dumps(self._state(), ensure_ascii=False, sort_keys=True).encode("utf-8")
            await asyncio.to_thread(atomic_write, self.state_file, data)

    def _state(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "orders": self.orders,
            "completions": self.completions,
            "idempotency": self.idempotency,
            "calls": self.calls,
            "calls_by_key": self.calls_by_key,
        }


def success_data(order_id: str, operation: str) -> dict[str, Any]:
    """The `data` of a completed order: stable references derived from the order key."""
    digest = hashlib.sha256(f"{order_id}:{operation}".encode()).hexdigest()
    return {
        "order_id": order_id,
        "operation": operation,
        "status": "completed",
        "reference": f"SIM{digest[:16].upper()}",
        "policy_no": f"P{int(digest[16:30], 16) % 10**14:014d}",
        "completed_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
    }


def atomic_write(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so a reader (or a crash) sees either the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
