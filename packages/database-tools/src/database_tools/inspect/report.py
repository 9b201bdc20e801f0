"""`database inspect report`: the inspect verbs turned into rules that pass or fail.

The rules are Supabase's `inspect report` rules (old or ungranted locks, unused indexes, cache
hit ratio, sequential scans on large tables, tables waiting on autovacuum or never vacuumed)
plus a few the verbs make cheap (duplicate indexes, blocked and long-running queries, slow
statements, dead rows, bloat, inactive replication slots, rows caught by a default
partition).

Thresholds come from `[tool.database.report]` in the workspace's pyproject.toml, or from a TOML
file given with `--config` (the same keys, at the top level or under that table). Rules about
sizes and counts only judge tables big enough for the statistic to mean something, so a fresh
database with a little activity passes: see `Thresholds` for each default and why.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from database.errors import ConfigurationError
from database_tools.inspect import queries
from database_tools.inspect.queries import Conn, InspectUnavailableError


@dataclass(frozen=True)
class Thresholds:
    # A lock is "old" when the transaction holding it has been open this long (Supabase: 2 min).
    lock_max_age_seconds: float = 120.0
    # Unused indexes count only on tables with at least this many live rows: on a small or
    # new table an index nobody has used yet is not a finding.
    unused_index_min_table_rows: int = 1000
    unused_index_min_bytes: int = 0
    # Cache hit ratios (tables and indexes) must be at least this, judged once this many
    # blocks have been read: the first reads after a start are misses by nature.
    cache_hit_min_ratio: float = 0.94
    cache_hit_min_blocks: int = 10_000
    # Supabase's rule: a table of at least `seq_scan_min_rows` rows fails when its number of
    # sequential scans exceeds `seq_scan_max_ratio` times its row count.
    seq_scan_min_rows: int = 1000
    seq_scan_max_ratio: float = 0.1
    # Vacuum rules (waiting on autovacuum, never vacuumed, dead rows) judge tables of at least
    # this many live rows; dead rows fail above this share of live rows.
    vacuum_min_rows: int = 1000
    dead_rows_max_ratio: float = 0.2
    # A query (or a transaction left idle) running this long fails (Supabase: 5 min).
    long_running_seconds: float = 300.0
    # A statement whose mean execution time is at least this, over at least `slow_min_calls`
    # calls, fails.
    slow_mean_ms: float = 5000.0
    slow_min_calls: int = 1
    # Tables and indexes of at least `bloat_min_bytes` fail above this estimated bloat ratio.
    bloat_max_ratio: float = 4.0
    bloat_min_bytes: int = 10 * 1024 * 1024


def _coerce(name: str, value: Any, default: Any) -> Any:
    if isinstance(default, bool) or not isinstance(value, int | float) or isinstance(value, bool):
        raise ConfigurationError(f"[tool.database.report] {name} must be a number, got {value!r}")
    if isinstance(default, int) and not isinstance(default, bool):
        if value != int(value):
            raise ConfigurationError(f"[tool.database.report] {name} must be a whole number")
        return int(value)
    return float(value)


def thresholds_from(table: dict[str, Any], *, source: str) -> Thresholds:
    known = {f.name: f.default for f in fields(Thresholds)}
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ConfigurationError(
            f"{source}: unknown report setting(s) {', '.join(unknown)}; known: {', '.join(known)}"
        )
    values = {name: _coerce(name, value, known[name]) for name, value in table.items()}
    return replace(Thresholds(), **values)


def _workspace_pyproject(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        candidate = folder / "pyproject.toml"
        if candidate.exists() and (folder / "uv.lock").exists():
            return candidate
    return None


def load_thresholds(*, config: Path | None = None, cwd: Path | None = None) -> Thresholds:
    """`config` (a TOML file) when given, else the workspace pyproject's [tool.database.report]."""
    if config is not None:
        try:
            data = tomllib.loads(config.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigurationError(f"cannot read report settings from {config}: {exc}") from None
        table = data.get("tool", {}).get("database", {}).get("report", data)
        return thresholds_from(dict(table), source=str(config))
    pyproject = _workspace_pyproject((cwd or Path.cwd()).resolve())
    if pyproject is None:
        return Thresholds()
    data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    table = data.get("tool", {}).get("database", {}).get("report", {})
    return thresholds_from(dict(table), source=f"{pyproject} [tool.database.report]")


@dataclass(frozen=True)
class RuleResult:
    name: str
    status: str  # "pass", "fail" or "skipped"
    offenders: list[str]
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.status == "fail"


Rule = Callable[[Conn, Thresholds], RuleResult]


def _verdict(name: str, offenders: list[str], detail: str = "") -> RuleResult:
    return RuleResult(name, "fail" if offenders else "pass", offenders, detail)


def _table(row: dict[str, Any]) -> str:
    return f"{row['schema']}.{row['table']}"


def old_locks(conn: Conn, t: Thresholds) -> RuleResult:
    rows = queries.locks(conn).records()
    bad = [
        f"pid {r['pid']} {r['mode']} on {r['object']} ({r['age_s']} s)"
        for r in rows
        if r["granted"] and r["age_s"] is not None and r["age_s"] > t.lock_max_age_seconds
    ]
    return _verdict(f"no lock held longer than {t.lock_max_age_seconds:g} s", bad)


def ungranted_locks(conn: Conn, t: Thresholds) -> RuleResult:
    rows = queries.locks(conn).records()
    bad = [
        f"pid {r['pid']} waits for {r['mode']} on {r['object']}" for r in rows if not r["granted"]
    ]
    return _verdict("no ungranted locks", bad)


def blocked_queries(conn: Conn, t: Thresholds) -> RuleResult:
    rows = queries.blocking(conn).records()
    bad = [f"pid {r['blocked_pid']} blocked by pid {r['blocking_pid']}" for r in rows]
    return _verdict("no blocked queries", bad)


def unused_indexes(conn: Conn, t: Thresholds) -> RuleResult:
    rows = queries.index_stats(conn).records()
    bad = [
        f"{r['schema']}.{r['index']} on {r['table']} ({r['table_rows']} rows)"
        for r in rows
        if r["unused"]
        and r["table_rows"] >= t.unused_index_min_table_rows
        and (r["size"] or 0) >= t.unused_index_min_bytes
    ]
    detail = f"tables of at least {t.unused_index_min_table_rows} rows"
    return _verdict("no unused indexes", bad, detail)


def duplicate_indexes(conn: Conn, t: Thresholds) -> RuleResult:
    rows = queries.index_stats(conn).records()
    bad = [
        f"{r['schema']}.{r['index']} = {r['duplicate_of']}"
        for r in rows
        if r["duplicate_of"] and r["index"] < r["duplicate_of"].split(", ")[0]
    ]
    return _verdict("no duplicate indexes", bad)


def cache_hit_ratio(conn: Conn, t: Thresholds) -> RuleResult:
    rows = queries.cache_hit(conn).records()
    bad = []
    for r in rows:
        blocks = r["hits"] + r["reads"]
        if blocks >= t.cache_hit_min_blocks and r["ratio"] < t.cache_hit_min_ratio:
            bad.append(f"{r['name']} {float(r['ratio']):.1%} over {blocks} blocks")
    detail = f"judged after {t.cache_hit_min_blocks} blocks read"
    return _verdict(f"cache hit ratio at least {t.cache_hit_min_ratio:.0%}", bad, detail)


def seq_scans(conn: Conn, t: Thresholds) -> RuleResult:
    rows = queries.table_stats(conn).records()
    bad = [
        f"{_table(r)}: {r['seq_scans']} sequential scans, {r['rows']} rows"
        for r in rows
        if r["rows"] >= t.seq_scan_min_rows and r["seq_scans"] > t.seq_scan_max_ratio * r["rows"]
    ]
    name = (
        f"no table of {t.seq_scan_min_rows}+ rows with sequential scans over "
        f"{t.seq_scan_max_ratio:.0%} of its rows"
    )
    return _verdict(name, bad)


def waiting_on_autovacuum(conn: Conn, t: Thresholds) -> RuleResult:
    rows = queries.vacuum_stats(conn).records()
    bad = [
        f"{_table(r)}: {r['dead_rows']} dead rows, threshold {r['vacuum_threshold']}"
        + ("" if r["autovacuum_enabled"] else " (autovacuum disabled)")
        for r in rows
        if r["rows"] >= t.vacuum_min_rows and r["expect_autovacuum"]
    ]
    return _verdict(f"no table of {t.vacuum_min_rows}+ rows waiting on autovacuum", bad)


def never_vacuumed(conn: Conn, t: Thresholds) -> RuleResult:
    rows = queries.vacuum_stats(conn).records()
    bad = [
        f"{_table(r)} ({r['rows']} rows)"
        for r in rows
        if r["rows"] >= t.vacuum_min_rows and not r["last_vacuum"] and not r["last_autovacuum"]
    ]
    return _verdict(f"no table of {t.vacuum_min_rows}+ rows never vacuumed", bad)


def dead_rows(conn: Conn, t: Thresholds) -> RuleResult:
    rows = queries.vacuum_stats(conn).records()
    bad = [
        f"{_table(r)}: {r['dead_rows']} dead of {r['rows']} live"
        for r in rows
        if r["rows"] >= t.vacuum_min_rows and r["dead_rows"] > t.dead_rows_max_ratio * r["rows"]
    ]
    return _verdict(f"no table with more than {t.dead_rows_max_ratio:.0%} dead rows", bad)


def long_running(conn: Conn, t: Thresholds) -> RuleResult:
    rows = queries.long_running(conn, min_seconds=t.long_running_seconds).records()
    bad = [f"pid {r['pid']} {r['state']} for {r['duration_s']} s: {r['query']}" for r in rows]
    return _verdict(f"no query running longer than {t.long_running_seconds:g} s", bad)


def slow_statements(conn: Conn, t: Thresholds) -> RuleResult:
    name = f"no statement with a mean time of {t.slow_mean_ms:g} ms or more"
    try:
        result = queries.slow(
            conn, min_mean_ms=t.slow_mean_ms, min_calls=t.slow_min_calls, limit=50
        )
    except InspectUnavailableError as exc:
        return RuleResult(name, "skipped", [], str(exc))
    bad = [f"{r['mean_ms']} ms x {r['calls']}: {r['query']}" for r in result.records()]
    return _verdict(name, bad)


def bloated(conn: Conn, t: Thresholds) -> RuleResult:
    rows = queries.bloat(conn).records()
    bad = [
        f"{r['kind']} {r['schema']}.{r['name']}: {r['bloat']}x"
        for r in rows
        if r["size"] >= t.bloat_min_bytes and r["bloat"] > t.bloat_max_ratio
    ]
    return _verdict(f"no table or index bloated over {t.bloat_max_ratio:g}x (estimate)", bad)


def inactive_slots(conn: Conn, t: Thresholds) -> RuleResult:
    slots = queries.replication(conn)[0].records()
    bad = [f"{r['slot_name']} ({r['slot_type']})" for r in slots if not r["active"]]
    return _verdict("no inactive replication slots", bad)


def default_partition_rows(conn: Conn, t: Thresholds) -> RuleResult:
    rows = queries.partitions(conn)[1].records()
    bad = [f"{r['table']}_default: {r['default_rows']} rows" for r in rows if r["default_rows"]]
    detail = "rows outside every partition's range: make their partitions, then move them"
    return _verdict("no rows in a default partition", bad, detail if bad else "")


RULES: list[Rule] = [
    old_locks,
    ungranted_locks,
    blocked_queries,
    unused_indexes,
    duplicate_indexes,
    cache_hit_ratio,
    seq_scans,
    waiting_on_autovacuum,
    never_vacuumed,
    dead_rows,
    long_running,
    slow_statements,
    bloated,
    inactive_slots,
    default_partition_rows,
]


def run_report(conn: Conn, thresholds: Thresholds) -> list[RuleResult]:
    return [rule(conn, thresholds) for rule in RULES]
