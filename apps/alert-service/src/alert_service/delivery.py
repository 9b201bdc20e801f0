"""Webhook delivery, on its own loop so a slow receiver never holds up evaluation.

Each delivery is a POST of the event as JSON with two headers:

    X-Alert-Timestamp: <unix seconds>
    X-Alert-Signature: v1=<hex HMAC-SHA256 of "<timestamp>.<body>" keyed by the rule's secret>

A receiver recomputes the HMAC over the raw body and rejects stale timestamps (replays).
A 2xx answer is delivered; anything else (or a timeout) is retried after an exponential
backoff with full jitter, and after `max_attempts` the event is `failed` with `last_error`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import threading
import time
from dataclasses import dataclass

import httpx

from alert_service import queries
from alert_service.queries import WebhookJob
from database.sessions import Database

log = logging.getLogger("alert_service.delivery")

SIGNATURE_HEADER = "X-Alert-Signature"
TIMESTAMP_HEADER = "X-Alert-Timestamp"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"v1={digest.hexdigest()}"


def verify(
    secret: str, timestamp: int, body: bytes, signature: str, *, tolerance: int = 300
) -> bool:
    """What a receiver does (and what the tests check)."""
    if abs(time.time() - timestamp) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


@dataclass(frozen=True)
class Backoff:
    base_seconds: float = 2.0
    cap_seconds: float = 600.0
    max_attempts: int = 6

    def delay(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2^(attempt-1))]."""
        ceiling = min(self.cap_seconds, self.base_seconds * 2 ** (attempt - 1))
        return random.uniform(0, ceiling)  # noqa: S311 - jitter, not a secret


class Deliverer:
    def __init__(
        self,
        database: Database,
        *,
        backoff: Backoff | None = None,
        timeout_seconds: float = 5.0,
        http: httpx.Client | None = None,
    ) -> None:
        self.database = database
        self.backoff = backoff or Backoff()
        self.http = http or httpx.Client(timeout=timeout_seconds, follow_redirects=False)

    def deliver_due(self, *, limit: int = 50) -> int:
        """Claim due deliveries, POST them, record the outcomes. Returns how many were tried."""
        with self.database.service_session() as session:
            jobs = queries.claim_webhooks(session, limit=limit, lease_seconds=60)
        for job in jobs:
            self._deliver(job)
        return len(jobs)

    def _deliver(self, job: WebhookJob) -> None:
        error = None
        if job.url is None or job.secret is None:
            error = "the rule has no webhook channel any more"
        else:
            body = json.dumps(
                {
                    "event_id": str(job.event_id),
                    "alert_id": str(job.alert_id),
                    "triggered_at": job.triggered_at.isoformat(),
                    "data": job.payload,
                },
                separators=(",", ":"),
            ).encode()
            stamp = int(time.time())
            headers = {
                "Content-Type": "application/json",
                TIMESTAMP_HEADER: str(stamp),
                SIGNATURE_HEADER: sign(job.secret, stamp, body),
            }
            try:
                response = self.http.post(job.url, content=body, headers=headers)
                if not response.is_success:
                    error = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
        last = job.attempt >= self.backoff.max_attempts
        with self.database.service_session() as session:
            queries.settle_delivery(
                session,
                event_id=job.event_id,
                delivered=error is None,
                error=error,
                retry_in_seconds=None if error is None or last else self.backoff.delay(job.attempt),
            )
        if error is not None:
            log.warning(
                "webhook for event %s failed (attempt %d): %s", job.event_id, job.attempt, error
            )

    def run(self, stop: threading.Event, *, poll_seconds: float = 1.0) -> None:
        while not stop.is_set():
            if not self.deliver_due():
                stop.wait(poll_seconds)
