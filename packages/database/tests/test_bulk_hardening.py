"""BulkWriter under pressure: concurrent writers over overlapping keys, deadlocks from outside,
rows the database refuses inside good chunks, counts that add up, hooks inside the chunk's
transaction, and rows validated as dicts exactly as the model validates them.

The writer commits on its own connections, so these tests write for real and empty the table
afterwards.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy import Connection

from database.errors import BulkWriteError, InvalidInputError
from database.repositories import BulkWriter, UpsertResult, bulk_write
from database.repositories.bulk import Rejected
from database.repositories.bulk_plan import Statements, copy_plan, copy_rows
from database.repositories.bulk_write import ChunkWriter
from database.repositories.rows import RowValidator
from database.schema import (
    CollectionRunCreate,
    Ohlcv,
    OhlcvCreate,
    WhaleTransaction,
    WhaleTransactionCreate,
)
from database.sessions import Database
from database_tools.factories import OhlcvFactory, WhaleTransactionFactory
from database_tools.locks import wait_for_lock_waiter


@pytest.fixture(autouse=True)
def _empty_tables(truncate_after: Callable[..., None]) -> None:
    truncate_after("whale_transactions", "system_events", "ohlcv")


def rows(n: int, *, block: int = 0) -> list[dict[str, Any]]:
    built = WhaleTransactionFactory.build_batch(n)
    return [
        {**WhaleTransactionCreate.model_validate(r.model_dump()).model_dump(),
         "block_number": block + i}
        for i, r in enumerate(built)
    ]  # fmt: skip


def _scalar(database: Database, sql: str) -> Any:
    with database.service_session() as s:
        return s.execute(sa.text(sql)).scalar_one()


@contextmanager
def refusing(database: Database, condition: str) -> Iterator[None]:
    """A rule the database holds and the schema does not: rows breaking it are refused."""
    with database.engine.begin() as c:
        c.exec_driver_sql(
            f"alter table whale_transactions add constraint zz_test_refusal check ({condition})"
            " not valid"
        )
    try:
        yield
    finally:
        with database.engine.begin() as c:
            c.exec_driver_sql("alter table whale_transactions drop constraint zz_test_refusal")


def _adds_up(result: UpsertResult) -> bool:
    parts = result.written + result.merged_duplicates + result.rejected
    return result.rows == parts


# -- concurrency -----------------------------------------------------------------------------


def test_concurrent_upserts_over_overlapping_keys_finish_with_the_right_rows(
    database: Database,
) -> None:
    universe = rows(6000)
    # Four writers, each with most of the keys in its own order, some changed by each.
    batches = []
    for seed in range(4):
        rng = random.Random(seed)
        mine = [dict(r) for r in rng.sample(universe, 4500)]
        for r in mine[:300]:
            r["value_usd"] = Decimal(seed)
        batches.append(mine)
    results = _race(database, batches, chunk_size=700)
    union = {r["hash"] for b in batches for r in b}
    assert _scalar(database, "select count(*) from whale_transactions") == len(union)
    assert _scalar(database, "select count(distinct hash) from whale_transactions") == len(union)
    assert sum(r.inserted for r in results) == len(union)  # each key inserted exactly once
    for result, batch in zip(results, batches, strict=True):
        assert result.rows == len(batch) and _adds_up(result)


def _race(
    database: Database, batches: list[list[dict[str, Any]]], *, chunk_size: int
) -> list[UpsertResult]:
    """Upsert each batch on its own thread, all released at once; the results in batch order.
    Fails if any writer raised."""
    results: list[UpsertResult | BaseException | None] = [None] * len(batches)
    start = threading.Barrier(len(batches))

    def write(i: int) -> None:
        start.wait()
        try:
            writer = BulkWriter(database, chunk_size=chunk_size)
            results[i] = writer.upsert(WhaleTransaction, rows=batches[i])
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=write, args=(i,)) for i in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done = [r for r in results if isinstance(r, UpsertResult)]
    assert len(done) == len(batches), results
    return done


def test_keys_the_probe_misses_fall_back_to_the_merge_and_are_not_rewritten(
    database: Database,
) -> None:
    """The probe looks at a chunk's first, middle and last keys only: stored keys elsewhere
    surface as a unique violation of the direct COPY, which rolls back to the merge. Counts
    stay exact, and the stored rows are not rewritten."""
    batch = rows(900)
    ordered = sorted(batch, key=lambda r: r["hash"])
    stored = [ordered[i] for i in (100, 101, 600)]  # none first, middle or last
    BulkWriter(database).upsert(WhaleTransaction, rows=stored)
    before = _scalar(
        database, "select string_agg(xmin::text, ',' order by hash) from whale_transactions"
    )
    result = BulkWriter(database, chunk_size=5000).upsert(WhaleTransaction, rows=batch)
    assert (result.inserted, result.unchanged, result.updated, result.chunks) == (897, 3, 0, 1)
    assert _scalar(database, "select count(*) from whale_transactions") == 900
    after = _scalar(
        database,
        "select string_agg(xmin::text, ',' order by hash) from whale_transactions"
        f" where hash in ({', '.join(repr(r['hash']) for r in stored)})",
    )
    assert after == before


def test_writers_racing_over_the_same_new_keys_insert_each_once(database: Database) -> None:
    """Both start on the direct COPY into an empty table; the loser waits on the winner's keys,
    meets their unique violation and merges them as unchanged: no error, no duplicate."""
    batch = rows(3000)
    results = _race(database, [list(batch), list(batch)], chunk_size=1000)
    assert sum(r.inserted for r in results) == 3000
    assert sum(r.unchanged for r in results) == 3000 and all(r.updated == 0 for r in results)
    assert _scalar(database, "select count(distinct hash) from whale_transactions") == 3000
    assert _scalar(database, "select count(*) from whale_transactions") == 3000


def test_a_deadlock_from_outside_is_retried_and_the_chunk_counted_once(
    database: Database,
) -> None:
    first, second = sorted(rows(2), key=lambda r: r["hash"])
    writer = BulkWriter(database)
    writer.upsert(WhaleTransaction, rows=[first, second])
    changed = [{**first, "value_usd": Decimal(7)}, {**second, "value_usd": Decimal(7)}]
    outcome: list[UpsertResult | BaseException] = []
    # Another session holds the second row; the writer (key order) locks the first, then waits
    # for the second; the other session then asks for the first: a deadlock, which the writer
    # (waiting longer, so it detects it) loses and retries.
    with database.engine.connect() as other:
        other.begin()
        other.exec_driver_sql("set local deadlock_timeout = '20s'")  # the writer detects it
        other.execute(_touch, {"h": second["hash"]})

        def upsert() -> None:
            try:
                outcome.append(writer.upsert(WhaleTransaction, rows=changed))
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=upsert)
        thread.start()
        wait_for_lock_waiter(other.engine)
        other.execute(_touch, {"h": first["hash"]})  # blocks until the writer gives way
        other.commit()
        thread.join()
    (result,) = outcome
    assert isinstance(result, UpsertResult), result
    assert (result.retries, result.updated, result.rows) == (1, 2, 2)
    assert _scalar(database, "select count(*) from whale_transactions where value_usd = 7") == 2


_touch = sa.text("update whale_transactions set gas_used = gas_used where hash = :h")


def _bars(n: int) -> list[dict[str, Any]]:
    """`n` bars of one series, in key order."""
    return [
        OhlcvCreate.model_validate(b.model_dump()).model_dump() for b in OhlcvFactory.build_batch(n)
    ]


_INSERT_BAR = sa.text(
    "insert into ohlcv (source, symbol, timeframe, bucket_start, open, high, low, close, volume)"
    " values (:source, :symbol, :timeframe, :bucket_start, :open, :high, :low, :close, :volume)"
    " returning id"
)


def test_a_partitioned_merge_counts_a_key_committed_while_it_waited_as_updated(
    database: Database,
) -> None:
    """ohlcv is partitioned, so its merge cannot tell an update by xmax. A key another session
    commits after the merge's snapshot was taken is updated by the merge (ON CONFLICT sees it),
    so it must count as updated, not inserted: the count follows the row, not the snapshot."""
    first, middle, last = _bars(3)
    writer = BulkWriter(database)
    writer.upsert(Ohlcv, rows=[first, last])  # stored: the writer's probe finds them, so merges
    revised = {**middle, "close": Decimal("3001")}
    outcome: list[UpsertResult | BaseException] = []
    with database.engine.connect() as other:
        other.begin()
        theirs = other.execute(_INSERT_BAR, middle).scalar_one()  # not committed yet

        def upsert() -> None:
            try:
                outcome.append(writer.upsert(Ohlcv, rows=[first, revised, last]))
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=upsert)
        thread.start()
        wait_for_lock_waiter(other.engine)  # the merge waits on the middle key
        other.commit()
        thread.join()
    (result,) = outcome
    assert isinstance(result, UpsertResult), result
    assert (result.inserted, result.updated, result.unchanged) == (0, 1, 2)
    stored = _scalar(database, "select id::text || ' ' || close::text from ohlcv"
                     f" where bucket_start = '{middle['bucket_start'].isoformat()}'")  # fmt: skip
    assert stored == f"{theirs} 3001.000000000000000000"


@pytest.mark.parametrize("server_ids", [False, True], ids=["ids made here", "ids by default"])
def test_both_partitioned_merges_count_inserts_updates_and_unchanged_rows(
    database: Database, server_ids: bool
) -> None:
    """The partitioned merge tells new rows by the id they were staged with; where the database
    makes the ids (a user's writer), by the keys present before. Both count alike."""
    bars = _bars(6)
    BulkWriter(database).upsert(Ohlcv, rows=bars[:4])
    batch = [bars[0], {**bars[1], "close": Decimal("2995")}, bars[2], {**bars[3], "volume": 0}]
    batch += bars[4:]
    plan = copy_plan(Ohlcv, None, {}, server_ids=server_ids)
    statements = Statements(plan, "update")
    build = plan.builder()
    with database.engine.begin() as c:
        c.exec_driver_sql(statements.create_stage)
        copy_rows(c, statements.stage_copy, plan.complete([build(b) for b in batch]))
        counts = tuple(c.exec_driver_sql(statements.merge).one())
    assert counts == (2, 2)  # inserted, updated; the other two unchanged
    assert _scalar(database, "select count(*) from ohlcv") == 6
    assert _scalar(database, "select count(*) from ohlcv where close = 2995 or volume = 0") == 2


# -- refused rows ------------------------------------------------------------------------------


def test_a_row_the_database_refuses_costs_only_itself(database: Database) -> None:
    batch = rows(3000)
    rejected: list[Rejected] = []
    with refusing(database, "block_number not in (17, 2222)"):
        result = BulkWriter(database, chunk_size=1000).upsert(
            WhaleTransaction, rows=batch, on_reject=rejected.append
        )
        assert (result.inserted, result.rejected, result.rows) == (2998, 2, 3000)
        assert sorted(r.position for r in rejected) == [17, 2222]
        assert all(r.row is batch[r.position] for r in rejected)
        assert all("zz_test_refusal" in r.reason for r in rejected)
        assert rejected[0].error.field == "block_number"
        # The merge path too: every row exists, each one changed; the same two are refused.
        changed = [{**r, "value_usd": Decimal(1)} for r in batch]
        again: list[Rejected] = []
        result = BulkWriter(database, chunk_size=1000).upsert(
            WhaleTransaction, rows=changed, on_reject=again.append
        )
    assert (result.updated, result.rejected) == (2998, 2)
    assert sorted(r.position for r in again) == [17, 2222]
    assert _scalar(database, "select count(*) from whale_transactions") == 2998
    assert _scalar(database, "select count(*) from whale_transactions where value_usd = 1") == 2998


def test_many_refused_rows_are_each_left_out_alone(database: Database) -> None:
    batch = rows(1400)
    rejected: list[Rejected] = []
    with refusing(database, "mod(block_number, 7) <> 3"):
        result = BulkWriter(database).upsert(
            WhaleTransaction, rows=batch, on_reject=rejected.append
        )
    assert sorted(r.position for r in rejected) == list(range(3, 1400, 7))
    assert (result.inserted, result.rejected) == (1200, 200) and _adds_up(result)


def test_without_on_reject_a_refused_row_fails_its_chunk_only(database: Database) -> None:
    with refusing(database, "block_number <> 1500"), pytest.raises(BulkWriteError) as caught:
        BulkWriter(database, chunk_size=1000).upsert(WhaleTransaction, rows=rows(3000))
    assert "zz_test_refusal" in str(caught.value)
    assert caught.value.committed.rows == 1000  # type: ignore[attr-defined]
    assert _scalar(database, "select count(*) from whale_transactions") == 1000


def test_a_row_the_driver_cannot_send_costs_only_itself(database: Database) -> None:
    """Rows are formatted as COPY text before they are sent: one the driver cannot encode (a
    lone surrogate, taken as valid by a caller that promised so) is rejected alone."""
    validator = RowValidator(WhaleTransactionCreate)
    valid = [validator.validate_python(r) for r in rows(3000)]
    valid[1234]["to_address"] = "0x\ud800" + "0" * 39
    rejected: list[Rejected] = []
    result = BulkWriter(database, chunk_size=1000).upsert(
        WhaleTransaction, rows=valid, prevalidated=True, on_reject=rejected.append
    )
    assert (result.inserted, result.rejected) == (2999, 1) and _adds_up(result)
    assert [r.position for r in rejected] == [1234] and rejected[0].row is valid[1234]
    assert "cannot be sent to the database" in rejected[0].reason
    assert _scalar(database, "select count(*) from whale_transactions") == 2999
    # Without on_reject it fails its chunk only (the first 1000 rows were committed).
    with database.engine.begin() as c:
        c.exec_driver_sql("truncate whale_transactions")
    with pytest.raises(BulkWriteError) as caught:
        BulkWriter(database, chunk_size=1000).upsert(
            WhaleTransaction, rows=valid, prevalidated=True
        )
    assert caught.value.committed.rows == 1000  # type: ignore[attr-defined]
    assert _scalar(database, "select count(*) from whale_transactions") == 1000


def test_generated_ids_are_time_ordered_uuid7s_ascending_along_the_key(
    database: Database,
) -> None:
    BulkWriter(database).upsert(WhaleTransaction, rows=rows(2000))
    with database.service_session() as s:
        stored = s.execute(sa.text("select id, hash from whale_transactions order by id")).all()
    ids, hashes = [r.id for r in stored], [r.hash for r in stored]
    assert len(set(ids)) == 2000
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)
    # Two chunks (1000, then 1000): in id order, each chunk's rows come in key order.
    assert hashes[:1000] == sorted(hashes[:1000]) and hashes[1000:] == sorted(hashes[1000:])
    stamp = ids[0].int >> 80
    assert abs(stamp - time.time() * 1000) < 600_000  # milliseconds since the epoch


