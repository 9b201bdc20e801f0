"""`whale-tracker ingest`: stream records into whale_transactions through the package's bulk
upsert, rejecting bad records (with their line and reason) without stopping the run.

On the caller's thread: JSON Lines are validated as raw bytes inside pydantic-core, a batch of
lines per call (line by line only for a batch holding a bad one; CSV and Etherscan fields as
dicts, one by one) against `WhaleTransactionCreate`'s own rules, with the score and USD value
left out; only a valid record gets them computed (so 1e30 ETH is a reject, never an overflow),
a batch's in C-level maps, and the USD value is checked against its column's precision. Rows go
to `BulkWriter.upsert` as they are (no model instances), which sorts, writes and commits them
on its writer thread while the next chunk is read. A row the database refuses is rejected
alone; the rest of its chunk is written.
"""

from __future__ import annotations

import json
import operator
import signal
import threading
import time
from bisect import bisect_right
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import repeat
from pathlib import Path
from types import FrameType
from typing import Any, TextIO, cast

from pydantic import ValidationError
from sqlalchemy import Connection

from database.errors import invalid_input
from database.repositories import BulkWriter, MarketDataRepository, UpsertResult
from database.repositories.bulk import InputFailedError, Rejected
from database.repositories.rows import RowValidator
from database.schema import Chain, WhaleTransaction, WhaleTransactionCreate
from database.schema.rules import unwrap
from database.sessions import Database
from whale_tracker.ingest.inputs import Input, Problem, SourceError, open_input, utf8_problem
from whale_tracker.ingest.runs import Run, owned_run
from whale_tracker.ingest.scoring import (
    DEFAULT_CEILING_ETH,
    DEFAULT_FLOOR_ETH,
    UsdPrice,
    batch_scorer,
    scorer,
)
from whale_tracker.ingest.sources import Format, Payload, detect, read

COLLECTOR = "whale-tracker.ingest"
#: Quotes whose price is ETH in US dollars (or a dollar stablecoin).
ETH_USD_SYMBOLS = ("ETH/USD", "ETH/USDT", "ETH/USDC")
#: A row's line, carried beside its fields (the writer ignores keys it does not know); its
#: input is found from its position in the stream.
ORIGIN = "_origin"
_PROGRESS_EVERY = 2048


@dataclass(frozen=True)
class IngestOptions:
    fmt: Format | None = None
    chain: Chain = Chain.ETHEREUM
    eth_usd: Decimal | None = None
    min_value_eth: Decimal | None = None
    floor_eth: Decimal = DEFAULT_FLOOR_ETH
    ceiling_eth: Decimal = DEFAULT_CEILING_ETH
    strict: bool = False
    batch_size: int = 20_000
    rejects: Path | None = Path("rejects.jsonl")


@dataclass
class Summary:
    """Where every record read went: read = written + rejected + skipped + filtered +
    merged_duplicates (records repeated in the input, written once)."""

    read: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    filtered: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    merged_duplicates: int = 0
    retries: int = 0
    abandoned_runs: int = 0  # earlier runs found dead when this one started
    started: float = field(default_factory=time.perf_counter)
    eth_usd: Decimal | None = None
    size: int | None = None  # bytes of every input, when all are files
    bytes_read: int = 0

    @property
    def written(self) -> int:
        return self.inserted + self.updated + self.unchanged

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    @property
    def accounted(self) -> int:
        """What the records read became; equals `read` once a run has succeeded."""
        return (
            self.written
            + sum(self.rejected.values())
            + sum(self.skipped.values())
            + self.filtered
            + self.merged_duplicates
        )

    def counts(self) -> dict[str, int]:
        """The run's counts besides records_collected (collection_runs columns)."""
        return {
            "records_read": self.read,
            "records_rejected": sum(self.rejected.values()),
            "records_skipped": sum(self.skipped.values()),
            "records_filtered": self.filtered,
            "records_merged": self.merged_duplicates,
        }

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
            "retries": self.retries,
            "abandoned_runs": self.abandoned_runs,
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
            f"merged     {self.merged_duplicates:>12,}  (repeated in the input)",
            f"inserted   {self.inserted:>12,}",
            f"updated    {self.updated:>12,}",
            f"unchanged  {self.unchanged:>12,}",
            f"elapsed    {self.elapsed:>12.2f} s",
            f"rate       {rate:>12,.0f} rows/s",
        ]
        if self.eth_usd is not None:
            lines.append(f"ETH/USD    {self.eth_usd:>12}")
        if self.abandoned_runs:
            lines.append(f"abandoned  {self.abandoned_runs:>12,}  (earlier runs found dead)")
        return "\n".join(lines)


