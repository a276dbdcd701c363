"""Open the database named by a URL (SQLite or PostgreSQL) and bring its schema to the latest revision.

`create_db_engine` opens nothing by itself (connections are made on first use), except that it
creates the parent folder of an SQLite file. `migrate` applies the Alembic revisions under
`service/store/migrations` up to head, in one transaction, serialised between processes.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from service.store.errors import StoreUnavailable

MIGRATIONS_DIR: Final = Path(__file__).with_name("migrations")
#: Key of the PostgreSQL advisory lock that serialises concurrent `migrate` calls ("asyncgat").
MIGRATION_LOCK_KEY: Final = 0x6173796E63676174
SQLITE_BUSY_TIMEOUT_MS: Final = 5000
#: How long a migrating process waits for another one that holds the SQLite write lock.
log = logging.getLogger(__name__)

MIGRATION_WAIT_MS: Final = 120_000
#: How long a starting process waits for an unreachable database (a restart, a failover) before it
#: gives up: a worker or a replica started during a PostgreSQL restart waits for it instead of dying.
UNREACHABLE_WAIT_S: Final = 30.0
PG_CONNECT_TIMEOUT_S: Final = 3
#: Alembic's `context` and `op` are process-wide proxies: one migration at a time per process.
_MIGRATING = threading.Lock()


def normalize_db_url(url: str) -> str:
    """`postgres(ql)://` → `postgresql+psycopg://`; `sqlite:///PATH` unchanged; anything else: ValueError."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"database URL {url!r} has no scheme: use sqlite:///PATH or postgresql://...")
    if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        return f"postgresql+psycopg://{rest}"
    if scheme == "sqlite":
        if not rest.startswith("/") or rest == "/":
            raise ValueError(f"SQLite URL {url!r} must name a file: sqlite:///PATH")
        return url
    raise ValueError(f"unsupported database URL scheme {scheme!r}: use sqlite:///PATH or postgresql://...")


def create_db_engine(
    url: str, *, pool_size: int = 10, max_overflow: int = 10, pool_timeout_s: float = 5.0
) -> sa.Engine:
    """An Engine for `url`, tuned per dialect; raises StoreUnavailable if an SQLite folder cannot be made.

    SQLite: WAL, synchronous=NORMAL, busy_timeout, foreign keys, and `BEGIN IMMEDIATE` for every
    transaction so that concurrent writers queue on the lock instead of failing with SQLITE_BUSY;
    one pooled connection per process (the pool settings apply to PostgreSQL only), so threads of
    one process queue on the pool rather than in SQLite's sleeping busy handler.
    PostgreSQL: psycopg 3, a sized pool with pre-ping, and a short connect timeout.
    """
    parsed = make_url(normalize_db_url(url))
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, pool_size=pool_size, max_overflow=max_overflow, timeout=pool_timeout_s)
    return sa.create_engine(
        parsed,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout_s,
        pool_pre_ping=True,
        connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S},
    )


def create_async_db_engine(
    url: str, *, pool_size: int = 10, max_overflow: int = 10, pool_timeout_s: float = 5.0
) -> AsyncEngine | None:
    """The async engine of the durable path for a PostgreSQL `url`; None for SQLite, whose steps run
    in worker threads on the sync engine (an async SQLite driver is a thread per connection anyway,
    and would hop once per statement).

    asyncpg (its protocol parser is compiled; psycopg 3's async path measured slower here), a sized
    pool and a short connect timeout. No pre-ping: asyncpg's costs three round trips (BEGIN, ";",
    ROLLBACK) per checkout, 13% of /process's CPU under py-spy; a connection that a database restart
    broke fails its statement instead (StoreUnavailable: a 503 before anything is written, or a
    lease that runs out), and SQLAlchemy then drops every pooled connection at once.
    """
    parsed = make_url(normalize_db_url(url))
    if parsed.get_backend_name() == "sqlite":
        return None
    plain, settings = _asyncpg_url(parsed)
    return create_async_engine(
        plain.set(drivername="postgresql+asyncpg"),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout_s,
        connect_args={"timeout": PG_CONNECT_TIMEOUT_S, "server_settings": settings},
    )


def asyncpg_connect_args(url: sa.URL) -> tuple[str, dict[str, str]]:
    """asyncpg's DSN and server settings for a PostgreSQL URL (see `_asyncpg_url`)."""
    plain, settings = _asyncpg_url(url)
    return plain.render_as_string(hide_password=False), settings


