"""Users' own rows: profiles and watchlists (RLS decides in user sessions; the explicit user
filter on top lets the planner use the index even before the policy does)."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlmodel import select

from database.repositories.base import Repository
from database.schema.base import Page
from database.schema.users import Profile, WatchKind, WatchlistEntry


class ProfileRepository(Repository[Profile]):
    model = Profile

    def mine(self) -> Profile | None:
        """The signed-in user's profile (user sessions: auth.uid() of the claims)."""
        statement = select(Profile).where(Profile.id == sa.text("(select auth.uid())"))
        return self.session.exec(statement).one_or_none()

    def by_username(self, *, username: str) -> Profile | None:
        statement = select(Profile).where(Profile.username == username.strip().lower())
        return self.session.exec(statement).one_or_none()


class WatchlistRepository(Repository[WatchlistEntry]):
    model = WatchlistEntry

    def for_user(
        self,
        *,
        user_id: uuid.UUID,
        kind: WatchKind | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[WatchlistEntry]:
        filters: dict[str, object] = {"user_id": user_id}
        if kind is not None:
            filters["kind"] = WatchKind(kind).value
        return self.list(filters=filters, limit=limit, cursor=cursor)
