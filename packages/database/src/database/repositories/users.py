"""Users' own rows: profiles and watchlists. The generic reads are all they need: in a user
session RLS shows the caller's rows only, so `list()` is "mine"."""

from __future__ import annotations

from database.repositories.base import Repository
from database.schema.users import Profile, WatchlistEntry


class ProfileRepository(Repository[Profile]):
    model = Profile


class WatchlistRepository(Repository[WatchlistEntry]):
    model = WatchlistEntry
