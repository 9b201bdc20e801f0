"""The embedded development server: concurrent starts, status, stop, restart on the same data,
and the same port after restarts and crashes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from sqlalchemy.engine import URL

from database.connect import conninfo, display_url
from database_tools.embedded import LocalServer, _is_postmaster

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


def _connections(url: URL, n: int) -> list[psycopg.Connection[tuple[object, ...]]]:
    connections = [psycopg.connect(conninfo(url)) for _ in range(n)]
    for connection in connections:
        connection.execute("select 1")
    return connections


def _dead(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while _is_postmaster(pid):
        assert time.monotonic() < deadline, f"postmaster {pid} still alive after SIGKILL"
        time.sleep(0.01)


def test_the_port_survives_a_kill_9_of_the_postmaster(tmp_path: Path) -> None:
    """After a crash the postmaster is a zombie until reaped, postmaster.pid stays behind and
    the server side of every connection lingers in FIN_WAIT: none of that keeps the port."""
    server = LocalServer(tmp_path / "db", preferred_port=0)
    url = server.up()
    try:
        lingering = _connections(url, 5)  # their server ends go FIN_WAIT when it dies
        status = server.status()
        assert status.pid is not None
        os.kill(status.pid, signal.SIGKILL)
        _dead(status.pid)  # the crash is over (a zombie now): kill(2) returns before it
        again = server.up()
        assert again.port == url.port
        recorded = (tmp_path / "db" / "url").read_text().strip()
        assert recorded == display_url(again)  # what `make db-url` prints
        assert server.status().url() == again
        with psycopg.connect(conninfo(again)) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
        for connection in lingering:
            connection.close()
    finally:
        server.down()


def test_the_port_survives_a_restart_with_sockets_in_time_wait(tmp_path: Path) -> None:
    server = LocalServer(tmp_path / "db", preferred_port=0)
    url = server.up()
    try:
        for _ in range(20):  # closed by the server at shutdown: TIME_WAIT on its port
            with psycopg.connect(conninfo(url)) as conn:
                conn.execute("select 1")
        held = _connections(url, 3)
        server.down()  # fast shutdown: the server closes first, its side waits
        again = server.up()
        assert again.port == url.port
        for connection in held:
            connection.close()
    finally:
        server.down()


def test_a_port_another_server_listens_on_is_left_alone(tmp_path: Path) -> None:
    server = LocalServer(tmp_path / "db", preferred_port=0)
    url = server.up()
    server.down()
    assert url.port is not None
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", url.port))
        squatter.listen()
        moved = server.up()
        try:
            assert moved.port != url.port
        finally:
            server.down()
