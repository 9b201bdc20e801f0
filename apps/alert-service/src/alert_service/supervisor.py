"""Keeps a worker loop running: a crash is logged, recorded and followed by a restart.

The evaluator and the deliverer handle a bad rule or a bad delivery themselves; what reaches
here is the rest — the database down, the listener's connection lost, a bug. Either way the
loop must not end silently on its thread, so `Supervisor.run` logs the traceback, writes a
`system_events` row (when the database can take it) and starts the loop again after a capped
exponential backoff, until `stop` is set.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from database.repositories import SystemEventRepository
from database.schema.ops import Severity
from database.sessions import Database

log = logging.getLogger("alert_service.supervisor")

CRASHED = "worker_loop_crashed"


@dataclass
class Supervisor:
    name: str
    loop: Callable[[threading.Event], None]
    database: Database
    base_seconds: float = 1.0
    cap_seconds: float = 60.0
    # A loop that ran this long before failing starts its backoff afresh.
    healthy_after_seconds: float = 60.0
    crashes: int = field(default=0, init=False)

    def run(self, stop: threading.Event) -> None:
        """Run `loop(stop)` until `stop` is set, restarting it whenever it raises."""
        streak = 0
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.loop(stop)
            except Exception as exc:
                self.crashes += 1
                streak = (
                    1 if time.monotonic() - started > self.healthy_after_seconds else streak + 1
                )
                delay = min(self.cap_seconds, self.base_seconds * 2 ** (streak - 1))
                log.exception("%s loop crashed; restarting in %.1f s", self.name, delay)
                self._record(exc, delay=delay)
                stop.wait(delay)

    def _record(self, exc: Exception, *, delay: float) -> None:
        try:
            with self.database.service_session() as session:
                SystemEventRepository(session).log(
                    event_type=CRASHED,
                    severity=Severity.ERROR,
                    message=f"{self.name} loop crashed ({type(exc).__name__}); restarting",
                    context={
                        "loop": self.name,
                        "error": str(exc)[:2000],
                        "crashes": self.crashes,
                        "restart_in_seconds": delay,
                    },
                )
        except Exception:  # the database may be what failed: the log line above stays
            log.warning("%s: the crash could not be recorded in system_events", self.name)

    def thread(self, stop: threading.Event) -> threading.Thread:
        return threading.Thread(target=self.run, args=(stop,), name=self.name, daemon=True)
