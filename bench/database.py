"""Benchmarks of packages/database: bulk writes, OHLCV queries, gap detection, RLS reads."""

from __future__ import annotations

import contextlib
import random
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.engine import URL
from sqlmodel import Session, create_engine

from bench.harness import Report, Result, connect, percentiles, timed
from bench.peers import core_upsert
from database.repositories import BulkWriter, OhlcvRepository, Repository
from database.schema import (
    Alert,
    Ohlcv,
    OhlcvCreate,
    Timeframe,
    WhaleTransaction,
    WhaleTransactionCreate,
)
from database.schema.types import uuid7
from database.sessions import Database, user_claims
from database.settings import load_settings

START = datetime(2025, 1, 6, tzinfo=UTC)  # a Monday: on every timeframe's grid

WHALE_COLUMNS = (
    "id, hash, chain, from_address, to_address, value_eth, value_usd, gas_price, gas_used,"
    " block_number, block_timestamp, whale_score"
)
OHLCV_COLUMNS = "id, source, symbol, timeframe, bucket_start, open, high, low, close, volume"


# -- data ------------------------------------------------------------------------------------


def whale_rows(n: int, seed: int) -> list[WhaleTransactionCreate]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        value = Decimal(int(rng.paretovariate(1.2) * 100_000)) / 1000
        rows.append(
            WhaleTransactionCreate(
                hash="0x" + rng.randbytes(32).hex(),
                from_address="0x" + rng.randbytes(20).hex(),
                to_address="0x" + rng.randbytes(20).hex(),
                value_eth=value,
                value_usd=(value * 3000).quantize(Decimal("0.01")),
                gas_price=rng.randrange(10**9, 10**11),
                gas_used=21_000,
                block_number=19_000_000 + i,
                block_timestamp=START + timedelta(seconds=12 * i),
                whale_score=Decimal(rng.randrange(0, 10_000)) / 10_000,
            )
        )
    return rows


def whale_tuples(rows: list[WhaleTransactionCreate]) -> list[tuple[Any, ...]]:
    return [
        (
            uuid7(),
            r.hash,
            r.chain.value,
            r.from_address,
            r.to_address,
            r.value_eth,
            r.value_usd,
            r.gas_price,
            r.gas_used,
            r.block_number,
            r.block_timestamp,
            r.whale_score,
        )
        for r in rows
    ]


def bars(n: int, *, symbols: int = 10, skip: frozenset[int] = frozenset()) -> Iterator[OhlcvCreate]:
    """`n` one-minute bars spread over `symbols` series, minutes in `skip` left out."""
    per_symbol = n // symbols
    for s in range(symbols):
        for m in range(per_symbol):
            if m in skip:
                continue
            price = Decimal(1000 + (m % 500))
            yield OhlcvCreate(
                source="binance",
                symbol=f"S{s}/USDT",
                timeframe=Timeframe.M1,
                bucket_start=START + timedelta(minutes=m),
                open=price,
                high=price + 5,
                low=price - 5,
                close=price + 1,
                volume=Decimal("12.5"),
            )


def bar_tuples(rows: list[OhlcvCreate]) -> list[tuple[Any, ...]]:
    return [
        (
            uuid7(),
            r.source,
            r.symbol,
            r.timeframe.value,
            r.bucket_start,
            r.open,
            r.high,
            r.low,
            r.close,
            r.volume,
        )
        for r in rows
    ]


# -- baselines written by hand with psycopg --------------------------------------------------


def raw_copy(url: URL, table: str, columns: str, rows: list[tuple[Any, ...]]) -> float:
    with connect(url) as conn:
        started = time.perf_counter()
        with conn.cursor() as cur, cur.copy(f"copy {table} ({columns}) from stdin") as copy:
            for row in rows:
                copy.write_row(row)
        conn.commit()
        return time.perf_counter() - started


def hand_merge(url: URL, rows: list[tuple[Any, ...]]) -> float:
    """COPY into a temp table, one INSERT … SELECT … ON CONFLICT DO UPDATE: the plain version."""
    updates = ", ".join(f"{c} = excluded.{c}" for c in WHALE_COLUMNS.split(", ")[2:])
    with connect(url) as conn:
        started = time.perf_counter()
        conn.execute(
            f"create temp table stage on commit drop as select {WHALE_COLUMNS}"
            " from whale_transactions with no data"
        )
        with conn.cursor() as cur, cur.copy(f"copy stage ({WHALE_COLUMNS}) from stdin") as copy:
            for row in rows:
                copy.write_row(row)
        conn.execute(
            f"insert into whale_transactions ({WHALE_COLUMNS}) select {WHALE_COLUMNS} from stage"
            f" on conflict (hash) do update set {updates}"
        )
        conn.commit()
        return time.perf_counter() - started


