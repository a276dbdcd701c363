"""A throwaway PostgreSQL cluster for tests that stop and restart the database server.

`throwaway_cluster()` runs Debian's initdb/pg_ctl (as the `postgres` user when we are root, since
initdb refuses root) on a free port with its own socket folder, fsync off (synchronous_commit on,
so an acknowledged commit survives a server crash), and yields a PgCluster
with `url`, `restart()`, `stop()` and `start()`; the cluster is stopped and deleted afterwards. The
shared server at 127.0.0.1:5432 is never touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PG_LIB = Path("/usr/lib/postgresql")


def pg_bindir() -> Path | None:
    """The newest installed PostgreSQL's bin folder (with initdb), or None."""
    candidates = sorted(PG_LIB.glob("*/bin/initdb"), key=lambda p: [int(x) for x in p.parts[-3].split(".")])
    return candidates[-1].parent if candidates else None


def _as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@dataclass
class PgCluster:
    bindir: Path
    folder: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/test"

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def _pg_ctl(self, *args: str) -> None:
        argv = [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.folder / "log"), "-w", *args]
        subprocess.run(_as_postgres(argv), check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        # fsync off is safe against what the tests do (a server crash, not a machine crash): the OS keeps
        # the written WAL. synchronous_commit stays on: a commit is acknowledged only once its WAL is written.
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.folder} -c fsync=off "
            "-c full_page_writes=off -c max_connections=200"
        )
        self._pg_ctl("-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: `fast` ends sessions cleanly, `immediate` is a crash (recovery on start)."""
        self._pg_ctl("-m", mode, "stop")

    def log(self) -> str:
        path = self.folder / "log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextmanager
def throwaway_cluster(port: int) -> Iterator[PgCluster]:
    """initdb + start on `port` with a `test` database; stopped and removed afterwards.

    RuntimeError when PostgreSQL's binaries are not installed.
    """
    bindir = pg_bindir()
    if bindir is None:
        raise RuntimeError(f"no PostgreSQL binaries under {PG_LIB} (apt-get install postgresql)")
    folder = Path(tempfile.mkdtemp(prefix="asyncgate-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    cluster = PgCluster(bindir, folder, port)
    try:
        initdb = [str(bindir / "initdb"), "-D", str(cluster.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
        subprocess.run(_as_postgres([*initdb, "--no-locale", "--no-sync"]), check=True, capture_output=True, timeout=60)
        cluster.start()
        createdb = [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "test"]
        subprocess.run(createdb, check=True, capture_output=True, timeout=30)
        yield cluster
    finally:
        try:
            cluster.stop("immediate")
        except (subprocess.SubprocessError, OSError):
            pass  # not running (it failed to start, or a test left it stopped)
        shutil.rmtree(folder, ignore_errors=True)
