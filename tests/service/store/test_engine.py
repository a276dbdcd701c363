"""Engine and migrations: URL handling, per-dialect tuning, idempotent and concurrent migrate, outages."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from service.store import OrderStore, StoreUnavailable, create_db_engine, migrate, normalize_db_url
from service.store.engine import alembic_config
from service.store.tables import metadata, orders
from tests.service.store.conftest import T0, count, reserve

#: The latest migration: a migrated database records exactly this revision.
HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://postgres@127.0.0.1:5432/test", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
        ("postgres://u:p@db:5433/x?sslmode=require", "postgresql+psycopg://u:p@db:5433/x?sslmode=require"),
        ("postgresql+psycopg://u@h/d", "postgresql+psycopg://u@h/d"),
        ("sqlite:////var/lib/asyncgate/db.sqlite", "sqlite:////var/lib/asyncgate/db.sqlite"),
        ("sqlite:///relative/db.sqlite", "sqlite:///relative/db.sqlite"),
    ],
)
def test_normalize_db_url(url: str, expected: str) -> None:
    assert normalize_db_url(url) == expected


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("mysql://root@localhost/db", "'mysql'"),
        ("postgresql+asyncpg://u@h/d", "'postgresql+asyncpg'"),
        ("/just/a/path.db", "no scheme"),
        ("sqlite://", "must name a file"),
        ("sqlite:///", "must name a file"),
    ],
)
def test_normalize_db_url_rejects_other_schemes(url: str, named: str) -> None:
    with pytest.raises(ValueError, match=re.escape(named)):
        normalize_db_url(url)


def test_create_db_engine_opens_nothing(tmp_path: Path) -> None:
    path = tmp_path / "state" / "db.sqlite"
    engine = create_db_engine(f"sqlite:///{path}")
    assert path.parent.is_dir()
    assert not path.exists()
    engine.dispose()
    create_db_engine("postgresql://postgres@127.0.0.1:1/test").dispose()  # unreachable, yet no error


def test_migrate_twice_is_a_no_op(engine: sa.Engine, store: OrderStore) -> None:
    reserve(store, "P1")
    migrate(engine)
    inspector = sa.inspect(engine)
    assert {"orders", "attempts", "transitions", "alembic_version"} <= set(inspector.get_table_names())
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all() == [HEAD]
    assert count(engine, orders) == 1
    assert store.get("P1") is not None


def test_migrated_schema_has_the_claim_and_listing_indexes(engine: sa.Engine) -> None:
    indexes = {ix["name"]: ix for ix in sa.inspect(engine).get_indexes("orders")}
    assert indexes["ix_orders_created"]["column_names"] == ["created_at", "id"]
    assert "ix_orders_insurer_state" not in indexes, "dropped by 0007: no query reads it"
    failed = indexes["ix_orders_failed_updated"]
    assert failed["column_names"] == ["updated_at"]
    if engine.dialect.name == "postgresql":
        assert "first_failure_at IS NOT NULL" in str(failed["dialect_options"]["postgresql_where"])
    if engine.dialect.name == "postgresql":
        due = indexes["ix_orders_due"]
        assert due["column_names"] == ["next_attempt_at"]
        assert "ASYNC_PROCESSING" in str(due["dialect_options"]["postgresql_where"])
    else:
        assert indexes["ix_orders_state_due"]["column_names"] == ["state", "next_attempt_at"]
    for table in ("attempts", "transitions"):
        assert [ix["column_names"] for ix in sa.inspect(engine).get_indexes(table)] == [["order_pk"]]


def test_migrations_match_the_table_definitions(engine: sa.Engine) -> None:
    # tables.py declares both due-indexes with ddl_if(dialect=...), which autogenerate ignores.
    other_dialects_index = {"postgresql": "ix_orders_state_due", "sqlite": "ix_orders_due"}[engine.dialect.name]
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = compare_metadata(context, metadata)
    assert [d for d in diffs if not (d[0] == "add_index" and d[1].name == other_dialects_index)] == []


def test_sqlite_connections_are_tuned(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path}/db.sqlite")
    with engine.connect() as conn:
        pragma = {
            name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
        }
    engine.dispose()
    assert pragma == {"journal_mode": "wal", "synchronous": 1, "busy_timeout": 5000, "foreign_keys": 1}


def test_sqlite_transactions_take_the_write_lock_at_begin(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    engine = create_db_engine(f"sqlite:///{path}")
    migrate(engine)
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        with engine.begin() as conn:
            conn.execute(sa.select(sa.func.count()).select_from(orders)).scalar_one()  # a read only
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        other.execute("BEGIN IMMEDIATE")  # free again once the engine's transaction ended
        other.execute("ROLLBACK")
    finally:
        other.close()
        engine.dispose()


@pytest.mark.postgres
def test_concurrent_migrate_on_postgresql(pg_url: str) -> None:
    engines = [create_db_engine(pg_url) for _ in range(2)]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(engine: sa.Engine) -> None:
        try:
            barrier.wait()
            migrate(engine)
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(e,)) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    with engines[0].connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all() == [HEAD]
    OrderStore(engines[0]).ping()
    for engine in engines:
        engine.dispose()


_MIGRATE_ON_GO = """
import sys
from service.store import create_db_engine, migrate
engine = create_db_engine(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
migrate(engine)
print("migrated", flush=True)
"""


def test_concurrent_migrate_from_two_processes(db_url: str) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _MIGRATE_ON_GO, db_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        for proc in procs:  # both start migrating at once
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outcomes = [proc.communicate(timeout=60) for proc in procs]
    finally:
        for proc in procs:
            proc.kill() if proc.poll() is None else None
    assert [proc.returncode for proc in procs] == [0, 0], outcomes
    assert [out for out, _ in outcomes] == ["migrated\n", "migrated\n"]
    engine = create_db_engine(db_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all() == [HEAD]
    engine.dispose()


def test_unreachable_postgresql_is_store_unavailable() -> None:
    engine = create_db_engine("postgresql://postgres@127.0.0.1:1/test")
    store = OrderStore(engine)
    with pytest.raises(StoreUnavailable, match="Database unavailable") as caught:
        store.ping()
    assert isinstance(caught.value.__cause__, sa.exc.OperationalError)
    with pytest.raises(StoreUnavailable):
        store.reserve("P1", "acme", "pay", {}, "h", lease_owner="api", lease_s=5, now=T0)
    with pytest.raises(StoreUnavailable):
        store.list_orders()
    with pytest.raises(StoreUnavailable, match="cannot migrate"):
        migrate(engine, unreachable_wait_s=0)


def test_a_starting_process_waits_for_postgresql_then_gives_up() -> None:
    import time

    engine = create_db_engine("postgresql://postgres@127.0.0.1:1/test")
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="cannot migrate"):
        migrate(engine, unreachable_wait_s=1.5)
    assert 1.0 <= time.monotonic() - started < 10  # it retried for about the wait, then gave up
    engine.dispose()


def test_sqlite_folder_that_cannot_be_created_is_store_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(StoreUnavailable, match="cannot create the SQLite folder") as caught:
        create_db_engine(f"sqlite:///{blocker}/db.sqlite")
    assert isinstance(caught.value.__cause__, OSError)


def test_sqlite_file_that_cannot_be_opened_is_store_unavailable(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path}")  # a folder, not a database file
    with pytest.raises(StoreUnavailable, match="unable to open database file"):
        OrderStore(engine).ping()
    with pytest.raises(StoreUnavailable):
        migrate(engine)
    engine.dispose()
