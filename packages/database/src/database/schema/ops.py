"""Operational records of the service: system events and collector runs. Internal."""

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Self

import sqlalchemy as sa
from pydantic import AwareDatetime, model_validator
from pydantic import Field as PydanticField
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from database.errors import describe_pattern
from database.schema.base import (
    AccessClass,
    CreatedAtMixin,
    IdMixin,
    access_info,
    check,
    unset,
    utc_now,
)
from database.schema.rules import Text
from database.schema.streams import Snapshot, XactId
from database.schema.types import NonNegativeBigInt

_TEXT: Any = sa.Text
_TS: Any = sa.DateTime(timezone=True)
_ZERO: Any = {"server_default": "0"}


class Severity(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


class RunStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    # Its process died without a word (SIGKILL, power): found by the next run or housekeeping.
    ABANDONED = "abandoned"


# -- system_events ---------------------------------------------------------------------------


EventType = Annotated[str, Text(min_length=1, max_length=100)]
Message = Annotated[str, Text(min_length=1, max_length=10_000)]
ErrorText = Annotated[str, Text(max_length=10_000)]
Collector = Annotated[str, Text(min_length=1, max_length=100)]
#: Who runs it: "host:pid". While it runs, that process holds the run's advisory lock.
RunOwner = Annotated[str, Text(min_length=1, max_length=300)]


class SystemEventBase(SQLModel):
    event_type: EventType = Field(sa_type=_TEXT)
    severity: Severity = Field(sa_type=_TEXT)
    message: Message = Field(sa_type=_TEXT)


class SystemEvent(CreatedAtMixin, SystemEventBase, IdMixin, table=True):
    __tablename__ = "system_events"
    __table_args__ = (
        sa.Index("ix_system_events_severity_created_at", "severity", "created_at"),
        check("jsonb_typeof(context) = 'object'", "context_is_object"),
        access_info(AccessClass.INTERNAL),
    )

    context: dict[str, Any] = Field(
        default_factory=dict,
        sa_type=JSONB,
        sa_column_kwargs={"server_default": sa.text("'{}'::jsonb")},
    )


class SystemEventCreate(SystemEventBase):
    context: dict[str, Any] = PydanticField(default_factory=dict)


class SystemEventPublic(SystemEventBase):
    id: uuid.UUID
    context: dict[str, Any]
    created_at: datetime


# -- collection_runs -------------------------------------------------------------------------


class CollectionRunBase(SQLModel):
    collector: Collector = Field(sa_type=_TEXT)
    started_at: AwareDatetime = Field(default_factory=utc_now, sa_type=_TS)
    finished_at: AwareDatetime | None = Field(default=None, sa_type=_TS)
    status: RunStatus = Field(
        default=RunStatus.RUNNING,
        sa_type=_TEXT,
        sa_column_kwargs={"server_default": RunStatus.RUNNING.value},
    )
    records_collected: NonNegativeBigInt = Field(default=0, sa_type=sa.BigInteger)
    error: ErrorText | None = Field(default=None, sa_type=_TEXT)
    # Where the records read went; once a run has succeeded, read = collected + rejected +
    # skipped + filtered + merged (repeats of a record, written once). Kept current as it runs.
    records_read: NonNegativeBigInt = Field(
        default=0, sa_type=sa.BigInteger, sa_column_kwargs=_ZERO
    )
    records_rejected: NonNegativeBigInt = Field(
        default=0, sa_type=sa.BigInteger, sa_column_kwargs=_ZERO
    )
    records_skipped: NonNegativeBigInt = Field(
        default=0, sa_type=sa.BigInteger, sa_column_kwargs=_ZERO
    )
    records_filtered: NonNegativeBigInt = Field(
        default=0, sa_type=sa.BigInteger, sa_column_kwargs=_ZERO
    )
    records_merged: NonNegativeBigInt = Field(
        default=0, sa_type=sa.BigInteger, sa_column_kwargs=_ZERO
    )
    owner: RunOwner | None = Field(default=None, sa_type=_TEXT)

    @model_validator(mode="after")
    def _finished_when_done(self) -> Self:
        if (self.status is RunStatus.RUNNING) != (self.finished_at is None):
            raise ValueError("finished_at must be set exactly when status is not running")
        if self.finished_at is not None and self.finished_at < self.started_at:
            raise ValueError("finished_at must not be before started_at")
        return self


class CollectionRun(CollectionRunBase, IdMixin, table=True):
    __tablename__ = "collection_runs"
    __table_args__ = (
        sa.Index("ix_collection_runs_collector_started_at", "collector", "started_at"),
        check("(status = 'running') = (finished_at is null)", "finished_when_done"),
        check("finished_at >= started_at", "finished_after_started"),
        access_info(AccessClass.INTERNAL),
    )


class CollectionRunCreate(CollectionRunBase):
    pass


class CollectionRunUpdate(SQLModel):
    finished_at: AwareDatetime | None = unset()
    status: RunStatus = unset()
    records_collected: NonNegativeBigInt = unset()
    error: ErrorText | None = unset()
    records_read: NonNegativeBigInt = unset()
    records_rejected: NonNegativeBigInt = unset()
    records_skipped: NonNegativeBigInt = unset()
    records_filtered: NonNegativeBigInt = unset()
    records_merged: NonNegativeBigInt = unset()


class CollectionRunPublic(CollectionRunBase):
    id: uuid.UUID


# -- evaluator_cursors -----------------------------------------------------------------------

CURSOR_NAME_PATTERN = describe_pattern(
    "^[a-z0-9_.:-]{1,64}$", "must be 1-64 lower-case letters, digits and _ . : -"
)
CursorName = Annotated[str, Text(pattern=CURSOR_NAME_PATTERN)]


class EvaluatorCursorBase(SQLModel):
    # Where a consumer of a stream has got to (database.schema.streams): every row whose
    # transaction is visible in `done_snapshot` is handled (null: none yet). A window being
    # worked through in batches is `window_snapshot`, with the last row handled in it
    # (`after_xact_id`, `after_id`, in (xact_id, id) order).
    name: CursorName = Field(primary_key=True, sa_type=_TEXT)
    done_snapshot: str | None = Field(default=None, sa_type=Snapshot())
    window_snapshot: str | None = Field(default=None, sa_type=Snapshot())
    after_xact_id: int | None = Field(default=None, sa_type=XactId())
    after_id: uuid.UUID | None = None


class EvaluatorCursor(EvaluatorCursorBase, table=True):
    __tablename__ = "evaluator_cursors"
    __table_args__ = (
        check("(after_xact_id is null) = (after_id is null)", "position_complete"),
        check("after_id is null or window_snapshot is not null", "position_in_window"),
        access_info(AccessClass.INTERNAL),
    )

    updated_at: datetime = Field(
        default_factory=utc_now,
        sa_type=_TS,
        sa_column_kwargs={"server_default": sa.text("now()"), "nullable": False},
    )


class EvaluatorCursorCreate(EvaluatorCursorBase):
    @model_validator(mode="after")
    def _position_complete(self) -> Self:
        if (self.after_xact_id is None) != (self.after_id is None):
            raise ValueError("after_xact_id and after_id go together")
        if self.after_id is not None and self.window_snapshot is None:
            raise ValueError("a position needs its window_snapshot")
        return self


class EvaluatorCursorPublic(EvaluatorCursorBase):
    updated_at: datetime
