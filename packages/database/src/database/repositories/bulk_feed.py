"""The caller's side of a bulk write: rows validated (inside pydantic-core, into dicts), built
into COPY tuples, sorted by key, de-duplicated and formatted as COPY text, chunk by chunk.
Chunks start small, so the server gets work at once, and double up to the writer's chunk size.
"""

from __future__ import annotations

import gc
import itertools
import operator
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any

from pydantic import BaseModel, ValidationError

from database.errors import ConflictError, InvalidInputError, invalid_input
from database.repositories.bulk_copy import CopyText, Formatter
from database.repositories.bulk_plan import CopyPlan
from database.repositories.bulk_results import Rejected
from database.repositories.rows import RowValidator

#: The first chunk's size: the server gets work at once; later chunks double up to chunk_size.
FIRST_CHUNK = 1_000
#: Rows per validator call. One call holds the GIL throughout; short ones let the writer's
#: thread answer the server between them (its round trips wait for the GIL otherwise).
SLICE = 500


@dataclass
class Chunk:
    start: int  # input position of the chunk's first row
    inputs: list[Any]  # the rows as given (rejects name them)
    built: list[tuple[Any, ...]]  # the valid rows' values, in input order
    positions: list[int]  # input position of each built tuple
    ordered: list[tuple[Any, ...]]  # `built` sorted by key, one per key (the last one wins)
    text: CopyText  # `ordered` as COPY lines (generated ids in front): what the writer sends
    invalid: list[Rejected]
    _where: dict[int, int] | None = None

    @property
    def size(self) -> int:
        """Rows to write."""
        return len(self.ordered)

    @property
    def merged_duplicates(self) -> int:
        return len(self.built) - len(self.ordered)

    def rejected(self, index: int, error: InvalidInputError | ConflictError) -> Rejected:
        """Row `index` of `ordered` as the input row it came from."""
        if self._where is None:  # only on the failure path: which input a tuple came from
            self._where = {id(built): i for i, built in enumerate(self.built)}
        position = self.positions[self._where[id(self.ordered[index])]]
        return Rejected(position=position, row=self.inputs[position - self.start], error=error)


class InputIteratorError(Exception):
    """The caller's iterator raised; carried out of the chunk generator as the cause."""


@cache
def _validator(schema: type[BaseModel]) -> RowValidator:
    return RowValidator(schema)


class Feed:
    """Chunks of validated, key-sorted COPY tuples, built on the caller's thread."""

    def __init__(
        self,
        rows: Iterable[Any],
        plan: CopyPlan,
        *,
        chunk_size: int,
        collect_invalid: bool,
        prevalidated: bool,
        dedupe: bool,
    ) -> None:
        self.plan = plan
        self.rows = iter(rows)
        self.chunk_size = chunk_size
        self.collect_invalid = collect_invalid
        self.prevalidated = prevalidated
        self.dedupe = dedupe
        self.read = 0
        self.build = plan.builder()
        self.formatter = Formatter(plan)
        self.validator = _validator(plan.schema)
        positions = plan.bare_key_positions()
        self.key = operator.itemgetter(*positions) if positions else None

    def chunks(self) -> Iterator[Chunk]:
        size = min(FIRST_CHUNK, self.chunk_size)
        while True:
            with _gc_paused():  # the caller's iterator too: it builds the rows
                try:
                    batch = list(itertools.islice(self.rows, size))
                except Exception as exc:  # the caller's iterator failed: say how far we got
                    raise InputIteratorError(exc) from exc
                chunk = self._chunk(batch) if batch else None
            if chunk is None:
                return
            yield chunk
            size = min(size * 2, self.chunk_size)

    def _chunk(self, batch: list[Any]) -> Chunk:
        start = self.read
        self.read += len(batch)
        built = self._built(batch)
        if built is not None:  # every row valid: positions are the input's
            ordered = self._ordered(built)
            return Chunk(
                start=start,
                inputs=batch,
                built=built,
                positions=list(range(start, start + len(batch))),
                ordered=ordered,
                text=self.formatter.format(ordered),
                invalid=[],
            )
        built = []
        positions: list[int] = []
        invalid: list[Rejected] = []
        build, schema = self.build, self.plan.schema
        validate = self.validator.validate_python
        trusted = self.prevalidated
        for offset, row in enumerate(batch):
            if isinstance(row, schema):
                values = row.__dict__
            elif trusted:
                values = row
            else:
                try:
                    values = validate(row.model_dump() if isinstance(row, BaseModel) else row)
                except ValidationError as exc:
                    error = invalid_input(exc, position=start + offset)
                    if not self.collect_invalid:
                        raise InvalidInputError(
                            field=error.field,
                            rule=error.rule,
                            position=start + offset,
                            errors=error.errors,
                        ) from None
                    invalid.append(Rejected(position=start + offset, row=row, error=error))
                    continue
            built.append(build(values))
            positions.append(start + offset)
        ordered = self._ordered(built)
        return Chunk(
            start=start,
            inputs=batch,
            built=built,
            positions=positions,
            ordered=ordered,
            text=self.formatter.format(ordered),
            invalid=invalid,
        )

    def _built(self, batch: list[Any]) -> list[tuple[Any, ...]] | None:
        """COPY tuples of the whole batch when it is all valid (the common case: a validator
        call per slice, no per-row bookkeeping); None sends it row by row."""
        build = self.build
        try:
            if all(isinstance(row, self.plan.schema) for row in batch):
                return [build(row.__dict__) for row in batch]
            if not self.prevalidated and any(isinstance(row, BaseModel) for row in batch):
                return None
            # Prevalidated: mappings, as the caller promised.
            validate = None if self.prevalidated else self.validator.validate_many
            built: list[tuple[Any, ...]] = []
            for i in range(0, len(batch), SLICE):
                piece = batch[i : i + SLICE]
                built += map(build, piece if validate is None else validate(piece))
            return built
        except (ValidationError, TypeError, KeyError):
            return None  # some row is not what it should be: the slow path says which

    def _ordered(self, built: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """Sorted by key (stable: among equal keys, input order); with `dedupe`, the last of
        each key only (one merge statement may not touch a row twice)."""
        key = self.key
        if key is None:
            return built
        try:
            ordered = sorted(built, key=key)
        except TypeError:  # a NULL in a key column: NULLs last, as PostgreSQL sorts them
            ordered = sorted(built, key=lambda row: _nulls_last(key(row)))
        if not self.dedupe or len(ordered) < 2:
            return ordered
        keys = list(map(key, ordered))
        if len(set(keys)) == len(keys):
            return ordered
        return [row for row, k, after in zip(ordered, keys, [*keys[1:], _END], strict=True)
                if k != after]  # fmt: skip


_END = object()


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while a chunk's rows are built.

    Those rows are acyclic tuples and dicts, yet allocating thousands of them triggers
    collections that walk everything the caller holds (a list of a million rows costs
    seconds). Reference counting still frees memory; the collector resumes after the chunk.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _nulls_last(value: Any) -> Any:
    if isinstance(value, tuple):
        return tuple(_nulls_last(v) for v in value)
    return (True, 0) if value is None else (False, value)