def test_invalid_rows_are_rejected_with_their_position_and_the_rest_written(
    database: Database,
) -> None:
    batch: list[dict[str, Any]] = rows(50)
    batch[3]["hash"] = "0xnope"
    batch[9]["gas_price"] = 2**63  # above bigint: a validation error, not a failed write
    batch[20] = dict(batch[21])  # a repeat: merged, the later one wins
    rejected: list[Rejected] = []
    result = BulkWriter(database).upsert(WhaleTransaction, rows=batch, on_reject=rejected.append)
    assert [(r.position, r.error.field) for r in rejected] == [(3, "hash"), (9, "gas_price")]
    assert (result.rows, result.inserted, result.merged_duplicates, result.rejected) == (
        50, 47, 1, 2,
    )  # fmt: skip
    assert _adds_up(result)


# -- hooks -----------------------------------------------------------------------------------


def test_on_chunk_runs_inside_the_chunk_transaction(database: Database) -> None:
    seen: list[int] = []

    def record(connection: Connection, total: UpsertResult) -> None:
        seen.append(total.written)
        connection.execute(
            sa.text(
                "insert into system_events (event_type, severity, message)"
                " values ('bulk.progress', 'info', :m)"
            ),
            {"m": str(total.written)},
        )
        if total.written > 2500:
            raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        BulkWriter(database, chunk_size=1000).upsert(
            WhaleTransaction, rows=rows(4000), on_chunk=record
        )
    assert seen == [1000, 2000, 3000]
    # The third chunk and its progress record rolled back together.
    assert _scalar(database, "select count(*) from whale_transactions") == 2000
    assert _scalar(database, "select max(message::int) from system_events") == 2000


