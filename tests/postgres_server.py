"""A throwaway PostgreSQL server for the run-store tests: initdb in a temporary folder, started on
a free local port, stopped and removed afterwards (Debian's postgresql package).

Without the server binaries the tests that need it skip, unless WORKBENCH_REQUIRE_POSTGRES=1
(set by `.ci/run` under CI): then they fail, so CI can't pass without having run them.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

USER = "workbench"


def server_bin() -> Path | None:
    """The folder holding initdb and pg_ctl: WORKBENCH_POSTGRES_BIN, else Debian's newest."""
    named = os.environ.get("WORKBENCH_POSTGRES_BIN")
    candidates = [named] if named else sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                                              key=lambda p: int(Path(p).parent.name), reverse=True)
    return next((Path(c) for c in candidates if c and (Path(c) / "initdb").is_file()), None)


def require_postgres() -> bool:
    return os.environ.get("WORKBENCH_REQUIRE_POSTGRES", "") == "1"


def skip_or_fail(reason: str) -> None:
    if require_postgres():
        pytest.fail(f"{reason} (WORKBENCH_REQUIRE_POSTGRES=1 forbids skipping)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def temporary_postgres() -> Iterator[str]:
    """A SQLAlchemy URL of a fresh PostgreSQL server, running until the block ends."""
    binaries = server_bin()
    if binaries is None:
        skip_or_fail("PostgreSQL's server binaries are not installed (apt-get install postgresql)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        skip_or_fail("psycopg is not installed (pip install -r requirements.txt)")
    # postgres refuses to run as root: as root, the server runs as the postgres user.
    as_server = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    folder = Path(tempfile.mkdtemp(prefix="workbench-pg-"))
    data = folder / "data"
    port = free_port()
    if as_server:
        shutil.chown(folder, "postgres", "postgres")

    def run(*command: str) -> None:
        done = subprocess.run([*as_server, *command], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{command[0]} failed: {done.stdout}\n{done.stderr}")

    try:
        run(str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", USER, "-E", "UTF8")
        run(str(binaries / "pg_ctl"), "-D", str(data), "-w", "-l", str(folder / "log"),
            "-o", f"-k {folder} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
        try:
            yield f"postgresql+psycopg://{USER}@127.0.0.1:{port}/postgres"
        finally:
            run(str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
