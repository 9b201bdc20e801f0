"""The bulk writer's COPY text (repositories/bulk_copy) against psycopg's public COPY path.

The formatter calls psycopg's row formatter directly, a function psycopg does not export: an
upgrade that changed what it writes must fail here, not store different values. Rows hypothesis
picks go into one table through `Copy.write_row` and into another as the formatter's bytes;
the server must hold the same values in both. A value the driver cannot encode marks only its
own row unsendable.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb
from pydantic import BaseModel
from sqlalchemy import Connection

from database.repositories.bulk_copy import Formatter
from database.repositories.bulk_plan import CopyPlan

COLUMNS = (
    "ord int, label text, note text, amount numeric(38, 18), at timestamptz, key uuid,"
    " doc jsonb, flag boolean, count bigint, tags text[], kind text"
)


class Kind(enum.StrEnum):
    A = "a\tb"
    B = "c\\d"


TEXT = st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=30)
ZONE = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda m: timezone(timedelta(minutes=m))
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
ROW = st.tuples(
    TEXT,
    st.none() | TEXT,
    st.decimals(min_value=-(10**19), max_value=10**19, places=18, allow_nan=False),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=ZONE),
    st.uuids(),
    JSON.map(Jsonb),
    st.none() | st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.lists(TEXT, max_size=4),
    st.sampled_from(Kind),
)


def _plan() -> CopyPlan:
    # The formatter reads only the plan's generated columns: none here.
    return CopyPlan(
        table=sa.Table("t", sa.MetaData()), schema=BaseModel, fields=(), columns=(),
        converters=(), generated=(), key=(),
    )  # fmt: skip


@pytest.fixture
def tables(db_connection: Connection) -> psycopg.Connection[Any]:
    driver = db_connection.connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    for name in ("by_write_row", "by_formatter"):
        driver.execute(f"create temp table {name} ({COLUMNS}) on commit drop")
    return driver


def _stored(driver: psycopg.Connection[Any], table: str) -> list[tuple[Any, ...]]:
    return driver.execute(f"select * from {table} order by ord").fetchall()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=st.lists(ROW, max_size=12))
def test_the_formatter_stores_what_write_row_stores(
    tables: psycopg.Connection[Any], rows: list[tuple[Any, ...]]
) -> None:
    numbered = [(i, *row) for i, row in enumerate(rows)]
    tables.execute("truncate by_write_row, by_formatter")
    with tables.cursor() as cur, cur.copy("copy by_write_row from stdin") as copy:
        for row in numbered:
            copy.write_row(row)
    text = Formatter(_plan()).format(numbered)
    assert text.unsendable == {}
    assert len(text.ends) == len(numbered)
    with tables.cursor() as cur, cur.copy("copy by_formatter from stdin") as copy:
        copy.write(text.segment(0, len(numbered)))
    assert _stored(tables, "by_formatter") == _stored(tables, "by_write_row")


def test_a_value_the_driver_cannot_encode_marks_only_its_row(
    tables: psycopg.Connection[Any],
) -> None:
    good = ("x", None, Decimal(1), datetime(2026, 1, 1, tzinfo=UTC), uuid.uuid4(), Jsonb({}),
            True, 1, ["a"], Kind.A)  # fmt: skip
    rows = [
        (0, *good),
        (1, "nul\x00inside", *good[1:]),
        (2, *good),
        (3, "lone \udc80 surrogate", *good[1:]),
        (4, *good),
    ]
    text = Formatter(_plan()).format(rows)
    assert sorted(text.unsendable) == [1, 3]
    assert text.first_unsendable(0, 5) == 1 and text.first_unsendable(2, 3) is None
    with tables.cursor() as cur, cur.copy("copy by_formatter from stdin") as copy:
        for low, high in ((0, 1), (2, 3), (4, 5)):
            copy.write(text.segment(low, high))
    assert [r[0] for r in _stored(tables, "by_formatter")] == [0, 2, 4]