def test_prevalidated_rows_are_written_as_given(database: Database) -> None:
    validator = RowValidator(WhaleTransactionCreate)
    valid = [validator.validate_python(r) | {"_origin": i} for i, r in enumerate(rows(10))]
    result = BulkWriter(database).upsert(WhaleTransaction, rows=valid, prevalidated=True)
    assert result.inserted == 10


# -- validation as dicts ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"hash": " 0X" + "AB" * 32 + " "},  # folded, then checked
        {"hash": "0x123"},
        {"value_eth": "1e30"},
        {"value_eth": "-1"},
        {"gas_price": 2**63},
        {"gas_price": "12"},
        {"block_timestamp": "2026-01-01T00:00:00"},  # naive
        {"chain": "bitcoin"},
        {"to_address": None},
        {"unknown": 1},
    ],
)
def test_the_row_validator_agrees_with_the_model(change: dict[str, Any]) -> None:
    data = {**rows(1)[0], **change}
    validator = RowValidator(WhaleTransactionCreate)
    try:
        expected: Any = dict(WhaleTransactionCreate.model_validate(data).__dict__)
    except ValidationError as exc:
        expected = [(e["loc"], e["type"]) for e in exc.errors()]
    try:
        got: Any = validator.validate_python(data)
    except ValidationError as exc:
        got = [(e["loc"], e["type"]) for e in exc.errors()]
    assert got == expected
    assert not validator.through_model


