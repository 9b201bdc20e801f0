"""Where the worker hears about new stream rows: one evaluator, two possible sources.

* `NotifySource` - PostgreSQL LISTEN on the channels the schema notifies once per INSERT/COPY
  statement, one per stream table (its name). Works everywhere, including the embedded
  database and CI.
* `RealtimeSource` - Supabase Realtime `postgres_changes` INSERT events on
  public.whale_transactions (the one stream table in the `supabase_realtime` publication:
  quotes are too many to broadcast row by row), through the async supabase-py client; used
  when SUPABASE_URL and the service key are set. The other streams are then read on the
  catch-up timer.

Either one only wakes the evaluator; what gets evaluated always comes from the cursor, so a
missed or duplicated signal costs a little latency, never a missed or doubled alert (the
worker also catches up on a timer).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any, Protocol

from realtime.types import RealtimePostgresChangesListenEvent

from database.connect import Purpose, connect_raw
from database.schema.whales import NOTIFY_CHANNEL
from database.sessions import Database
from database.settings import Settings


class ChangeSource(Protocol):
    def wait(self, timeout: float) -> bool:
        """Block up to `timeout` seconds; True when new transactions were announced."""
        ...

    def announced(self) -> frozenset[str] | None:
        """The stream tables the last successful `wait` heard about (None: it cannot say)."""
        ...

    def close(self) -> None: ...


class NotifySource:
    def __init__(self, database: Database, *, channels: Sequence[str] = (NOTIFY_CHANNEL,)) -> None:
        self.connection = connect_raw(database.url, purpose=Purpose.SERVICE, autocommit=True)
        for channel in channels:  # table names of the code, not input
            self.connection.execute(f"listen {channel}")

        self._announced: frozenset[str] = frozenset()

    def wait(self, timeout: float) -> bool:
        heard = {n.channel for n in self.connection.notifies(timeout=timeout, stop_after=1)}
        if heard:  # and whatever else is already queued, without waiting
            heard |= {n.channel for n in self.connection.notifies(timeout=0)}
        self._announced = frozenset(heard)
        return bool(heard)

    def announced(self) -> frozenset[str] | None:
        return self._announced

    def close(self) -> None:
        self.connection.close()


class RealtimeSource:
    """Subscribes on a background event loop (Realtime needs the async client)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.woken = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def _start(self) -> None:
        ready = threading.Event()

        async def subscribe() -> None:
            from service_kit.supabase import async_service_client

            try:
                client = await async_service_client(settings=self.settings)
                channel = client.channel("alert-service-whale-transactions")
                channel.on_postgres_changes(
                    RealtimePostgresChangesListenEvent.Insert,
                    schema="public",
                    table="whale_transactions",
                    callback=self._on_insert,
                )
                await channel.subscribe()
            except Exception as exc:  # reported by the next wait()
                self.error = exc
            finally:
                ready.set()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.create_task(subscribe())
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, name="realtime", daemon=True)
        self.thread.start()
        ready.wait(timeout=30)

    def _on_insert(self, _: Any) -> None:
        self.woken.set()

    def wait(self, timeout: float) -> bool:
        if self.thread is None:
            self._start()
        if self.error is not None:
            raise RuntimeError(f"Supabase Realtime subscription failed: {self.error}")
        woken = self.woken.wait(timeout)
        self.woken.clear()
        return woken

    def announced(self) -> frozenset[str] | None:
        return frozenset({"whale_transactions"})  # the one table it subscribes to

    def close(self) -> None:
        if self.thread is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=5)


def _uses_realtime(settings: Settings) -> bool:
    return settings.supabase_url is not None and settings.supabase_service_role_key is not None


def change_source(
    database: Database, settings: Settings, *, channels: Sequence[str] = (NOTIFY_CHANNEL,)
) -> ChangeSource:
    """Realtime when the project's API is configured, LISTEN/NOTIFY on `channels` otherwise."""
    if _uses_realtime(settings):
        return RealtimeSource(settings)
    return NotifySource(database, channels=channels)


def change_source_name(settings: Settings) -> str:
    return "RealtimeSource" if _uses_realtime(settings) else "NotifySource"
