"""Benchmarks of apps/alert-service: evaluation throughput and insert-to-event delay."""

from __future__ import annotations

import random
import threading
import time
from decimal import Decimal

import psycopg
from sqlalchemy import text
from sqlalchemy.engine import URL

from alert_service.evaluator import Evaluator
from alert_service.queries import match_rules
from alert_service.sources import WHALE_TRANSACTIONS
from bench.database import truncate, whale_rows
from bench.harness import Report, Result, connect, percentiles, timed
from database.repositories import BulkWriter
from database.schema import WhaleTransaction, WhaleTransactionCreate
from database.sessions import Database
from database.settings import load_settings


def _rules(url: URL, count: int, addresses: list[str]) -> None:
    """`count` enabled rules over count/10 users: value thresholds, some watched addresses."""
    rng = random.Random(3)
    with connect(url) as conn:
        users = [
            row[0]
            for row in conn.execute(
                "insert into auth.users (id) select gen_random_uuid()"
                " from generate_series(1, %s) returning id",
                (max(1, count // 10),),
            )
        ]
        with (
            conn.cursor() as cur,
            cur.copy(
                "copy alerts (user_id, name, alert_type, conditions, cooldown_seconds) from stdin"
            ) as copy,
        ):
            for i in range(count):
                conditions: dict[str, object] = {"alert_type": "whale_transaction"}
                if i % 4 == 0:
                    conditions["addresses"] = rng.sample(addresses, 3)
                else:
                    conditions["min_value_eth"] = str(
                        rng.choice((10_000, 50_000, 100_000, 500_000))
                    )
                if i % 5 == 0:
                    conditions["min_whale_score"] = "0.5"
                copy.write_row(
                    (users[i % len(users)], f"rule {i}", "whale_transaction",
                     psycopg.types.json.Jsonb(conditions), 0)
                )  # fmt: skip
        conn.commit()


def evaluation(report: Report, url: URL, *, transactions: int, rules: int) -> None:
    g = "alerts"
    for table in ("alert_events", "alerts", "evaluator_cursors", "whale_transactions"):
        truncate(url, table)
    rows = whale_rows(transactions, seed=9)
    db = Database(settings=load_settings(), url=url)
    BulkWriter(db).upsert(WhaleTransaction, rows=rows)
    _rules(url, rules, [r.from_address for r in rows[:200]])
    with connect(url) as conn:
        conn.autocommit = True
        conn.execute("vacuum analyze alerts")
        conn.execute("vacuum analyze whale_transactions")

    # Baseline: the SQL matching alone over the same transactions, in batches of 1,000.
    with db.service_session() as s:
        ids = list(
            s.execute(text("select id from whale_transactions order by created_at, id")).scalars()
        )

        def match_only() -> int:
            return sum(
                len(match_rules(s, source=WHALE_TRANSACTIONS, row_ids=ids[i : i + 1000]))
                for i in range(0, len(ids), 1000)
            )

        seconds, matches = timed(match_only)
    pairs = transactions * rules
    base = report.add(Result(g, "SQL matching only (baseline)", round(pairs / seconds), "pairs/s",
                             note=f"{transactions:,} transactions x {rules:,} rules"))  # fmt: skip
    evaluator = Evaluator(db)
    seconds, handled = timed(evaluator.run_until_idle)
    assert handled == transactions, handled
    report.add(Result(g, "evaluator: match + record events + cursor", round(pairs / seconds),
                      "pairs/s", base.name, round(seconds and (pairs / seconds) / base.value, 3),
                      note=f"{evaluator.stats.events:,} events ({matches:,} matches)"))  # fmt: skip
    db.dispose()


def _big(row: WhaleTransactionCreate, tag: str) -> WhaleTransactionCreate:
    return row.model_copy(update={"value_eth": Decimal(50_000), "hash": "0x" + tag.rjust(64, "0")})


def _delays(db: Database, url: URL, rows: list[WhaleTransactionCreate]) -> list[float]:
    """Commit one transaction at a time; milliseconds from its commit to its recorded event
    (polled every millisecond on one connection)."""
    delays = []
    with connect(url) as conn:
        conn.autocommit = True
        for row in rows:
            BulkWriter(db).upsert(WhaleTransaction, rows=[row])
            committed = time.perf_counter()
            while not _has_event(conn, row.hash):
                time.sleep(0.001)
            delays.append((time.perf_counter() - committed) * 1000)
    return delays


def _has_event(conn: psycopg.Connection[tuple[object, ...]], hash_: str) -> bool:
    found = conn.execute(
        "select exists (select 1 from alert_events e join whale_transactions t"
        " on e.source = 'whale_transactions' and t.id = e.source_id where t.hash = %s)",
        (hash_,),
    ).fetchone()
    return bool(found and found[0])


def notify_delay(report: Report, url: URL, *, samples: int) -> None:
    """Insert -> recorded event, woken by NOTIFY: alone, and while another writer keeps a
    transaction open (a long ingest). Rows are evaluated as soon as they are visible; the
    open transaction's row is evaluated once, when it commits."""
    g = "alerts"
    db = Database(settings=load_settings(), url=url)
    evaluator = Evaluator(db)
    evaluator.run_until_idle()
    stop = threading.Event()
    worker = threading.Thread(target=evaluator.run, args=(stop,), kwargs={"catch_up_every": 5.0})
    worker.start()
    rows = [_big(row, f"a{i}") for i, row in enumerate(whale_rows(2 * samples + 1, seed=77))]
    try:
        quiet = _delays(db, url, rows[:samples])
        with connect(url) as long_ingest:
            late = rows[-1]
            long_ingest.execute(
                "insert into whale_transactions (hash, from_address, value_eth, gas_price,"
                " block_number, block_timestamp, whale_score)"
                " values (%s, %s, %s, %s, %s, %s, %s)",
                (late.hash, late.from_address, late.value_eth, late.gas_price,
                 late.block_number, late.block_timestamp, late.whale_score),
            )  # fmt: skip
            held = _delays(db, url, rows[samples : 2 * samples])
            long_ingest.commit()
            committed = time.perf_counter()
        with connect(url) as conn:
            while not _has_event(conn, late.hash):
                time.sleep(0.001)
        late_ms = (time.perf_counter() - committed) * 1000
        with connect(url) as conn:
            events = conn.execute(
                "select count(distinct source_id) from alert_events e join whale_transactions t"
                " on e.source = 'whale_transactions' and t.id = e.source_id"
                " where t.hash = any(%s)",
                ([row.hash for row in rows],),
            ).fetchone()
    finally:
        stop.set()
        worker.join()
        db.dispose()
    assert events is not None and events[0] == len(rows), events  # every row, the late one too
    for label, delays in (("NOTIFY", quiet), ("NOTIFY, a long ingest open", held)):
        p50, p95 = percentiles(delays)
        report.add(Result(g, f"insert -> alert event p50 ({label})", round(p50, 1), "ms",
                          target="< 30 ms", met=p50 < 30,
                          note=f"{len(delays)} inserts, one at a time"))  # fmt: skip
        report.add(Result(g, f"insert -> alert event p95 ({label})", round(p95, 1), "ms",
                          target="< 60 ms", met=p95 < 60))  # fmt: skip
    report.add(Result(g, "the long ingest's row: its commit -> alert event", round(late_ms, 1),
                      "ms", note="evaluated once, after the rows committed before it"))  # fmt: skip


def json_checks(report: Report, url: URL, *, rows: int) -> None:
    """What the database's validation of rule documents costs: inserting the same rules into
    `alerts` with its JSON validators (conditions and channels CHECKs) and without them (the
    benchmark database is thrown away afterwards), and into a bare copy of the table with no
    constraints, indexes or triggers at all, for scale."""
    g = "alerts"
    truncate(url, "alerts")
    rng = random.Random(5)
    with connect(url) as conn:
        users = [
            row[0]
            for row in conn.execute(
                "insert into auth.users (id) select gen_random_uuid()"
                " from generate_series(1, %s) returning id",
                (max(1, rows // 50),),
            )
        ]
        conn.execute("drop table if exists bench_alerts_bare")
        conn.execute("create table bench_alerts_bare (like alerts including defaults)")
        conn.commit()
    batch = []
    for i in range(rows):
        conditions = {
            "alert_type": "whale_transaction",
            "min_value_eth": str(rng.choice((100, 1_000, 10_000))),
            "addresses": ["0x" + f"{rng.getrandbits(160):040x}" for _ in range(rng.randint(0, 5))],
            "chain": "ethereum",
        }
        channels = [{"type": "in_app"}]
        if i % 3 == 0:
            channels.append({"type": "webhook", "url": f"https://hooks.example.com/r/{i}"})
        batch.append(
            (users[i % len(users)], f"rule {i}", "whale_transaction",
             psycopg.types.json.Jsonb(conditions), psycopg.types.json.Jsonb(channels))
        )  # fmt: skip

    def insert(table: str) -> float:
        sql = (
            f"insert into {table} (user_id, name, alert_type, conditions, channels)"
            " values (%s, %s, %s, %s, %s)"
        )
        best = float("inf")
        for _ in range(3):
            with connect(url) as conn:
                conn.execute(f"truncate {table} cascade")
                conn.commit()
                started = time.perf_counter()
                with conn.cursor() as cur:
                    cur.executemany(sql, batch)
                conn.commit()
                best = min(best, time.perf_counter() - started)
        return best

    bare = insert("bench_alerts_bare")
    checked = insert("alerts")
    with connect(url) as conn:
        conn.execute("alter table alerts drop constraint ck_alerts_conditions_valid")
        conn.execute("alter table alerts drop constraint ck_alerts_channels_valid")
        conn.commit()
    unchecked = insert("alerts")
    base = report.rate(g, "insert rules, without the JSON CHECKs (baseline)", rows, unchecked)
    report.rate(
        g,
        "insert rules, JSON documents validated",
        rows,
        checked,
        baseline=base,
        note="conditions + channels validators; best of 3",
    )
    report.rate(
        g,
        "insert rules into a bare copy (no rules, no triggers)",
        rows,
        bare,
        note="for scale: what every constraint, index and trigger costs together",
    )
    with connect(url) as conn:
        conn.execute("drop table bench_alerts_bare")
        conn.execute("truncate alerts cascade")
        # Put the CHECKs back (NOT VALID skips a scan of the empty table's nothing).
        conn.execute(
            "alter table alerts add constraint ck_alerts_conditions_valid"
            " check (private.valid_alert_conditions(conditions))"
        )
        conn.execute(
            "alter table alerts add constraint ck_alerts_channels_valid"
            " check (private.valid_alert_channels(channels))"
        )
        conn.commit()
