"""Streams: tables whose new rows consumers read in commit order, exactly once.

A stream table (`StreamMixin`) stamps each row with the id of the transaction that inserted
it (`xact_id`, `pg_current_xact_id()`, 64 bits: it never wraps). A consumer remembers the
snapshot up to which it has read (`pg_current_snapshot()`): the rows to read next are those
whose transaction is visible in a newer snapshot and was not in the old one. A transaction
that runs long and commits late is still in progress in the old snapshot, so its rows come in
the next read: no row is skipped, none is read twice, and nothing waits on a clock.

Every stream table also notifies its own name (`pg_notify`) once per INSERT statement, so a
listener wakes at commit instead of polling (database.ddl declares the trigger).

A column may declare that some updates make a row news again (`restamps_stream`): such an
update stamps the row with the updating transaction, so consumers read it once more (a
liquidity zone that grows stronger), and the table notifies per UPDATE statement too.
"""

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql.base import ischema_names
from sqlalchemy.types import UserDefinedType
from sqlmodel import Field, SQLModel


class XactId(UserDefinedType[int]):
    """PostgreSQL `xid8`: a 64-bit transaction id, as a Python int."""

    cache_ok = True

    def get_col_spec(self, **_: Any) -> str:
        return "xid8"

    def bind_expression(self, bindvalue: Any) -> Any:
        return sa.cast(sa.cast(bindvalue, sa.Text), self)

    def bind_processor(self, dialect: Any) -> Any:
        return lambda value: None if value is None else str(value)

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        return lambda value: None if value is None else int(value)


class Snapshot(UserDefinedType[str]):
    """PostgreSQL `pg_snapshot` ("xmin:xmax:xip,…"), as text."""

    cache_ok = True

    def get_col_spec(self, **_: Any) -> str:
        return "pg_snapshot"

    def bind_expression(self, bindvalue: Any) -> Any:
        return sa.cast(sa.cast(bindvalue, sa.Text), self)

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        return lambda value: None if value is None else str(value)


# Reflection (Alembic's comparison) reads these column types back as the same classes.
ischema_names["xid8"] = XactId
ischema_names["pg_snapshot"] = Snapshot


class StreamMixin(SQLModel):
    # Set by the database on insert, never by a writer (the ORM leaves a None with a server
    # default out of its INSERT; bulk writes list only the Create schema's columns).
    # Nullable: rows older than the stream (before revision 0006) have none.
    xact_id: int | None = Field(
        default=None,
        sa_type=XactId(),
        sa_column_kwargs={"server_default": sa.text("pg_current_xact_id()")},
    )


def restamps_stream(when: str) -> dict[str, Any]:
    """`sa_column_kwargs` of a stream table's column: an UPDATE of it for which `when` holds
    (over `old` and `new`) stamps the row again, so stream consumers read it again."""
    return {"info": {"restamps_stream": when}}


def restamping_columns(table: sa.Table) -> list[tuple[str, str]]:
    """(column, condition) of the columns whose updates make a row new to the stream."""
    return [(c.name, c.info["restamps_stream"]) for c in table.c if "restamps_stream" in c.info]


def stream_index(table: str) -> sa.Index:
    """The index a consumer reads by: new rows in (xact_id, id) order."""
    return sa.Index(f"ix_{table}_xact_id_id", "xact_id", "id")


def is_stream(table: sa.Table) -> bool:
    return "xact_id" in table.c and isinstance(table.c.xact_id.type, XactId)
