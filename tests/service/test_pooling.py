"""One engine per process, sized from settings (PostgreSQL): no request opens an engine."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

import service.runtime
from tests.service.conftest import Service


def test_one_engine_sized_from_settings_serves_every_request(
    start_service: Callable[..., Service], monkeypatch: pytest.MonkeyPatch, db_url: str
) -> None:
    made: list[dict[str, Any]] = []
    original = service.runtime.create_db_engine

    def counting(url: str, **kwargs: Any) -> sa.Engine:
        made.append(kwargs)
        return original(url, **kwargs)

    monkeypatch.setattr(service.runtime, "create_db_engine", counting)
    svc = start_service(db_url=db_url, db_pool_size=3, db_max_overflow=2)
    for n in range(20):
        assert svc.process(f"POOL-{n}").status_code == 200
        assert svc.client.get(f"/orders/POOL-{n}").status_code == 200
    assert svc.client.get("/readyz").status_code == 200
    assert made == [{"pool_size": 3, "max_overflow": 2}], "one engine, opened in the lifespan"
    engine: sa.Engine = svc.app.state.store._engine
    if engine.dialect.name == "postgresql":  # SQLite: one connection, writers queue on it (store/engine.py)
        assert engine.pool.size() == 3  # type: ignore[attr-defined]
    assert engine.pool.checkedout() == 0, "every connection went back to the pool"  # type: ignore[attr-defined]
