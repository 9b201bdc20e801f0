"""What a SQLModel user writes instead of the package's bulk upsert: SQLAlchemy Core
`insert … on conflict do update` executemany in batches of 10,000, with and without pydantic
validation of each row first."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.dialects.postgresql import insert

from database.schema import WhaleTransaction, WhaleTransactionCreate

BATCH = 10_000


def core_upsert(engine: Engine, rows: list[dict[str, Any]], *, validate: bool) -> float:
    """Seconds to upsert `rows` by hash, a commit per batch, as the SQLAlchemy docs show it."""
    table = WhaleTransaction.__table__  # type: ignore[attr-defined]
    statement = insert(table)
    columns = [c for c in rows[0] if c != "hash"]
    statement = statement.on_conflict_do_update(
        index_elements=["hash"], set_={c: statement.excluded[c] for c in columns}
    )
    started = time.perf_counter()
    with engine.connect() as connection:
        for i in range(0, len(rows), BATCH):
            batch = rows[i : i + BATCH]
            if validate:  # every row through the Create schema, as an API would
                batch = [WhaleTransactionCreate.model_validate(r).model_dump() for r in batch]
            connection.execute(statement, batch)
            connection.commit()
    return time.perf_counter() - started
