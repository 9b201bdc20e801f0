"""`whale-tracker ingest`: stream records into whale_transactions through the package's bulk
upsert, rejecting bad records (with their line and reason) without stopping the run."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TextIO

from pydantic import TypeAdapter, ValidationError

from database.errors import BulkWriteError, DatabasePackageError, invalid_input
from database.repositories import (
    BulkWriter,
    CollectionRunRepository,
    MarketDataRepository,
    SystemEventRepository,
)
from database.schema import Chain, WhaleTransaction, WhaleTransactionCreate
from database.sessions import Database
from whale_tracker.ingest.scoring import DEFAULT_CEILING_ETH, DEFAULT_FLOOR_ETH, usd, whale_score
from whale_tracker.ingest.sources import Format, Raw, SourceError, records

COLLECTOR = "whale-tracker.ingest"
_VALIDATE = TypeAdapter(WhaleTransactionCreate).validate_python
#: Quotes whose price is ETH in US dollars (or a dollar stablecoin).
ETH_USD_SYMBOLS = ("ETH/USD", "ETH/USDT", "ETH/USDC")


@dataclass(frozen=True)
class IngestOptions:
    fmt: Format | None = None
    chain: Chain = Chain.ETHEREUM
    eth_usd: Decimal | None = None
    min_value_eth: Decimal | None = None
    floor_eth: Decimal = DEFAULT_FLOOR_ETH
    ceiling_eth: Decimal = DEFAULT_CEILING_ETH
    strict: bool = False
    batch_size: int = 10_000
    rejects: Path | None = Path("rejects.jsonl")


@dataclass
class Summary:
    read: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    filtered: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    merged_duplicates: int = 0
    started: float = field(default_factory=time.perf_counter)
    eth_usd: Decimal | None = None

    @property
    def written(self) -> int:
        return self.inserted + self.updated + self.unchanged

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def as_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "rejected": dict(self.rejected),
            "skipped": dict(self.skipped),
            "filtered": self.filtered,
            "inserted": self.inserted,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "merged_duplicates": self.merged_duplicates,
            "elapsed_seconds": round(self.elapsed, 3),
            "eth_usd": self.eth_usd,
        }

    def render(self) -> str:
        rate = self.read / self.elapsed if self.elapsed else 0.0
        lines = [
            f"read       {self.read:>12,}",
            f"rejected   {sum(self.rejected.values()):>12,}"
            + "".join(f"\n  {reason:<20} {n:>10,}" for reason, n in self.rejected.most_common()),
            f"skipped    {sum(self.skipped.values()):>12,}"
            + "".join(f"\n  {reason:<20} {n:>10,}" for reason, n in self.skipped.most_common()),
            f"filtered   {self.filtered:>12,}  (below --min-value-eth)",
            f"inserted   {self.inserted:>12,}",
            f"updated    {self.updated:>12,}",
            f"unchanged  {self.unchanged:>12,}",
            f"elapsed    {self.elapsed:>12.2f} s",
            f"rate       {rate:>12,.0f} rows/s",
        ]
        if self.eth_usd is not None:
            lines.append(f"ETH/USD    {self.eth_usd:>12}")
        return "\n".join(lines)


class StrictModeError(Exception):
    def __init__(self, source: str, line: int, reason: str) -> None:
        self.source, self.line, self.reason = source, line, reason
        super().__init__(f"{source}:{line}: {reason}")


class _BatchWriter:
    """Upserts batches on a worker thread while the caller parses the next one.

    At most one batch is in flight and one being built, so memory stays bounded; parsing
    (Python) and index maintenance (the server) overlap instead of taking turns.
    """

    def __init__(self, database: Database, summary: Summary) -> None:
        self.writer = BulkWriter(database)
        self.summary = summary
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-writer")
        self.pending: Future[None] | None = None

    def _write(self, batch: list[WhaleTransactionCreate]) -> None:
        result = self.writer.upsert(WhaleTransaction, rows=batch)
        self.summary.inserted += result.inserted
        self.summary.updated += result.updated
        self.summary.unchanged += result.unchanged
        self.summary.merged_duplicates += result.merged_duplicates

    def submit(self, batch: list[WhaleTransactionCreate]) -> None:
        self.wait()
        if batch:
            self.pending = self.pool.submit(self._write, batch)

    def wait(self, *, raise_errors: bool = True) -> None:
        pending, self.pending = self.pending, None
        if pending is None:
            return
        error = pending.exception()
        if error is not None and raise_errors:
            raise error

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def latest_eth_usd(database: Database) -> Decimal | None:
    with database.service_session() as session:
        quotes = MarketDataRepository(session).latest(symbols=list(ETH_USD_SYMBOLS))
    return max(quotes, key=lambda q: q.observed_at).price if quotes else None


def _reason(exc: ValidationError) -> str:
    return str(invalid_input(exc))


def _decimal(value: Any) -> Decimal | None:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() and number >= 0 else None


class _Rejects:
    """The rejects file, created on the first bad record only."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.handle: TextIO | None = None

    def write(self, source: str, raw: Raw, reason: str) -> None:
        if self.path is None:
            return
        if self.handle is None:
            self.handle = self.path.open("w", encoding="utf-8")
        entry = {"source": source, "line": raw.line, "reason": reason, "record": raw.fields}
        self.handle.write(json.dumps(entry, default=str) + "\n")

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


