"""Time partitioning, declared on the table model: one declaration drives the migration that
builds the partitions, `database maintain` (or pg_partman where it is installed), `inspect` and
the drift report.

    class Ohlcv(..., table=True):
        __table_args__ = (..., partitioned(access_info(...), OHLCV_PARTITIONS))
        __mapper_args__ = PARTITIONED_MAPPER

A partitioned table is range-partitioned on one timestamptz column, one partition per
`interval` (UTC boundaries), `premake` partitions ahead of now, and a default partition that
catches rows outside every range (`inspect` reports them). Partitions whose whole range is
older than `retention` are detached, then dropped or moved to the `archive` schema, never
emptied by a DELETE.

Every unique constraint of a partitioned table must contain the partition key, so the primary
key is (id, <partition key>) and the natural key includes the key. The ORM still identifies a
row by `id` alone (`PARTITIONED_MAPPER`): ids are UUIDv7 made once per row, and `get(id=…)`
keeps working; the database enforces (id, key) uniqueness only.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

import sqlalchemy as sa

#: Retired partitions that are kept go here: a schema the Data API does not expose.
ARCHIVE_SCHEMA = "archive"

#: The ORM identity of a partitioned table's rows: `id` alone (the key in the table is wider).
PARTITIONED_MAPPER: dict[str, Any] = {"primary_key": ["id"]}


class Interval(StrEnum):
    """How much time one partition holds. A closed set: pg_partman 4 knows them by name."""

    DAY = "1 day"
    WEEK = "1 week"
    MONTH = "1 month"

    @property
    def unit(self) -> str:
        """The date_trunc() unit of the boundaries."""
        return self.value.removeprefix("1 ")

    @property
    def partman4_name(self) -> str:
        return {"day": "daily", "week": "weekly", "month": "monthly"}[self.unit]

    @property
    def partman4_suffix(self) -> str:
        """pg_partman 4's to_char() format of partition names (5.x always uses YYYYMMDD)."""
        return {"day": "YYYY_MM_DD", "week": 'IYYY"w"IW', "month": "YYYY_MM"}[self.unit]


class Retired(StrEnum):
    """What happens to a partition older than the retention."""

    DROP = "drop"
    ARCHIVE = "archive"  # detached and moved to the archive schema, rows kept


_RETENTION = re.compile(r"^[1-9][0-9]* (days|weeks|months|years)$")


@dataclass(frozen=True)
class Partitioning:
    column: str
    interval: Interval
    premake: int
    retention: str  # a PostgreSQL interval: "90 days", "24 months"
    retired: Retired

    def __post_init__(self) -> None:
        if not _RETENTION.match(self.retention):
            raise ValueError(f"retention {self.retention!r}: write '<n> days|weeks|months|years'")
        if not 1 <= self.premake <= 60:
            raise ValueError("premake must be between 1 and 60 partitions")

    @property
    def partition_by(self) -> str:
        return f"range ({self.column})"


def partitioned(options: dict[str, Any], partitioning: Partitioning) -> dict[str, Any]:
    """`__table_args__`'s closing dict (e.g. `access_info(...)`) plus the partitioning."""
    info = dict(options.get("info", {}))
    info["partitioning"] = {**asdict(partitioning)}
    return {**options, "info": info, "postgresql_partition_by": partitioning.partition_by}


def partitioning_of(table: sa.Table) -> Partitioning | None:
    found = table.info.get("partitioning")
    if found is None:
        return None
    return Partitioning(
        column=found["column"],
        interval=Interval(found["interval"]),
        premake=found["premake"],
        retention=found["retention"],
        retired=Retired(found["retired"]),
    )


def partitioned_tables() -> list[tuple[sa.Table, Partitioning]]:
    """Every partitioned table of the package's metadata, with its declaration."""
    from database.schema.base import metadata

    return [
        (table, spec)
        for table in metadata.sorted_tables
        if (spec := partitioning_of(table)) is not None
    ]
