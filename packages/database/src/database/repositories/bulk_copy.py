"""A chunk's COPY data, formatted on the caller's thread.

The writer's thread then only sends bytes: it needs the GIL for little more than its round
trips, so it answers the server at once while the caller validates the next chunk, and the
server is never kept waiting for rows (the server, on the other core, is what a bulk write
waits for). Rows are formatted by psycopg's own text formatter, the one `Copy.write_row` uses,
with the adapters every connection of the package has (psycopg's defaults: nothing registers
its own dumpers). Ids generated here are a run of ascending UUIDv7s, written in front of each
line without building a tuple per row.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

# psycopg's C row formatter behind Copy.write_row (psycopg is pinned in uv.lock).
from psycopg._copy_base import format_row_text
from psycopg.adapt import Transformer

from database.repositories.bulk_plan import CopyPlan
from database.schema.types import uuid7_hex, uuid7_run

#: What the driver raises for a value it cannot encode (a lone surrogate, a NUL in text, a
#: type it cannot adapt): that row is unsendable, the others are not.
UNSENDABLE = (
    psycopg.DataError,
    psycopg.ProgrammingError,
    UnicodeError,
    ValueError,
    OverflowError,
    TypeError,
)


@dataclass
class CopyText:
    """COPY text of a chunk's rows, in order: row i is `data[ends[i - 1]:ends[i]]` (empty when
    the driver could not encode it: `unsendable[i]` says why)."""

    data: bytearray = field(default_factory=bytearray)
    ends: list[int] = field(default_factory=list)
    unsendable: dict[int, Exception] = field(default_factory=dict)

    def segment(self, low: int, high: int) -> memoryview:
        start = self.ends[low - 1] if low else 0
        return memoryview(self.data)[start : self.ends[high - 1] if high else 0]

    def first_unsendable(self, low: int, high: int) -> int | None:
        if not self.unsendable:
            return None
        return min((i for i in self.unsendable if low <= i < high), default=None)


class Formatter:
    """Formats rows of one plan (built tuples, generated columns not yet there)."""

    def __init__(self, plan: CopyPlan) -> None:
        self.plan = plan
        self.transformer = Transformer()
        # The common case, one generated uuid7 id: a run of ids, formatted in front of each line.
        self.ids = [make for _, make in plan.generated] == [uuid7_hex]

    def format(self, rows: Sequence[tuple[Any, ...]]) -> CopyText:
        ids: range | None = None
        if self.ids:
            ids = uuid7_run(len(rows))
        elif self.plan.generated:
            rows = self.plan.complete(list(rows))
        text = CopyText()
        start = 0
        while start < len(rows):
            start = self._format_from(text, rows, ids, start)
        return text

    def _format_from(
        self, text: CopyText, rows: Sequence[tuple[Any, ...]], ids: range | None, start: int
    ) -> int:
        """Format rows from `start` on; at a row the driver cannot encode, note it and return
        where to go on."""
        out, ends, tx = text.data, text.ends, self.transformer
        append = ends.append
        try:
            if ids is None:
                for row in itertools.islice(rows, start, None):
                    format_row_text(row, tx, out)
                    append(len(out))
            else:
                for value, row in zip(
                    ids[start:], itertools.islice(rows, start, None), strict=True
                ):
                    out += b"%032x\t" % value
                    format_row_text(row, tx, out)
                    append(len(out))
        except UNSENDABLE as exc:
            index = len(ends)
            mark = ends[-1] if ends else 0
            del out[mark:]  # what was written of this row
            append(mark)
            text.unsendable[index] = exc
            return index + 1
        return len(rows)
