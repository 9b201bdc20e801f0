"""`GET /health`: is the service up, and can it reach its database?

Anyone may ask, so the answer is only up or down: `{"status": "ok"}` (200) or 503. The server
version, latency and pool figures would tell a stranger what to attack and a user nothing
they need; operators get them from `database health` (`Database.health_check()`) and the log.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel

from database.sessions import Database
from service_kit.errors import responses

router = APIRouter()


class HealthStatus(BaseModel):
    status: Literal["ok"]


@router.get("/health", response_model=HealthStatus, responses=responses(413, 422, 503))
async def health(request: Request) -> HealthStatus:
    database: Database = request.app.state.database
    # The primary only: a lagging or lost replica is an operator's matter (`database health`),
    # not a reason for a load balancer to take every instance out at once.
    await database.ahealth_check(replicas=False)  # DatabaseUnavailableError -> 503
    return HealthStatus(status="ok")
