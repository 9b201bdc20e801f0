"""The service's own records: collector runs and system events."""

from __future__ import annotations

import uuid
from typing import Any

from database.repositories.base import Repository
from database.schema.base import utc_now
from database.schema.ops import CollectionRun, RunStatus, Severity, SystemEvent


class CollectionRunRepository(Repository[CollectionRun]):
    model = CollectionRun
    sort = ("started_at", "id")

    def start(self, *, collector: str) -> CollectionRun:
        return self.create(data={"collector": collector})

    def finish(
        self,
        *,
        id: uuid.UUID,
        succeeded: bool,
        records_collected: int,
        error: str | None = None,
    ) -> CollectionRun | None:
        return self.update(
            id=id,
            data={
                "status": RunStatus.SUCCEEDED if succeeded else RunStatus.FAILED,
                "finished_at": utc_now(),
                "records_collected": records_collected,
                "error": error[:10_000] if error else None,
            },
        )


class SystemEventRepository(Repository[SystemEvent]):
    model = SystemEvent

    def log(
        self,
        *,
        event_type: str,
        severity: Severity | str,
        message: str,
        context: dict[str, Any] | None = None,
    ) -> SystemEvent:
        return self.create(
            data={
                "event_type": event_type,
                "severity": severity,
                "message": message[:10_000],
                "context": context or {},
            }
        )