def truncate(url: URL, table: str) -> None:
    """Empty `table` and settle the server, so one measurement's WAL and dirty pages do not
    land on the next one (a checkpoint in the middle of a run skews it by seconds)."""
    with connect(url) as conn:
        conn.execute(f"truncate {table} cascade")
        conn.commit()
    with connect(url) as conn:
        conn.autocommit = True
        conn.execute(f"vacuum analyze {table}")
        # Not a superuser on DATABASE_URL's server: measure without it.
        with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
            conn.execute("checkpoint")


def median_seconds(run: Callable[[], float], *, setup: Callable[[], None], repeat: int) -> float:
    """Median of `repeat` timed runs, each after `setup`."""
    times = []
    for _ in range(repeat):
        setup()
        times.append(run())
    return statistics.median(times)


# -- scenarios ---------------------------------------------------------------------------------


def bulk_whales(report: Report, url: URL, n: int, repeat: int, *, peers: int | None = None) -> None:
    """`peers`: how many rows the slow baselines (SQLModel, the Core upserts) write; rates are
    per row, so fewer keep a quick run short."""
    g = f"whales {n // 1000}k"
    rows = whale_rows(n, seed=1)
    tuples = whale_tuples(rows)
    dicts = [r.model_dump() for r in rows]
    few = dicts[: peers or n]
    engine = create_engine(url)
    db = Database(settings=load_settings(), url=url)
    writer = BulkWriter(db)

    def empty() -> None:
        truncate(url, "whale_transactions")

    def upsert(batch: list[Any], expect: str) -> float:
        seconds, result = timed(lambda: writer.upsert(WhaleTransaction, rows=batch))
        assert getattr(result, expect) == n, result
        return seconds

    def orm() -> None:
        with Session(engine) as session:
            session.add_all(WhaleTransaction(**r, id=uuid7()) for r in few)
            session.commit()

    def copy_run() -> float:
        return raw_copy(url, "whale_transactions", WHALE_COLUMNS, tuples)

    def median(run: Callable[[], float]) -> float:
        return median_seconds(run, setup=empty, repeat=repeat)

    # Into an empty table. Raw COPY and the package's upsert from raw dicts alternate, so both
    # see the same machine: the ratio is what counts. Three rounds at least: a median of two
    # is their mean, and one slow moment of a shared machine moves it.
    copy_times, dict_times = [], []
    for _ in range(max(repeat, 3)):
        empty()
        copy_times.append(copy_run())
        empty()
        dict_times.append(upsert(dicts, "inserted"))
    copy = report.rate(g, "raw COPY (baseline)", n, statistics.median(copy_times))
    hand = report.rate(
        g, "hand-written COPY->stage->merge (baseline)", n, median(lambda: hand_merge(url, tuples))
    )
    empty()
    m = len(few)
    orm_result = report.rate(
        g, "SQLModel add_all+commit (baseline)", m, timed(orm)[0],
        note=f"object construction included; {m:,} rows",
    )  # fmt: skip
    core = report.rate(
        g, "Core on_conflict_do_update, 10k batches (peer)", m,
        median(lambda: core_upsert(engine, few, validate=False)), note=f"{m:,} rows",
    )  # fmt: skip
    validated = report.rate(
        g, "the same + pydantic per row (peer)", m,
        median(lambda: core_upsert(engine, few, validate=True)), note=f"{m:,} rows",
    )  # fmt: skip
    seconds = median(lambda: upsert(rows, "inserted"))
    name = "package upsert, empty table"
    report.rate(g, name, n, seconds, baseline=hand, at_least=0.8)
    report.rate(g, name, n, seconds, baseline=orm_result, at_least=5)
    report.rate(g, name, n, seconds, baseline=copy)
    name = "package upsert from raw dicts, empty table"
    dict_seconds = statistics.median(dict_times)
    report.rate(g, name, n, dict_seconds, baseline=copy, at_least=0.9,
                note="validated inside pydantic-core; same-run alternating medians")  # fmt: skip
    report.rate(g, name, n, dict_seconds, baseline=validated, at_least=2)
    report.rate(g, name, n, dict_seconds, baseline=core)

    # Every key already there, the same values: a second ingest of the same data. The peers
    # rewrite every row (and every index entry); the package leaves unchanged rows alone.
    empty()
    upsert(dicts, "inserted")
    core_again = report.rate(
        g, "Core on_conflict_do_update, all conflicting (peer)", m,
        statistics.median([core_upsert(engine, few, validate=False) for _ in range(repeat)]),
        note=f"{m:,} rows",
    )  # fmt: skip
    validated_again = report.rate(
        g, "the same + pydantic per row, all conflicting (peer)", m,
        statistics.median([core_upsert(engine, few, validate=True) for _ in range(repeat)]),
        note=f"{m:,} rows",
    )  # fmt: skip
    name = "package upsert from raw dicts, all conflicting"
    again = statistics.median([upsert(dicts, "unchanged") for _ in range(repeat)])
    report.rate(g, name, n, again, baseline=validated_again, at_least=4,
                note="unchanged rows are not rewritten")  # fmt: skip
    report.rate(g, name, n, again, baseline=core_again)

    # Every row conflicting and changed: both sides rewrite all n rows, round after round.
    rounds = iter(range(1, 2 * repeat + 2))

    def changed_tuples() -> list[tuple[Any, ...]]:
        bump = next(rounds)
        return whale_tuples(
            [r.model_copy(update={"value_usd": (r.value_usd or 0) + bump}) for r in rows]
        )

    def changed_models() -> list[WhaleTransactionCreate]:
        bump = next(rounds)
        return [r.model_copy(update={"value_usd": (r.value_usd or 0) + bump}) for r in rows]

    hand_runs = [hand_merge(url, changed_tuples()) for _ in range(repeat)]
    hand_conflict = report.rate(
        g, "hand-written merge, all changed (baseline)", n, statistics.median(hand_runs)
    )
    ups_runs = [upsert(changed_models(), "updated") for _ in range(repeat)]
    report.rate(
        g,
        "package upsert, all conflicting and changed",
        n,
        statistics.median(ups_runs),
        baseline=hand_conflict,
        at_least=0.8,
    )
    engine.dispose()
    db.dispose()