class StrictModeError(Exception):
    def __init__(self, source: str, line: int, reason: str) -> None:
        self.source, self.line, self.reason = source, line, reason
        super().__init__(f"{source}:{line}: {reason}")


class Interrupted(BaseException):  # a signal, as KeyboardInterrupt is
    """SIGINT or SIGTERM arrived: the run stops, and is recorded as failed."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")


def latest_eth_usd(database: Database) -> Decimal | None:
    with database.service_session() as session:
        quotes = MarketDataRepository(session).latest(symbols=list(ETH_USD_SYMBOLS))
    return max(quotes, key=lambda q: q.observed_at).price if quotes else None


class _Rejects:
    """The rejects file, created on the first bad record only. Both threads write to it."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.handle: TextIO | None = None
        self.lock = threading.Lock()

    def write(self, source: str, line: int, reason: str, record: Any) -> None:
        if self.path is None:
            return
        entry = {"source": source, "line": line, "reason": reason, "record": record}
        text = json.dumps(entry, default=str, ensure_ascii=False) + "\n"
        with self.lock:
            if self.handle is None:
                self.handle = self.path.open("w", encoding="utf-8")
            self.handle.write(text)

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
    cannot be used at all, Interrupted on SIGINT/SIGTERM, and the package's errors for database
    trouble. However it ends, the collection run is finalized: succeeded, or failed with the
    reason and the counts so far (and a system event) whenever the database is reachable; a run
    whose process is killed outright is marked abandoned by the next one.
    """
    summary = Summary(eth_usd=options.eth_usd or latest_eth_usd(database), size=input_size(paths))
    rejects = _Rejects(options.rejects)
    with _signals_interrupt() as signals, owned_run(database, collector=COLLECTOR) as run:
        summary.abandoned_runs = len(run.abandoned)
        job = _Job(paths, options, summary, rejects, run, progress, signals)
        try:
            result = BulkWriter(database, chunk_size=options.batch_size).upsert(
                WhaleTransaction,
                rows=job.rows(),
                prevalidated=True,
                on_reject=job.refused,
                on_chunk=job.checkpoint,
            )
        except BaseException as exc:
            job.sync()
            error = _unwrapped(exc)
            run.fail(reason=_describe(error), kind=type(error).__name__, counts=summary.counts())
            rejects.close()
            if progress is not None:
                progress(summary)
            if isinstance(error, KeyboardInterrupt):
                raise Interrupted(signal.SIGINT) from None
            raise error from None
        job.sync()
        _take(summary, result)
        rejects.close()
        if progress is not None:
            progress(summary)
        run.succeed(records_collected=summary.written, counts=summary.counts())
    return summary


def _take(summary: Summary, result: UpsertResult) -> None:
    summary.inserted, summary.updated = result.inserted, result.updated
    summary.unchanged, summary.merged_duplicates = result.unchanged, result.merged_duplicates
    summary.retries = result.retries


def _unwrapped(exc: BaseException) -> BaseException:
    """The reading's own failure (a source error, --strict, …), not the writer's wrapping."""
    if isinstance(exc, InputFailedError) and exc.__cause__ is not None:
        cause = exc.__cause__
        if isinstance(cause, OSError):
            return SourceError(f"cannot read the input: {cause.strerror or cause}")
        return cause
    return exc


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def input_size(paths: list[str]) -> int | None:
    """Bytes of every input, when all are files (stdin has no size)."""
    total = 0
    for path in paths:
        if path == "-":
            return None
        try:
            total += Path(path).stat().st_size
        except OSError:
            return None
    return total


class _Job:
    """One run's reading and accounting: the row stream (caller's thread) and the writer's
    hooks (writer thread)."""

    def __init__(
        self,
        paths: list[str],
        options: IngestOptions,
        summary: Summary,
        rejects: _Rejects,
        run: Run,
        progress: Callable[[Summary], None] | None,
        signals: list[int],
    ) -> None:
        self.paths = paths
        self.options = options
        self.summary = summary
        self.rejects = rejects
        self.run = run
        self.progress = progress
        self.signals = signals  # signals received: the reading stops at the next record
        self.lock = threading.Lock()  # the rejected counter is shared by both threads
        self._read = 0
        self._filtered = 0
        self._yielded = 0  # rows handed to the writer: a row's position in its stream
        self._starts: list[tuple[int, str]] = []  # (position of its first row, path)

    def sync(self) -> None:
        """Bring the summary's read/filtered counts up to date (kept in locals while hot)."""
        self.summary.read = self._read
        self.summary.filtered = self._filtered

    def rows(self) -> Iterator[dict[str, Any]]:
        """Every valid record as a row of every WhaleTransactionCreate field (+ its line)."""
        options, summary = self.options, self.summary
        validator = RowValidator(
            WhaleTransactionCreate,
            defaults={"chain": options.chain, "whale_score": None, "value_usd": None},
        )
        self._validate_json = validator.json_validator()
        self._validate_python = validator.python_validator()
        self._score = scorer(floor_eth=options.floor_eth, ceiling_eth=options.ceiling_eth)
        self._scores = batch_scorer(floor_eth=options.floor_eth, ceiling_eth=options.ceiling_eth)
        price = summary.eth_usd
        self._to_usd = UsdPrice(price, max_digits=_max_digits("value_usd")) if price else None
        done_bytes = 0
        for path in self.paths:
            with open_input(path) as source:
                fmt = options.fmt or detect(path, source.head)
                self._starts.append((self._yielded, path))
                if fmt is Format.JSONL:
                    yield from self._jsonl_rows(path, source, validator, done_bytes)
                else:
                    for line, payload in read(source, fmt):
                        if self.signals:
                            raise Interrupted(self.signals[0])
                        if not (self._read + 1) % _PROGRESS_EVERY:
                            self._report(done_bytes + source.consumed)
                        if (row := self._row(path, line, payload)) is not None:
                            self._yielded += 1
                            yield row
                done_bytes += source.size or source.consumed
        self.sync()
        self.summary.bytes_read = done_bytes

    def _jsonl_rows(
        self, path: str, source: Input, validator: RowValidator, done_bytes: int
    ) -> Iterator[dict[str, Any]]:
        """JSON Lines a batch at a time: one validator call per batch, and per line only what
        is derived from it. A batch holding any bad line goes line by line (`_row`), so each
        reject names its line."""
        validate_lines = validator.validate_json_lines
        report_at = self._read + _PROGRESS_EVERY
        for numbers, lines in source.byte_line_batches():
            if self.signals:
                raise Interrupted(self.signals[0])
            if self._read >= report_at:
                self._report(done_bytes + source.consumed)
                report_at = self._read + _PROGRESS_EVERY
            valid = validate_lines(lines=cast("list[bytes]", lines))
            if valid is None:
                for line, payload in zip(numbers, lines, strict=True):
                    if (row := self._row(path, line, payload)) is not None:
                        self._yielded += 1
                        yield row
                continue
            self._read += len(lines)
            kept = self._derived(path, numbers, cast("list[bytes]", lines), valid)
            self._yielded += len(kept)
            yield from kept

    def _derived(
        self, path: str, numbers: Sequence[int], lines: list[bytes], valid: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """A valid batch with score, USD value and line, in C-level maps (no Python per row)
        unless a row brings its own score or value, or is out of range, or is filtered."""
        values = list(map(_VALUE_ETH, valid))
        usd = None if self._to_usd is None else self._to_usd.many(values)
        if (
            (usd is None and self._to_usd is not None)
            or self.options.min_value_eth is not None
            or not all(map(operator.is_, map(_SCORE, valid), repeat(None)))
            or not all(map(operator.is_, map(_USD, valid), repeat(None)))
        ):
            return [
                row
                for line, payload, row in zip(numbers, lines, valid, strict=True)
                if self._derive(path, line, payload, row)
            ]
        _set_all(valid, "whale_score", self._scores(values))
        if usd is not None:
            _set_all(valid, "value_usd", usd)
        _set_all(valid, ORIGIN, numbers)
        return valid

    def _row(self, path: str, line: int, payload: Payload) -> dict[str, Any] | None:
        """One record validated and derived; None when it is rejected, skipped or filtered."""
        kind = type(payload)
        try:
            if kind is bytes:
                if payload.isspace():  # type: ignore[union-attr]
                    return None  # a blank line (whitespace only): not a record
                self._read += 1
                row = self._validate_json(payload)  # type: ignore[arg-type]
            elif kind is dict:
                self._read += 1
                row = self._validate_python(payload)
            else:
                self._read += 1
                self._problem(path, line, payload)  # type: ignore[arg-type]
                return None
        except ValidationError as exc:
            self._reject(path, line, _reason(exc, payload), _shown(payload))
            return None
        return row if self._derive(path, line, payload, row) else None

    def _derive(self, path: str, line: int, payload: Payload, row: dict[str, Any]) -> bool:
        """A valid row's score, USD value and line; False when it is rejected or filtered."""
        value = row["value_eth"]
        if row["whale_score"] is None:
            row["whale_score"] = self._score(value)
        if self._to_usd is not None and row["value_usd"] is None:
            try:
                row["value_usd"] = self._to_usd(value)
            except ValueError as exc:
                self._reject(path, line, f"value_usd: {exc}", _shown(payload))
                return False
        minimum = self.options.min_value_eth
        if minimum is not None and value < minimum:
            self._filtered += 1
            return False
        row[ORIGIN] = line
        return True

    def _path_at(self, position: int) -> str:
        """The input that the row at `position` of the stream came from."""
        index = bisect_right(self._starts, position, key=lambda start: start[0]) - 1
        return self._starts[index][1] if index >= 0 else "?"

    def _report(self, consumed: int) -> None:
        self.sync()
        self.summary.bytes_read = consumed
        if self.progress is not None:
            self.progress(self.summary)

    def _problem(self, path: str, line: int, problem: Problem) -> None:
        if problem.skipped is not None:
            self.summary.skipped[problem.skipped] += 1
            return
        self._reject(path, line, problem.reason or "unusable", problem.record)

    def _reject(self, path: str, line: int, reason: str, record: Any) -> None:
        with self.lock:
            self.summary.rejected[reason.split(":", 1)[0]] += 1
        self.rejects.write(path, line, reason, record)
        if self.options.strict:
            raise StrictModeError(path, line, reason)

    # -- the writer's thread -----------------------------------------------------------------

    def refused(self, rejected: Rejected) -> None:
        """A row the database refused: rejected alone, the rest of its chunk is written."""
        row = dict(rejected.row)
        line = row.pop(ORIGIN, 0)
        self._reject(self._path_at(rejected.position), line, rejected.reason, row)

    def checkpoint(self, connection: Connection, total: UpsertResult) -> None:
        """Inside each chunk's transaction: the run's counts commit with its rows."""
        counts = self.summary.counts()
        counts["records_read"] = self._read
        counts["records_filtered"] = self._filtered
        counts["records_merged"] = total.merged_duplicates
        self.run.checkpoint(connection, records_collected=total.written, counts=counts)


_VALUE_ETH = operator.itemgetter("value_eth")
_SCORE = operator.itemgetter("whale_score")
_USD = operator.itemgetter("value_usd")


def _set_all(rows: list[dict[str, Any]], key: str, values: Iterable[Any]) -> None:
    """rows[i][key] = values[i] for every row, in one C-level loop."""
    deque(map(dict.__setitem__, rows, repeat(key), values), maxlen=0)


def _max_digits(name: str) -> int:
    """The precision a field's type declares (its NUMERIC column's)."""
    field_info = WhaleTransactionCreate.model_fields[name]
    _, metadata = unwrap(field_info.annotation)
    for item in [*metadata, *field_info.metadata]:
        for inner in [item, *getattr(item, "metadata", [])]:
            digits = getattr(inner, "max_digits", None)
            if isinstance(digits, int):
                return digits
    raise LookupError(f"{name} declares no max_digits")


def _reason(exc: ValidationError, payload: Any) -> str:
    first = exc.errors(include_url=False, include_input=False)[0]
    kind = first.get("type")
    if kind == "json_invalid":
        if isinstance(payload, bytes) and (problem := utf8_problem(payload)):
            return problem
        return f"json: not valid JSON ({first['msg'].removeprefix('Invalid JSON: ')})"
    if not first.get("loc") and kind in ("dict_type", "model_type"):
        return "json: a line must hold one JSON object"
    return str(invalid_input(exc))


def _shown(payload: Any) -> Any:
    """A rejected record as the rejects file shows it."""
    if isinstance(payload, bytes):
        text = payload.decode("utf-8", "replace").rstrip("\r\n")
        try:
            return json.loads(text)
        except ValueError:
            return text[:10_000]
    return payload


@contextmanager
def _signals_interrupt() -> Iterator[list[int]]:
    """SIGINT and SIGTERM raise Interrupted in the main thread, and are noted in the list this
    yields: a handler that happens to run inside a finalizer cannot raise, so the reading also
    stops at the next record (or batch of lines) once one is noted. Later signals are ignored,
    so the run's end is recorded undisturbed (SIGKILL still stops at once: the next run tidies
    up)."""
    fired: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield fired
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if not fired:
            fired.append(signum)
            raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield fired
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
