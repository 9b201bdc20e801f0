"""`make bench` (`python -m bench [--quick]`): the package's benchmarks on a fresh database.

Prints a table and writes bench/results/<time>.json (and latest.json). Every figure stands next
to a baseline measured in the same run; targets are ratios, checked here, never in tests.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench import alert_service as alert_bench
from bench import database as db_bench
from bench import indexes as index_bench
from bench import partitions as partition_bench
from bench import seeds as seeds_bench
from bench import whale_tracker as wt_bench
from bench.harness import HEADER, Report, fresh_database
from database.schema.alerts import MAX_RULES_PER_USER


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="reduced sizes (CI: under 2 minutes)")
    args = parser.parse_args()
    quick = args.quick
    report = Report(quick=quick)
    started = time.perf_counter()
    print(HEADER)
    with fresh_database() as url:
        repeat = 1 if quick else 3  # full runs report the median of three
        db_bench.bulk_whales(
            report, url, 20_000 if quick else 100_000, repeat, peers=10_000 if quick else None
        )
        n = 100_000 if quick else 1_000_000
        growth = [10_000, 30_000, n] if quick else [10_000, 100_000, n]
        db_bench.bulk_ohlcv(report, url, n, growth, repeat)
        db_bench.ohlcv_queries(
            report,
            url,
            gap_bars=100_000 if quick else 500_000,
            missing=10 if quick else 50,
            runs=50 if quick else 200,
        )
        partition_bench.run(report, url, quick=quick)
        index_bench.brin_or_btree(
            report, url, rows=500_000 if quick else 5_000_000, repeat=20 if quick else 50
        )
        db_bench.rls_read(
            report,
            url,
            users=500 if quick else 2000,
            per_user=MAX_RULES_PER_USER,
            runs=20 if quick else 50,
        )
        with tempfile.TemporaryDirectory() as workdir:
            wt_bench.ingest_file(report, url, 50_000 if quick else 1_000_000, Path(workdir), repeat)
            wt_bench.concurrent_ingests(report, url, 20_000 if quick else 200_000, Path(workdir))
        wt_bench.api_serving(report, url, clients=(1, 4, 16), seconds=3 if quick else 10)
        alert_bench.evaluation(
            report, url, transactions=10_000 if quick else 100_000, rules=200 if quick else 1_000
        )
        alert_bench.notify_delay(report, url, samples=30 if quick else 100)
        alert_bench.json_checks(report, url, rows=2_000 if quick else 10_000)
        seeds_bench.trade_statistics(
            report, url, trades=100_000 if quick else 1_000_000, runs=5 if quick else 9
        )
        seeds_bench.sentiment_hourly(
            report, url, scores=50_000 if quick else 1_000_000, runs=3 if quick else 5
        )
        seeds_bench.ohlcv_from_trades(
            report, url, trades=50_000 if quick else 1_000_000, repeat=1 if quick else 3
        )
    path = report.write()
    missed = [r for r in report.results if r.met is False]
    print(f"\n{len(report.results)} figures in {time.perf_counter() - started:.0f} s -> {path}")
    for r in missed:
        print(f"target missed: {r.group} / {r.name}: {r.ratio} vs {r.target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
