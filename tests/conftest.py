"""Test-wide fixtures: a clean ASYNCGATE_* environment and a PostgreSQL database when one is reachable.

PostgreSQL: `ASYNCGATE_TEST_PG_URL` if set, else 127.0.0.1:5432 database `test` (trust auth). When no
server answers, tests that need it skip with the reason, unless CI=true or REQUIRE_POSTGRES=1, which
turn the skip into a failure (CI must never pass by skipping them).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator

import pytest

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def pytest_configure(config: pytest.Config) -> None:
    """The coverage floor ([tool.coverage.report] fail_under) is for the whole suite, as the README's
    `.venv/bin/pytest` runs it: a run of chosen tests (paths, -k, -m) is not held to it (add
    --cov-report=term to see its own figures)."""
    cov = config.pluginmanager.getplugin("_cov")
    chosen = config.args_source is not pytest.Config.ArgsSource.TESTPATHS
    if cov is not None and (chosen or config.option.keyword or config.option.markexpr):
        cov.options.cov_fail_under = None


@pytest.fixture(autouse=True)
def _clean_asyncgate_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's ASYNCGATE_* settings; exploration is off unless a test turns it on
    (it would send a share of final failures async, see docs/learning-loop.md)."""
    for key in list(os.environ):
        if key.startswith("ASYNCGATE_") and key != "ASYNCGATE_TEST_PG_URL":
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("ASYNCGATE_EXPLORATION_RATE", "0")


def _postgres_required() -> bool:
    return os.environ.get("CI", "").lower() == "true" or os.environ.get("REQUIRE_POSTGRES") == "1"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    """URL of a PostgreSQL server's `test` database, or skip (fail under CI) when none answers."""
    url = os.environ.get("ASYNCGATE_TEST_PG_URL", DEFAULT_PG_URL)
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if not _reachable(parsed.host or "127.0.0.1", parsed.port or 5432):
        reason = f"PostgreSQL not reachable at {parsed.host}:{parsed.port} (set ASYNCGATE_TEST_PG_URL)"
        if _postgres_required():
            pytest.fail(f"{reason}; CI requires PostgreSQL tests to run")
        pytest.skip(reason)
    return url


@pytest.fixture
def pg_url(pg_server_url: str) -> Iterator[str]:
    """A fresh, empty schema in the `test` database for one test, dropped afterwards.

    The returned URL carries `options=-csearch_path=<schema>` so every connection made from it
    (including in subprocesses) lands in the test's own schema.
    """
    import sqlalchemy as sa

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin_url = pg_server_url.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in pg_server_url else "?"
    try:
        yield f"{pg_server_url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()
