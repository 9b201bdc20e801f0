"""What a bulk write reports: its counts, the rows it left out and why, and its hooks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import Connection

from database.errors import ConflictError, InvalidInputError


@dataclass(frozen=True)
class UpsertResult:
    """What a bulk write did. `rows` counts every input row taken:
    rows = inserted + updated + unchanged + merged_duplicates + rejected. A row repeated within
    a chunk is counted once in inserted/updated/unchanged and once in `merged_duplicates`;
    `retries` counts chunk attempts repeated after a deadlock or serialization failure."""

    rows: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    merged_duplicates: int = 0
    rejected: int = 0
    chunks: int = 0
    retries: int = 0

    def __add__(self, other: UpsertResult) -> UpsertResult:
        return UpsertResult(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    @property
    def written(self) -> int:
        return self.inserted + self.updated + self.unchanged


@dataclass(frozen=True)
class Rejected:
    """An input row left out: `position` in the input, the row as given, and why (a validation
    error, or the database's refusal in the package's vocabulary)."""

    position: int
    row: Any
    error: InvalidInputError | ConflictError

    @property
    def reason(self) -> str:
        return str(self.error)


#: Called with each rejected row, on the writer's thread, before its chunk commits. Raising
#: rolls the chunk back and ends the call with that exception.
OnReject = Callable[[Rejected], None]
#: Called inside each chunk's transaction after its rows are written, with the call's running
#: total including that chunk: what it writes commits with the rows (e.g. a progress record).
OnChunk = Callable[[Connection, UpsertResult], None]
