"""Bulk writes through BulkWriter: counts, in-batch duplicates, bad rows, failing inputs, RLS.

The writer owns its transactions (a chunk is committed for good), so these tests write to the
test database for real and empty the tables afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from database.errors import BulkWriteError, InvalidInputError
from database.repositories import BulkWriter, UpsertResult, WhaleTransactionRepository
from database.schema import Ohlcv, WatchlistEntry, WhaleTransaction, WhaleTransactionCreate
from database.sessions import Database, user_claims
from database_tools.factories import OhlcvFactory, WhaleTransactionFactory
from database_tools.identities import create_auth_user


@pytest.fixture(autouse=True)
def _empty_tables(truncate_after: Callable[..., None]) -> None:
    truncate_after("whale_transactions", "ohlcv", "watchlist_entries", "auth.users")


@pytest.fixture
def writer(database: Database) -> BulkWriter:
    return BulkWriter(database)


def whales(n: int) -> list[WhaleTransactionCreate]:
    rows = WhaleTransactionFactory.build_batch(n)
    return [WhaleTransactionCreate.model_validate(r.model_dump()) for r in rows]


def _count(database: Database, table: str = "whale_transactions") -> int:
    with database.service_session() as s:
        return int(s.execute(sa.text(f"select count(*) from {table}")).scalar_one())


def test_empty_input_is_a_no_op(writer: BulkWriter) -> None:
    assert writer.upsert(WhaleTransaction, rows=[]) == UpsertResult()


def test_insert_then_unchanged_then_updated(database: Database) -> None:
    writer = BulkWriter(database, chunk_size=500)
    batch = whales(1200)
    first = writer.upsert(WhaleTransaction, rows=batch)
    assert (first.rows, first.inserted, first.updated, first.unchanged, first.chunks) == (
        1200,
        1200,
        0,
        0,
        3,
    )
    again = writer.upsert(WhaleTransaction, rows=batch)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 1200)
    changed = [r.model_copy(update={"value_usd": Decimal("1.00")}) for r in batch[:10]]
    third = writer.upsert(WhaleTransaction, rows=changed + batch[10:])
    assert (third.inserted, third.updated, third.unchanged) == (0, 10, 1190)
    assert _count(database) == 1200
    with database.service_session() as s:
        kept = s.execute(
            sa.text("select count(*) from whale_transactions where value_usd = 1.00")
        ).scalar_one()
    assert kept == 10


def test_rows_repeated_in_a_batch_are_merged_last_wins(
    writer: BulkWriter, database: Database
) -> None:
    one = whales(1)[0]
    later = one.model_copy(update={"value_eth": Decimal("42")})
    result = writer.upsert(
        WhaleTransaction, rows=[one.model_dump(), *whales(3), later.model_dump()]
    )
    assert (result.rows, result.inserted, result.merged_duplicates) == (5, 4, 1)
    with database.service_session() as s:
        value = s.execute(
            sa.text("select value_eth from whale_transactions where hash = :h"), {"h": one.hash}
        ).scalar_one()
    assert value == Decimal("42")


def test_an_invalid_row_names_position_field_and_rule_and_writes_nothing_of_its_chunk(
    database: Database,
) -> None:
    rows: list[Any] = [r.model_dump() for r in whales(1600)]
    rows[1503]["hash"] = "0xnot-a-hash"
    with pytest.raises(InvalidInputError) as caught:
        BulkWriter(database, chunk_size=1000).upsert(WhaleTransaction, rows=rows)
    error = caught.value
    assert (error.position, error.field) == (1503, "hash")
    assert "64 hex digits" in error.rule
    assert error.committed.rows == 1000  # type: ignore[attr-defined]
    assert _count(database) == 1000  # the first chunk only


def test_negative_amounts_and_naive_datetimes_are_rejected_before_io(writer: BulkWriter) -> None:
    for field, bad, rule in (
        ("value_eth", "-1", "greater than or equal to 0"),
        ("block_timestamp", "2026-01-01T00:00:00", "timezone"),
    ):
        row = {**whales(1)[0].model_dump(), field: bad}
        with pytest.raises(InvalidInputError, match=rule) as caught:
            writer.upsert(WhaleTransaction, rows=[row])
        assert (caught.value.position, caught.value.field) == (0, field)


def test_an_iterator_that_fails_midway_keeps_earlier_chunks_and_says_how_far(
    database: Database,
) -> None:
    def feed() -> Iterator[WhaleTransactionCreate]:
        yield from whales(2500)
        raise ConnectionResetError("upstream went away")

    with pytest.raises(BulkWriteError) as caught:
        BulkWriter(database, chunk_size=1000).upsert(WhaleTransaction, rows=feed())
    assert caught.value.committed.rows == 2000  # type: ignore[attr-defined]
    assert "upstream went away" in str(caught.value)
    assert isinstance(caught.value.__cause__, ConnectionResetError)
    assert _count(database) == 2000


def test_a_database_error_rolls_back_only_its_chunk(writer: BulkWriter, database: Database) -> None:
    bars = [OhlcvFactory.build() for _ in range(3)]
    writer.copy(Ohlcv, rows=[b.model_dump() for b in bars[:1]])
    with pytest.raises(BulkWriteError, match="duplicate key") as caught:
        writer.copy(Ohlcv, rows=[b.model_dump() for b in bars[1:]] + [bars[0].model_dump()])
    assert caught.value.committed == UpsertResult()
    assert _count(database, "ohlcv") == 1


def test_unknown_key_columns_are_refused(writer: BulkWriter) -> None:
    with pytest.raises(InvalidInputError, match="not a column"):
        writer.upsert(WhaleTransaction, rows=whales(1), key=["nope"])


def test_a_user_writer_upserts_under_rls(database: Database) -> None:
    with database.service_session() as s:
        me, someone_else = create_auth_user(s.connection()), create_auth_user(s.connection())
    entries = [{"kind": "address", "reference": "0x" + f"{i:040x}", "label": f"w{i}"}
               for i in range(3)]  # fmt: skip
    key = ["user_id", "kind", "reference"]
    mine = BulkWriter(database, claims=user_claims(user_id=me))
    assert mine.upsert(WatchlistEntry, rows=entries, key=key, extra={"user_id": me}).inserted == 3
    relabelled = [{**e, "label": "renamed"} for e in entries]
    assert mine.upsert(WatchlistEntry, rows=relabelled, key=key, extra={"user_id": me}).updated == 3
    with pytest.raises(BulkWriteError, match="row-level security"):
        mine.upsert(WatchlistEntry, rows=entries, key=key, extra={"user_id": someone_else})
    with database.service_session() as s:
        rows = s.execute(sa.text("select distinct user_id, label from watchlist_entries")).all()
    assert [tuple(r) for r in rows] == [(me, "renamed")]


def test_whale_filters_and_queries(writer: BulkWriter, db_session: Session) -> None:
    watched = "0x" + "ab" * 20
    rows = whales(30)
    rows[3] = rows[3].model_copy(update={"to_address": watched, "value_eth": Decimal("5000")})
    rows[7] = rows[7].model_copy(update={"from_address": watched, "whale_score": Decimal("0.99")})
    rows[9] = rows[9].model_copy(update={"to_address": None})  # a contract creation
    writer.upsert(WhaleTransaction, rows=rows)
    repo = WhaleTransactionRepository(db_session)
    found = repo.search(filters={"address": watched.upper()}).data
    assert {t.hash for t in found} == {rows[3].hash, rows[7].hash}
    assert [t.hash for t in repo.search(filters={"min_value_eth": 5000}).data] == [rows[3].hash]
    assert repo.top_by_score(limit=1)[0].hash == rows[7].hash
    assert repo.get_by_hash(hash=rows[9].hash.upper()) is not None
    with pytest.raises(InvalidInputError) as caught:
        repo.get_by_hash(hash="0x1234")
    assert caught.value.field == "hash"


async def test_async_code_writes_through_a_thread_and_reads_through_the_async_twin(
    writer: BulkWriter, database: Database
) -> None:
    from database.repositories import AsyncRepository

    result = await asyncio.to_thread(writer.upsert, WhaleTransaction, rows=whales(300))
    async with database.async_service_session() as session:
        repo = AsyncRepository(session, WhaleTransactionRepository)
        page = await repo.run(WhaleTransactionRepository.search, filters={}, limit=5)
    assert result.inserted == 300
    assert len(page.data) == 5


def test_rows_are_stored_exactly(writer: BulkWriter, db_session: Session) -> None:
    row = whales(1)[0].model_copy(update={"value_eth": Decimal("123456789012.123456789012345678")})
    writer.upsert(WhaleTransaction, rows=[row])
    stored = WhaleTransactionRepository(db_session).get_by_hash(hash=row.hash)
    assert stored is not None and stored.value_eth == Decimal("123456789012.123456789012345678")
    assert stored.id.version == 7