def ingest(
    paths: list[str],
    *,
    database: Database,
    options: IngestOptions,
    progress: Callable[[Summary], None] | None = None,
) -> Summary:
    """Read every path, upsert every valid record, account for every other one.

    Raises StrictModeError (with `--strict`) at the first bad record, SourceError for input that
    cannot be used at all, and the package's errors for database trouble; the collection run
    is recorded as failed (and a system event logged) whenever the database is reachable.
    """
    summary = Summary(eth_usd=options.eth_usd or latest_eth_usd(database))
    rejects = _Rejects(options.rejects)
    with database.service_session() as session:
        run = CollectionRunRepository(session).start(collector=COLLECTOR)
    writer = _BatchWriter(database, summary)
    batch: list[WhaleTransactionCreate] = []
    try:
        for path in paths:
            for raw in records(path, options.fmt):
                summary.read += 1
                model = _accept(raw, path, options, summary, rejects)
                if model is not None:
                    batch.append(model)
                    if len(batch) >= options.batch_size:
                        writer.submit(batch)
                        batch = []
                if progress is not None and not summary.read % 1000:
                    progress(summary)
        writer.submit(batch)
        writer.wait()
    except (SourceError, StrictModeError, BulkWriteError, DatabasePackageError, OSError) as exc:
        writer.wait(raise_errors=False)  # what was handed over is written (or failed) first
        _record_failure(database, run.id, summary, exc)
        raise
    finally:
        writer.close()
        rejects.close()
        if progress is not None:
            progress(summary)
    with database.service_session() as session:
        CollectionRunRepository(session).finish(
            id=run.id, succeeded=True, records_collected=summary.written
        )
    return summary


def _accept(
    raw: Raw, source: str, options: IngestOptions, summary: Summary, rejects: _Rejects
) -> WhaleTransactionCreate | None:
    if raw.skipped is not None:
        summary.skipped[raw.skipped] += 1
        return None
    reason = raw.reason
    model: WhaleTransactionCreate | None = None
    if reason is None:
        assert raw.fields is not None
        fields = {"chain": options.chain.value, **raw.fields}
        value = _decimal(fields.get("value_eth"))
        if value is not None:
            fields.setdefault(
                "whale_score",
                whale_score(value, floor_eth=options.floor_eth, ceiling_eth=options.ceiling_eth),
            )
            if summary.eth_usd is not None:
                fields.setdefault("value_usd", usd(value, summary.eth_usd))
        try:
            # A TypeAdapter skips SQLModel's model_validate wrapper, which adds nothing for a
            # non-table schema but costs a third of the time on this per-record path.
            model = _VALIDATE(fields)
        except ValidationError as exc:
            reason = _reason(exc)
    if reason is not None:
        summary.rejected[reason.split(":", 1)[0]] += 1
        rejects.write(source, raw, reason)
        if options.strict:
            raise StrictModeError(source, raw.line, reason)
        return None
    assert model is not None
    if options.min_value_eth is not None and model.value_eth < options.min_value_eth:
        summary.filtered += 1
        return None
    return model


def _record_failure(database: Database, run_id: Any, summary: Summary, exc: BaseException) -> None:
    try:
        with database.service_session() as session:
            CollectionRunRepository(session).finish(
                id=run_id, succeeded=False, records_collected=summary.written, error=str(exc)
            )
            SystemEventRepository(session).log(
                event_type="ingest.failed",
                severity="error",
                message=str(exc),
                context={
                    "read": summary.read,
                    "written": summary.written,
                    "kind": type(exc).__name__,
                },
            )
    except DatabasePackageError:
        pass  # the database itself is the failure: nothing more to record