def _asyncpg_url(url: sa.URL) -> tuple[sa.URL, dict[str, str]]:
    """The URL as asyncpg takes it, and its server settings: libpq's `options=-cNAME=VALUE` (how tests
    and benchmarks pick a schema) becomes `server_settings`; `connect_timeout` is dropped."""
    query = dict(url.query)
    settings: dict[str, str] = {}
    options = query.pop("options", None)
    for option in (options if isinstance(options, tuple) else (options,)) if options else ():
        for part in option.split():
            name, _, value = part.removeprefix("-c").partition("=")
            if not value:
                raise ValueError(f"database URL option {part!r} is not of the form -cNAME=VALUE")
            settings[name] = value
    query.pop("connect_timeout", None)
    return url.set(drivername="postgresql", query=query), settings


def _sqlite_engine(parsed: sa.URL, *, pool_size: int, max_overflow: int, timeout: float) -> sa.Engine:
    if parsed.database and parsed.database != ":memory:":
        folder = Path(parsed.database).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreUnavailable(f"cannot create the SQLite folder {folder}: {error}") from error
    # One connection per process: every transaction here is BEGIN IMMEDIATE, so only one can run at
    # a time anyway; with more connections the others wait in SQLite's busy handler, which sleeps
    # 1 → 100 ms between tries (measured: /process p99 2.2 s at 32 connections), whereas threads
    # waiting for the pool's one connection are woken the moment it is returned (p99 0.4 s).
    del pool_size, max_overflow
    engine = sa.create_engine(
        parsed,
        pool_size=1,
        max_overflow=0,
        pool_timeout=max(timeout, SQLITE_BUSY_TIMEOUT_MS / 1000),
        connect_args={"check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # the driver must not open transactions itself
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: sa.Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def alembic_config() -> Config:
    """The Alembic configuration, built in code (no alembic.ini at run time)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def _busy_timeout(connection: sa.Connection, milliseconds: int) -> None:
    """Set SQLite's busy timeout on the driver connection, outside any transaction."""
    driver = connection.connection.driver_connection
    if driver is not None:
        driver.execute(f"PRAGMA busy_timeout = {int(milliseconds)}")


def migrate(engine: sa.Engine, *, unreachable_wait_s: float = UNREACHABLE_WAIT_S) -> None:
    """Apply every pending migration up to head; a no-op when up to date; safe from several processes at once.

    Runs in one transaction. On PostgreSQL it first takes a transaction-scoped advisory lock, so a
    second process waits and then finds the schema at head; on SQLite `BEGIN IMMEDIATE` does the same.
    Within one process, calls are serialised by a lock (Alembic's proxies are global). A PostgreSQL
    server that refuses connections is waited for up to `unreachable_wait_s` (then StoreUnavailable).
    """
    started = time.monotonic()
    warned = False
    while True:
        try:
            _migrate_once(engine)
            return
        except StoreUnavailable as error:
            waited = time.monotonic() - started
            if engine.dialect.name == "sqlite":
                # SQLite can refuse at once, without its busy handler, when two processes set up a new
                # file together (journal mode switch, lock upgrade); the other process is migrating.
                if "database is locked" not in str(error) or waited > MIGRATION_WAIT_MS / 1000:
                    raise
                time.sleep(0.2)
                continue
            if waited + 0.5 > unreachable_wait_s:
                raise
            if not warned:
                log.warning("database unreachable, waiting up to %.0f s: %s", unreachable_wait_s, error)
                warned = True
            time.sleep(0.5)


def _migrate_once(engine: sa.Engine) -> None:
    config = alembic_config()
    try:
        with _MIGRATING, engine.connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            if sqlite:  # another process may hold the write lock for a whole migration: wait longer
                _busy_timeout(connection, MIGRATION_WAIT_MS)
            try:
                with connection.begin():
                    if connection.dialect.name == "postgresql":
                        connection.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY)))
                    config.attributes["connection"] = connection
                    command.upgrade(config, "head")
            finally:
                if sqlite:
                    _busy_timeout(connection, SQLITE_BUSY_TIMEOUT_MS)
    except (exc.OperationalError, exc.InterfaceError) as error:
        raise StoreUnavailable(f"cannot migrate the database: {error.orig or error}") from error
