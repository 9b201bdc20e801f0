"""`make demo` and `make dev`: the whole system on the embedded database, end to end.

demo: start the database, migrate, generate and ingest a sample feed with the whale-tracker
CLI, create demo users (auth.users + profiles) with a few rules each, run the evaluator until it
has caught up, print what every user got. Running it again changes nothing.

dev: the same data, then both APIs and the worker as child processes, with their URLs and a
ready-to-use access token per demo user.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import sqlalchemy as sa

from alert_service.evaluator import Evaluator
from database.engine import Database
from database.migrate import upgrade
from database.repositories import AlertRepository

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


def _run(*args: str) -> None:
    subprocess.run([sys.executable, "-m", *args], check=True)  # noqa: S603


def ingest_sample(count: int = FEED_SIZE) -> None:
    """Through the whale-tracker's own CLI: the demo uses the system the way people do."""
    with tempfile.TemporaryDirectory() as workdir:
        feed = str(Path(workdir) / "feed.jsonl")
        _run(
            "whale_tracker.cli",
            "generate",
            "--count",
            str(count),
            "--seed",
            str(FEED_SEED),
            "--out",
            feed,
        )
        _run(
            "whale_tracker.cli",
            "ingest",
            feed,
            "--eth-usd",
            "3000",
            "--rejects",
            str(Path(workdir) / "rejects.jsonl"),
        )


def ensure_users(database: Database) -> dict[str, Any]:
    """The demo users and their rules (created once; a second run finds them)."""
    with database.service_session() as s:
        busy = list(
            s.execute(
                sa.text(
                    "select a from (select from_address a from whale_transactions union all"
                    " select to_address from whale_transactions) x where a is not null"
                    " group by a order by count(*) desc, a limit 3"
                )
            ).scalars()
        )
    ids = {}
    for user in _users(busy):
        with database.service_session() as s:
            uid = s.execute(
                sa.text("select id from auth.users where email = :e"), {"e": user.email}
            ).scalar_one_or_none()
            if uid is None:
                uid = s.execute(
                    sa.text(
                        "insert into auth.users (id, aud, role, email, raw_app_meta_data,"
                        " raw_user_meta_data) values (gen_random_uuid(), 'authenticated',"
                        " 'authenticated', :e, '{}', '{}') returning id"
                    ),
                    {"e": user.email},
                ).scalar_one()
                s.execute(
                    sa.text(
                        "insert into profiles (id, username, display_name) values (:i, :u, :d)"
                    ),
                    {"i": uid, "u": user.username, "d": user.username.title()},
                )
                repo = AlertRepository(s)
                for rule in user.rules:
                    repo.create(data=rule, user_id=uid)
        ids[user.username] = uid
    return ids


def catch_up(database: Database, *, timeout: float = 60) -> Evaluator:
    """Run the evaluator until every ingested transaction has been evaluated."""
    evaluator = Evaluator(database)
    with database.service_session() as s:
        last = s.execute(
            sa.text(
                "select created_at, id from whale_transactions"
                " order by created_at desc, id desc limit 1"
            )
        ).one_or_none()
    deadline = time.monotonic() + timeout
    while last is not None and evaluator.position() != (last.created_at, last.id):
        if time.monotonic() > deadline:
            raise TimeoutError("the evaluator did not catch up")
        if not evaluator.run_until_idle():
            time.sleep(0.3)  # rows younger than the safety horizon: wait for it to pass
    return evaluator


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


def run_demo(database: Database | None = None, *, feed_size: int = FEED_SIZE) -> str:
    started = time.perf_counter()
    database = database or Database()
    upgrade(url=database.url)
    ingest_sample(feed_size)
    users = ensure_users(database)
    evaluator = catch_up(database)
    text = summary(database, users)
    elapsed = time.perf_counter() - started
    return (
        f"{text}\n\nevaluated {evaluator.stats.transactions:,} new transactions,"
        f" {evaluator.stats.events:,} new alert events; demo took {elapsed:.1f} s"
    )


def dev_jwt_secret(folder: Path) -> str:
    """SUPABASE_JWT_SECRET, or a development secret kept in the local database folder."""
    if os.environ.get("SUPABASE_JWT_SECRET"):
        return os.environ["SUPABASE_JWT_SECRET"]
    path = folder / "dev-jwt-secret"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def dev_token(secret: str, user_id: Any, email: str, *, hours: int = 12) -> str:
    now = int(time.time())
    claims = {
        "sub": str(user_id),
        "email": email,
        "aud": "authenticated",
        "role": "authenticated",
        "iat": now,
        "exp": now + hours * 3600,
    }
    return jwt.encode(claims, secret, algorithm="HS256")
