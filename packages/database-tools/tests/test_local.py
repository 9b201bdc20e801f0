"""The embedded development server: concurrent starts, status, stop, restart on the same data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg

from database.connect import conninfo
from database_tools.embedded import LocalServer

_UP = (
    "import sys; from pathlib import Path; from database_tools.embedded import LocalServer;"
    " print(LocalServer(Path(sys.argv[1]), preferred_port=0).up())"
)


def test_concurrent_starts_share_one_server(tmp_path: Path) -> None:
    folder = tmp_path / "db"
    starters = [
        subprocess.Popen(
            [sys.executable, "-c", _UP, str(folder)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=120)[0].strip() for p in starters]
    server = LocalServer(folder)
    try:
        assert [p.returncode for p in starters] == [0, 0, 0]
        assert len(set(outputs)) == 1, outputs  # all three got the same server
        status = server.status()
        assert status.running and status.initialized
        url = status.url()
        assert url is not None and str(url.port) in outputs[0]
        with psycopg.connect(conninfo(url)) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
    finally:
        assert server.down() is True
    stopped = server.status()
    assert not stopped.running and stopped.url() is None
    assert server.down() is False  # stopping twice is not an error


def test_restart_reuses_the_data_directory(tmp_path: Path) -> None:
    server = LocalServer(tmp_path / "db", preferred_port=0)
    url = server.up()
    try:
        with psycopg.connect(conninfo(url), autocommit=True) as conn:
            conn.execute("create table kept (n int)")
        server.down()
        url = server.up()
        with psycopg.connect(conninfo(url)) as conn:
            assert conn.execute("select count(*) from kept").fetchone() == (0,)
    finally:
        server.down()