def test_schemas_with_model_rules_validate_through_the_model() -> None:
    validator = RowValidator(CollectionRunCreate)
    assert validator.through_model
    with pytest.raises(ValidationError, match="finished_at must be set"):
        validator.validate_python({"collector": "x", "status": "failed"})


def test_defaults_make_fields_optional() -> None:
    validator = RowValidator(WhaleTransactionCreate, defaults={"whale_score": None})
    data = rows(1)[0]
    del data["whale_score"]
    assert validator.validate_python(data)["whale_score"] is None
    with pytest.raises(InvalidInputError.__mro__[-2]):  # ValueError: not a field
        RowValidator(WhaleTransactionCreate, defaults={"nope": 1})


# -- the hand-over between the caller and the writer's thread ---------------------------------


def test_many_one_row_upserts_in_a_row_each_write_their_row(database: Database) -> None:
    """A one-row chunk is written before the caller's thread has woken from handing it over:
    the writer must wait for the next chunk, not take the hand-over's marker for one."""
    writer = BulkWriter(database)
    batch = rows(100)
    for row in batch:
        result = writer.upsert(WhaleTransaction, rows=[row])
        assert result.inserted == 1, result
    assert _scalar(database, "select count(*) from whale_transactions") == len(batch)


def test_the_writer_waits_while_the_slot_still_marks_the_last_hand_over() -> None:
    """The instant between the writer taking a chunk and the caller clearing the slot, made
    to last: the writer's next take waits for a real chunk (or the end), it returns neither
    the marker nor an error."""
    writer = ChunkWriter(nullcontext, None, None, identity=None, merge=True,  # type: ignore[arg-type]
                         on_reject=None, on_chunk=None)  # fmt: skip
    writer._slot = bulk_write._TAKEN
    taken: list[object] = []
    thread = threading.Thread(target=lambda: taken.append(writer._take()), daemon=True)
    thread.start()
    thread.join(0.3)
    assert thread.is_alive() and taken == []  # still waiting
    with writer._handoff:
        writer._slot = None  # the end of the input
        writer._handoff.notify_all()
    thread.join(5)
    assert taken == [None]
