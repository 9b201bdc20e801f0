"""`make demo` and `make dev`: the whole system, end to end, driven from outside the apps.

    python -m demo [--feed-size N]     the main job; prints one summary
    python -m demo dev                 the same data, then both APIs and a worker until Ctrl-C

The demo starts the database (embedded unless DATABASE_URL is set) and migrates it, then uses
the apps the way people do, through their command lines and HTTP APIs: `whale-tracker generate`
and `ingest` load a sample feed; demo users are signed up (auth.users + profiles, what Supabase
Auth and a sign-up hook would do); their rules are created through the alert service's API with
their own access tokens; `alert-service worker --until-idle` evaluates; the summary says what
every user got. Running it again changes nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import sqlalchemy as sa

from database.connect import display_url
from database.migrations import upgrade
from database.sessions import Database
from database.settings import Settings, get_settings
from database_tools.embedded import server_url
from database_tools.identities import create_auth_user
from service_kit.tokens import sign_token

FEED_SIZE = 20_000
FEED_SEED = 42


@dataclass(frozen=True)
class DemoUser:
    username: str
    email: str
    rules: tuple[dict[str, Any], ...]


def _users(busy: list[str]) -> list[DemoUser]:
    whale = "whale_transaction"
    return [
        DemoUser(
            "alice",
            "alice@demo.test",
            (
                {
                    "name": "1,000 ETH and up",
                    "alert_type": whale,
                    "conditions": {"min_value_eth": "1000"},
                    "cooldown_seconds": 0,
                },
                {
                    "name": "busiest wallet",
                    "alert_type": whale,
                    "conditions": {"addresses": busy[:1]},
                    "cooldown_seconds": 0,
                },
            ),
        ),
        DemoUser(
            "bob",
            "bob@demo.test",
            (
                {
                    "name": "$25M transfers",
                    "alert_type": whale,
                    "conditions": {"min_value_usd": "25000000"},
                    "cooldown_seconds": 0,
                },
                {
                    "name": "top scores, hourly at most",
                    "alert_type": whale,
                    "conditions": {"min_whale_score": "0.8"},
                    "cooldown_seconds": 3600,
                },
            ),
        ),
        DemoUser(
            "carol",
            "carol@demo.test",
            (
                {
                    "name": "watched wallets",
                    "alert_type": whale,
                    "conditions": {"addresses": busy[1:3], "chain": "ethereum"},
                    "cooldown_seconds": 0,
                },
            ),
        ),
    ]


class DemoError(Exception):
    """A step of the demo failed; the message says which and shows what the app printed."""


def _cli(app: str, *args: str, env: dict[str, str]) -> str:
    """Run an app's command line; its output is the demo's business only when it fails."""
    command = [sys.executable, "-m", f"{app}.cli", *args]
    result = subprocess.run(  # noqa: S603 - our own apps, fixed arguments
        command, capture_output=True, text=True, env=env, check=False
    )
    if result.returncode not in (0,):
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise DemoError(f"`{app} {' '.join(args)}` exited {result.returncode}:\n{tail}")
    return result.stdout


def ingest_sample(env: dict[str, str], count: int) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        feed = str(Path(workdir) / "feed.jsonl")
        _cli("whale_tracker", "generate", "--count", str(count), "--seed", str(FEED_SEED),
             "--out", feed, env=env)  # fmt: skip
        _cli("whale_tracker", "ingest", feed, "--eth-usd", "3000",
             "--rejects", str(Path(workdir) / "rejects.jsonl"), env=env)  # fmt: skip


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def running(app: str, *args: str, env: dict[str, str], health: str | None) -> Iterator[None]:
    """An app's server as a child process for the duration of the block."""
    command = [sys.executable, "-m", f"{app}.cli", *args]
    child = subprocess.Popen(  # noqa: S603 - our own apps, fixed arguments
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        if health is not None:
            _wait_healthy(child, health)
        yield
    finally:
        child.terminate()
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()


def _wait_healthy(child: subprocess.Popen[str], url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise DemoError(
                f"{url}: the server exited:\n{child.stderr.read() if child.stderr else ''}"
            )
        try:
            if httpx.get(url, timeout=1).is_success:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise DemoError(f"{url} did not answer within {timeout:.0f} s")


def sign_up(database: Database, users: list[DemoUser]) -> dict[str, Any]:
    """auth.users + profiles rows, as Supabase Auth and a sign-up hook would write them."""
    ids = {}
    with database.service_session() as s:
        for user in users:
            uid = s.execute(
                sa.text("select id from auth.users where email = :e"), {"e": user.email}
            ).scalar_one_or_none()
            if uid is None:
                uid = create_auth_user(s.connection(), email=user.email)
                s.execute(
                    sa.text(
                        "insert into profiles (id, username, display_name) values (:i, :u, :d)"
                    ),
                    {"i": uid, "u": user.username, "d": user.username.title()},
                )
            ids[user.username] = uid
    return ids


def busiest_addresses(database: Database) -> list[str]:
    with database.service_session() as s:
        return list(
            s.execute(
                sa.text(
                    "select a from (select from_address a from whale_transactions union all"
                    " select to_address from whale_transactions) x where a is not null"
                    " group by a order by count(*) desc, a limit 3"
                )
            ).scalars()
        )


def create_rules(api: str, users: list[DemoUser], ids: dict[str, Any], secret: str) -> None:
    """Each user's rules through the alert service's API, with that user's own token."""
    with httpx.Client(base_url=api, timeout=10) as http:
        for user in users:
            token = sign_token(secret, user_id=ids[user.username], email=user.email)
            headers = {"Authorization": f"Bearer {token}"}
            existing = http.get("/alerts", headers=headers)
            existing.raise_for_status()
            if existing.json()["data"]:
                continue  # created by an earlier run
            for rule in user.rules:
                created = http.post("/alerts", json=rule, headers=headers)
                if created.status_code != 201:
                    raise DemoError(f"POST /alerts for {user.username}: {created.text}")


def summary(database: Database, users: dict[str, Any]) -> str:
    lines = [f"{'user':<8} {'rules':>5} {'alerts':>7}  largest alerts (ETH)"]
    with database.service_session() as s:
        for name, uid in users.items():
            rules = s.execute(
                sa.text("select count(*) from alerts where user_id = :u"), {"u": uid}
            ).scalar_one()
            events = s.execute(
                sa.text("select count(*) from alert_events where user_id = :u"), {"u": uid}
            ).scalar_one()
            top = s.execute(
                sa.text(
                    "select (payload ->> 'value_eth')::numeric v, payload ->> 'alert' a"
                    " from alert_events where user_id = :u order by v desc limit 3"
                ),
                {"u": uid},
            ).all()
            largest = ", ".join(f"{v:,.0f} ({a})" for v, a in top) or "-"
            lines.append(f"{name:<8} {rules:>5} {events:>7}  {largest}")
    return "\n".join(lines)


def dev_jwt_secret(settings: Settings) -> str:
    """SUPABASE_JWT_SECRET, or a development secret kept in the local database folder."""
    if settings.supabase_jwt_secret is not None:
        return settings.supabase_jwt_secret.get_secret_value()
    path = settings.local_db_dir / "dev-jwt-secret"
    if not path.exists():
        settings.local_db_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


@dataclass
class Prepared:
    database: Database
    env: dict[str, str]
    secret: str
    users: list[DemoUser]
    ids: dict[str, Any]


def prepare(feed_size: int) -> Prepared:
    settings = get_settings()
    url = server_url(settings)  # the explicit start of the embedded server
    upgrade(url=url)
    secret = dev_jwt_secret(settings)
    env = {
        **os.environ,
        "DATABASE_URL": url.render_as_string(hide_password=False),
        "SUPABASE_JWT_SECRET": secret,
    }
    database = Database(settings=settings, url=url)
    ingest_sample(env, feed_size)
    users = _users(busiest_addresses(database))
    return Prepared(database, env, secret, users, sign_up(database, users))


def run_demo(feed_size: int) -> str:
    started = time.perf_counter()
    ready = prepare(feed_size)
    port = _free_port()
    api = f"http://127.0.0.1:{port}"
    with running("alert_service", "serve", "--port", str(port), env=ready.env,
                 health=f"{api}/health"):  # fmt: skip
        create_rules(api, ready.users, ready.ids, ready.secret)
    evaluated = _cli("alert_service", "--quiet", "worker", "--until-idle", "--json", env=ready.env)
    counts = json.loads(evaluated)
    text = summary(ready.database, ready.ids)
    ready.database.dispose()
    elapsed = time.perf_counter() - started
    return (
        f"{text}\n\nevaluated {counts['rows']:,} new stream rows,"
        f" {counts['events']:,} new alert events; demo took {elapsed:.1f} s"
        f"\ndatabase: {display_url(ready.database.url)}"
    )


def run_dev(feed_size: int) -> int:
    print(run_demo(feed_size))
    ready = prepare(0)
    print("\nwhale tracker API  http://127.0.0.1:8001/docs")
    print("alert service API  http://127.0.0.1:8002/docs   (worker running)")
    for name, uid in ready.ids.items():
        token = sign_token(
            ready.secret, user_id=uid, email=f"{name}@demo.test", lifetime_seconds=12 * 3600
        )
        print(f"\n{name}: Authorization: Bearer {token}")
    print("\nCtrl-C stops everything.")

    def interrupt(signum: int, _: FrameType | None) -> None:
        raise KeyboardInterrupt  # SIGTERM stops the children too, like Ctrl-C

    signal.signal(signal.SIGTERM, interrupt)
    env = ready.env
    try:
        with (
            running("whale_tracker", "serve", "--port", "8001", env=env, health=None),
            running("alert_service", "serve", "--port", "8002", env=env, health=None),
            running("alert_service", "worker", env=env, health=None),
        ):
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", nargs="?", choices=["demo", "dev"], default="demo")
    parser.add_argument("--feed-size", type=int, default=FEED_SIZE)
    args = parser.parse_args(argv)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        if args.mode == "dev":
            return run_dev(args.feed_size)
        print(run_demo(args.feed_size))
    except DemoError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
