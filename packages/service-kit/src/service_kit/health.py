"""`GET /health`: is the service up, and can it reach its database?"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request

from database.sessions import Database

router = APIRouter()


@router.get("/health", responses={503: {"description": "The database is unavailable"}})
async def health(request: Request) -> dict[str, Any]:
    database: Database = request.app.state.database
    checked = await database.ahealth_check()
    return {
        "status": "ok",
        "database": {
            "server_version": checked.server_version,
            "latency_ms": checked.latency_ms,
            "pool": asdict(checked.pool),
        },
    }
