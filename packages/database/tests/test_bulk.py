"""Bulk writes: counts, in-batch duplicates, bad rows, failing inputs, RLS, async."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Connection, text
from sqlmodel import Session

from database.engine import Database
from database.errors import BulkWriteError, InvalidInputError
from database.models import WhaleTransaction, WhaleTransactionCreate
from database.repositories import (
    AlertRepository,
    AsyncRepository,
    OhlcvRepository,
    UpsertResult,
    WhaleTransactionRepository,
)
from database.testing import Identity
from database.testing.factories import OhlcvFactory, WhaleTransactionFactory, new_auth_user


def whales(n: int) -> list[WhaleTransactionCreate]:
    rows = WhaleTransactionFactory.build_batch(n)
    return [WhaleTransactionCreate.model_validate(r.model_dump()) for r in rows]


def _count(connection: Connection, table: str = "whale_transactions") -> int:
    return int(connection.execute(text(f"select count(*) from {table}")).scalar_one())


def test_empty_input_is_a_no_op(db_session: Session) -> None:
    assert WhaleTransactionRepository(db_session).upsert_many(rows=[]) == UpsertResult()


def test_insert_then_unchanged_then_updated(db_session: Session, db_connection: Connection) -> None:
    repo = WhaleTransactionRepository(db_session)
    batch = whales(1200)
    first = repo.upsert_many(rows=batch, chunk_size=500)
    assert (first.rows, first.inserted, first.updated, first.unchanged, first.chunks) == (
        1200,
        1200,
        0,
        0,
        3,
    )
    again = repo.upsert_many(rows=batch, chunk_size=500)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 1200)
    changed = [r.model_copy(update={"value_usd": Decimal("1.00")}) for r in batch[:10]]
    third = repo.upsert_many(rows=changed + batch[10:], chunk_size=500)
    assert (third.inserted, third.updated, third.unchanged) == (0, 10, 1190)
    assert _count(db_connection) == 1200
    ids_kept = db_connection.execute(
        text("select count(*) from whale_transactions where value_usd = 1.00")
    ).scalar_one()
    assert ids_kept == 10


def test_rows_repeated_in_a_batch_are_merged_last_wins(
    db_session: Session, db_connection: Connection
) -> None:
    one = whales(1)[0]
    later = one.model_copy(update={"value_eth": Decimal("42")})
    result = WhaleTransactionRepository(db_session).upsert_many(
        rows=[one.model_dump(), *whales(3), later.model_dump()]
    )
    assert (result.rows, result.inserted, result.merged_duplicates) == (5, 4, 1)
    value = db_connection.execute(
        text("select value_eth from whale_transactions where hash = :h"), {"h": one.hash}
    ).scalar_one()
    assert value == Decimal("42")


def test_an_invalid_row_names_position_field_and_rule_and_writes_nothing_of_its_chunk(
    db_session: Session, db_connection: Connection
) -> None:
    rows: list[Any] = [r.model_dump() for r in whales(1600)]
    rows[1503]["hash"] = "0xnot-a-hash"
    with pytest.raises(InvalidInputError) as caught:
        WhaleTransactionRepository(db_session).upsert_many(rows=rows, chunk_size=1000)
    error = caught.value
    assert (error.position, error.field) == (1503, "hash")
    assert "64 hex digits" in error.rule
    assert error.committed.rows == 1000  # type: ignore[attr-defined]
    assert _count(db_connection) == 1000  # the first chunk only


def test_negative_amounts_and_naive_datetimes_are_rejected_before_io(db_session: Session) -> None:
    repo = WhaleTransactionRepository(db_session)
    for field, bad, rule in (
        ("value_eth", "-1", "greater than or equal to 0"),
        ("block_timestamp", "2026-01-01T00:00:00", "timezone"),
    ):
        row = {**whales(1)[0].model_dump(), field: bad}
        with pytest.raises(InvalidInputError, match=rule) as caught:
            repo.upsert_many(rows=[row])
        assert (caught.value.position, caught.value.field) == (0, field)


def test_an_iterator_that_fails_midway_keeps_earlier_chunks_and_says_how_far(
    db_session: Session, db_connection: Connection
) -> None:
    def feed() -> Iterator[WhaleTransactionCreate]:
        yield from whales(2500)
        raise ConnectionResetError("upstream went away")

    with pytest.raises(BulkWriteError) as caught:
        WhaleTransactionRepository(db_session).upsert_many(rows=feed(), chunk_size=1000)
    assert caught.value.committed.rows == 2000  # type: ignore[attr-defined]
    assert "upstream went away" in str(caught.value)
    assert isinstance(caught.value.__cause__, ConnectionResetError)
    assert _count(db_connection) == 2000


def test_a_database_error_rolls_back_only_its_chunk(
    db_session: Session, db_connection: Connection
) -> None:
    existing = WhaleTransactionFactory()
    bars = [OhlcvFactory.build() for _ in range(3)]
    repo = OhlcvRepository(db_session)
    repo.insert_many(rows=[b.model_dump() for b in bars[:1]])
    with pytest.raises(BulkWriteError, match="duplicate key") as caught:
        repo.insert_many(rows=[b.model_dump() for b in bars[1:]] + [bars[0].model_dump()])
    assert caught.value.committed == UpsertResult()
    assert _count(db_connection, "ohlcv") == 1
    assert existing.id is not None


def test_unknown_key_columns_are_refused(db_session: Session) -> None:
    with pytest.raises(InvalidInputError, match="not a column"):
        WhaleTransactionRepository(db_session).upsert_many(rows=whales(1), key=["nope"])


def test_user_sessions_upsert_under_rls(
    db_session: Session, db_connection: Connection, identity: Identity
) -> None:
    me, someone_else = new_auth_user(), new_auth_user()
    rules = [{"name": f"r{i}", "alert_type": "whale_transaction",
              "conditions": {"min_value_eth": str(i + 1)}} for i in range(3)]  # fmt: skip
    repo = AlertRepository(db_session)
    with identity.as_user(me):
        result = repo.upsert_many(rows=rules, key=["id"], extra={"user_id": me})
        assert result.inserted == 3
        with pytest.raises(BulkWriteError, match="row-level security"):
            repo.upsert_many(rows=rules, key=["id"], extra={"user_id": someone_else})
    owners = db_connection.execute(text("select distinct user_id from alerts")).scalars().all()
    assert owners == [me]


def test_whale_filters_and_queries(db_session: Session) -> None:
    repo = WhaleTransactionRepository(db_session)
    watched = "0x" + "ab" * 20
    rows = whales(30)
    rows[3] = rows[3].model_copy(update={"to_address": watched, "value_eth": Decimal("5000")})
    rows[7] = rows[7].model_copy(update={"from_address": watched, "whale_score": Decimal("0.99")})
    rows[9] = rows[9].model_copy(update={"to_address": None})  # a contract creation
    repo.upsert_many(rows=rows)
    assert {t.hash for t in repo.by_address(address=watched.upper()).rows} == {
        rows[3].hash,
        rows[7].hash,
    }
    assert [t.hash for t in repo.search(filters={"min_value_eth": 5000}).rows] == [rows[3].hash]
    assert repo.top_by_score(limit=1)[0].hash == rows[7].hash
    assert repo.get_by_hash(hash=rows[9].hash.upper()) is not None
    with pytest.raises(InvalidInputError) as caught:
        repo.get_by_hash(hash="0x1234")
    assert caught.value.field == "hash"


async def test_async_repositories_share_the_sync_code(database: Database) -> None:
    batch = whales(300)
    try:
        async with database.async_service_session() as session:
            repo = AsyncRepository(session, WhaleTransactionRepository)
            result = await repo.run(WhaleTransactionRepository.upsert_many, rows=batch)
            page = await repo.search(filters={"min_value_eth": 0}, limit=5)
        assert result.inserted == 300
        assert len(page.rows) == 5
    finally:
        with database.service_session() as s:
            s.execute(text("delete from whale_transactions where hash = any(:h)"),
                      {"h": [r.hash for r in batch]})  # fmt: skip


def test_rows_are_stored_exactly(db_session: Session) -> None:
    row = whales(1)[0].model_copy(update={"value_eth": Decimal("123456789012.123456789012345678")})
    WhaleTransactionRepository(db_session).upsert_many(rows=[row])
    stored = WhaleTransactionRepository(db_session).get_by_hash(hash=row.hash)
    assert stored is not None and stored.value_eth == Decimal("123456789012.123456789012345678")
    assert isinstance(stored, WhaleTransaction) and stored.id.version == 7