def _rss_child(url: str, n: int, chunk: int) -> None:
    """Run in a subprocess: stream `n` bars through BulkWriter.upsert, print peak RSS (KiB)."""
    from sqlalchemy.engine import make_url

    db = Database(settings=load_settings(), url=make_url(url))
    BulkWriter(db, chunk_size=chunk).upsert(Ohlcv, rows=bars(n))
    print(_peak_rss_kib())


def _rss_generate_only(n: int) -> None:
    for _ in bars(n):
        pass
    print(_peak_rss_kib())


def _peak_rss_kib() -> int:
    # VmHWM belongs to this process image; ru_maxrss would include the parent's size from
    # before exec (the benchmark parent holds a million rows at that point).
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _child_rss(code: str) -> int:
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=root
    )
    if done.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{done.stderr[-3000:]}")
    return int(done.stdout.strip().splitlines()[-1])


def bulk_ohlcv(report: Report, url: URL, n: int, growth: list[int], repeat: int) -> None:
    g = f"ohlcv {n // 1000}k"
    models = list(bars(n))
    tuples = bar_tuples(models)
    writer = BulkWriter(Database(settings=load_settings(), url=url))

    def empty() -> None:
        truncate(url, "ohlcv")

    def upsert(batch: list[OhlcvCreate]) -> float:
        seconds, result = timed(lambda: writer.upsert(Ohlcv, rows=batch))
        assert result.inserted == len(batch), result
        return seconds

    def insert() -> float:
        return timed(lambda: writer.copy(Ohlcv, rows=models))[0]

    def copy_run() -> float:
        return raw_copy(url, "ohlcv", OHLCV_COLUMNS, tuples)

    copy = report.rate(
        g, "raw COPY (baseline)", n, median_seconds(copy_run, setup=empty, repeat=repeat)
    )
    tuples.clear()
    full = median_seconds(lambda: upsert(models), setup=empty, repeat=repeat)
    report.rate(g, "package upsert, empty table", n, full, baseline=copy, at_least=0.6)
    report.rate(
        g,
        "package copy (COPY)",
        n,
        median_seconds(insert, setup=empty, repeat=repeat),
        baseline=copy,
    )

    # Growth: time per row should not rise with size.
    per_row = {n: full / n * 1e6}
    for size in growth:
        if size != n:
            per_row[size] = (
                median_seconds(partial(upsert, models[:size]), setup=empty, repeat=3) / size * 1e6
            )
    smallest = min(growth)
    base = report.add(
        Result("growth", f"upsert at {smallest:,} rows", round(per_row[smallest], 2), "us/row")
    )
    for size in sorted(growth)[1:]:
        ratio = per_row[size] / per_row[smallest]
        report.add(
            Result(
                "growth",
                f"upsert at {size:,} rows",
                round(per_row[size], 2),
                "us/row",
                base.name,
                round(ratio, 3),
                "<= 1.5x",
                ratio <= 1.5,
            )
        )

    # Peak memory: child processes stream rows (generated lazily) through the upsert, at a
    # tenth of the size and at full size (2 and 20 chunks): flat means the same peak.
    chunk = n // 20
    url_text = url.render_as_string(hide_password=False)
    generating = _child_rss(
        f"from bench.database import _rss_generate_only; _rss_generate_only({n})"
    )
    report.add(Result(g, "peak RSS, generate rows only", round(generating / 1024, 1), "MiB"))
    peaks = {}
    for size in (n // 10, n):
        empty()
        peaks[size] = _child_rss(
            f"from bench.database import _rss_child; _rss_child({url_text!r}, {size}, {chunk})"
        )
    small = report.add(
        Result(
            g,
            f"peak RSS, upsert streaming {n // 10:,} rows",
            round(peaks[n // 10] / 1024, 1),
            "MiB",
        )
    )
    ratio = peaks[n] / peaks[n // 10]
    report.add(
        Result(
            g,
            f"peak RSS, upsert streaming {n:,} rows",
            round(peaks[n] / 1024, 1),
            "MiB",
            small.name,
            round(ratio, 3),
            "<= 1.25x",
            ratio <= 1.25,
            note=f"chunks of {chunk:,} rows",
        )
    )


def ohlcv_queries(report: Report, url: URL, gap_bars: int, missing: int, runs: int) -> None:
    """Range/latest reads over the table loaded by bulk_ohlcv; gap detection on its own series."""
    db = Database(settings=load_settings(), url=url)
    rng = random.Random(7)
    with connect(url) as conn:
        conn.autocommit = True
        conn.execute("vacuum analyze ohlcv")
        per_symbol = conn.execute("select count(*) from ohlcv where symbol = 'S0/USDT'").fetchone()
    assert per_symbol is not None
    span = int(per_symbol[0])
    samples, floor = [], []
    with db.service_session() as session, connect(url) as raw:
        repo = OhlcvRepository(session)
        for _ in range(runs):
            first = START + timedelta(minutes=rng.randrange(0, span - 500))
            args = {
                "source": "binance",
                "symbol": "S3/USDT",
                "timeframe": "1m",
                "start": first,
                "end": first + timedelta(minutes=500),
            }
            seconds, got = timed(lambda a=args: repo.get_range(**a))  # type: ignore[misc]
            assert len(got) == 500
            samples.append(seconds * 1000)
            seconds, _ = timed(
                lambda a=args: raw.execute(  # type: ignore[misc]
                    "select bucket_start, open, high, low, close, volume from ohlcv"
                    " where source = %s and symbol = %s and timeframe = %s"
                    " and bucket_start >= %s and bucket_start < %s order by bucket_start",
                    ("binance", "S3/USDT", "1m", a["start"], a["end"]),
                ).fetchall()
            )
            floor.append(seconds * 1000)
        latest = [
            timed(
                lambda: repo.get_latest(source="binance", symbol="S5/USDT", timeframe="1m", n=100)
            )[0]
            * 1000
            for _ in range(runs)
        ]
    p50, p95 = percentiles(samples)
    f50, _ = percentiles(floor)
    raw_result = report.add(
        Result("queries", "500-bar range, raw psycopg fetch p50 (baseline)", round(f50, 3), "ms")
    )
    report.add(
        Result(
            "queries",
            "500-bar range get_range p50",
            round(p50, 3),
            "ms",
            raw_result.name,
            round(p50 / f50, 3),
            "< 5 ms",
            p50 < 5,
        )
    )
    report.add(Result("queries", "500-bar range get_range p95", round(p95, 3), "ms"))
    l50, l95 = percentiles(latest)
    report.add(Result("queries", "latest 100 get_latest p50", round(l50, 3), "ms"))
    report.add(Result("queries", "latest 100 get_latest p95", round(l95, 3), "ms"))

    # Gap detection: one series of `gap_bars` one-minute bars with `missing` left out.
    holes = frozenset(rng.sample(range(1, gap_bars - 1), missing))
    series = [
        b.model_copy(update={"symbol": "GAP/USDT"}) for b in bars(gap_bars, symbols=1, skip=holes)
    ]
    BulkWriter(db).copy(Ohlcv, rows=series)
    with connect(url) as conn:
        conn.autocommit = True
        conn.execute("vacuum analyze ohlcv")
    end = START + timedelta(minutes=gap_bars)
    sql_ms, scan_ms = [], []
    for _ in range(5):
        with db.service_session() as session:
            seconds, gaps = timed(
                lambda: OhlcvRepository(session).gaps(
                    source="binance", symbol="GAP/USDT", timeframe="1m", start=START, end=end
                )
            )
        assert sum(g.missing for g in gaps) == missing, gaps
        sql_ms.append(seconds * 1000)
        with connect(url) as conn:
            seconds, found = timed(lambda c=conn: _fetch_and_scan(c, end))  # type: ignore[misc]
        assert found == missing
        scan_ms.append(seconds * 1000)
    scan = report.add(
        Result(
            "gaps",
            f"fetch-and-scan in Python, {gap_bars // 1000}k bars (baseline)",
            round(statistics_median(scan_ms), 1),
            "ms",
        )
    )
    sql = statistics_median(sql_ms)
    speedup = statistics_median(scan_ms) / sql
    report.add(
        Result(
            "gaps",
            f"gaps() in SQL, {gap_bars // 1000}k bars, {missing} missing",
            round(sql, 1),
            "ms",
            scan.name,
            round(speedup, 3),
            ">= 2.5x",
            speedup >= 2.5,
            note="ratio = how many times faster",
        )
    )
    db.dispose()


def statistics_median(values: list[float]) -> float:
    return percentiles(values)[0]


def _fetch_and_scan(conn: Any, end: datetime) -> int:
    """The predecessors' way: pull every timestamp into Python, walk them."""
    rows = conn.execute(
        "select bucket_start from ohlcv where source = 'binance' and symbol = 'GAP/USDT'"
        " and timeframe = '1m' and bucket_start >= %s and bucket_start < %s order by bucket_start",
        (START, end),
    ).fetchall()
    step, missing, previous = timedelta(minutes=1), 0, START - timedelta(minutes=1)
    for (stamp,) in rows:
        missing += (stamp - previous) // step - 1
        previous = stamp
    return missing + (end - previous) // step - 1


class Alerts(Repository[Alert]):
    model = Alert


def rls_read(report: Report, url: URL, users: int, per_user: int, runs: int) -> None:
    with connect(url) as conn:
        conn.execute(
            "insert into auth.users (id, email) select gen_random_uuid(), 'u' || g || '@bench.test'"
            " from generate_series(1, %s) g",
            (users,),
        )
        conn.execute(
            "insert into alerts (user_id, name, alert_type, conditions)"
            " select u.id, 'rule ' || g, 'whale_transaction',"
            ' \'{"alert_type": "whale_transaction", "min_value_eth": "100"}\''
            " from auth.users u cross join generate_series(1, %s) g",
            (per_user,),
        )
        owner = conn.execute("select id from auth.users order by id limit 1").fetchone()
        conn.commit()
    with connect(url) as conn:
        conn.autocommit = True
        conn.execute("vacuum analyze alerts")
    assert owner is not None
    uid = owner[0]
    db = Database(settings=load_settings(), url=url)
    as_user, as_service = [], []
    for _ in range(runs):
        with db.user_session(claims=user_claims(user_id=uid)) as session:
            seconds, rows = timed(lambda s=session: Alerts(s).list(limit=per_user))  # type: ignore[misc]
            assert len(rows.data) == per_user
            as_user.append(seconds * 1000)
        with db.service_session() as session:
            seconds, rows = timed(
                lambda s=session: Alerts(s).list(  # type: ignore[misc]
                    filters={"user_id": uid}, limit=per_user
                )
            )
            assert len(rows.data) == per_user
            as_service.append(seconds * 1000)
    g = f"rls {users * per_user // 1000}k"
    service = report.add(
        Result(
            g,
            f"owner's {per_user} rules, service session p50 (baseline)",
            round(percentiles(as_service)[0], 3),
            "ms",
        )
    )
    user = percentiles(as_user)[0]
    ratio = user / percentiles(as_service)[0]
    report.add(
        Result(
            g,
            f"owner's {per_user} rules, user session (RLS) p50",
            round(user, 3),
            "ms",
            service.name,
            round(ratio, 3),
            "<= 1.5x",
            ratio <= 1.5,
        )
    )
    db.dispose()
