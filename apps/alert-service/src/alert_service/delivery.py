"""Webhook delivery, on its own loop so a slow receiver never holds up evaluation.

Each delivery is a POST of the event as JSON with two headers:

    X-Alert-Timestamp: <unix seconds>
    X-Alert-Signature: v1=<hex HMAC-SHA256 of "<timestamp>.<body>" keyed by the rule's secret>

A receiver recomputes the HMAC over the raw body and rejects stale timestamps (replays).
A 2xx answer is delivered; anything else (or a timeout) is retried after an exponential
backoff with full jitter, and after `max_attempts` the event is `failed` with `last_error` —
a category the rule's owner can read ("target refused", "connection failed", "timeout",
"HTTP 503"), never the network's own words. Targets must be public HTTPS endpoints, checked
again at every delivery (`service_kit.egress`): DNS can change after a rule was saved.
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

from alert_service import queries
from alert_service.queries import WebhookJob
from database.sessions import Database
from service_kit.egress import PublicClient, TargetPolicy

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
    """Delivers due webhooks. One delivery's trouble — a rule without a usable webhook, a
    refused target, any exception while sending — settles that delivery alone."""

    def __init__(
        self,
        database: Database,
        *,
        backoff: Backoff | None = None,
        client: PublicClient | None = None,
        targets: TargetPolicy | None = None,
    ) -> None:
        self.database = database
        self.backoff = backoff or Backoff()
        self.client = client or PublicClient(
            targets or TargetPolicy.from_settings(database.settings)
        )

    def deliver_due(self, *, limit: int = 50) -> int:
        """Claim due deliveries, POST them, record the outcomes. Returns how many were tried."""
        with self.database.service_session() as session:
            jobs = queries.claim_webhooks(session, limit=limit, lease_seconds=60)
        for job in jobs:
            try:
                error, final = self._send(job)
            except Exception:  # a bug must cost one delivery, not the loop
                log.exception("webhook for event %s: unexpected error", job.event_id)
                error, final = "internal error", False
            self._settle(job, error=error, final=final)
        return len(jobs)

    def _send(self, job: WebhookJob) -> tuple[str | None, bool]:
        """(error category or None, whether retrying is pointless)."""
        if job.url is None:
            return "the rule has no usable webhook channel", True
        if job.secret is None:
            return "the rule has no webhook signing secret", True
        body = json.dumps(
            {
                "event_id": str(job.event_id),
                "alert_id": str(job.alert_id),
                "triggered_at": job.triggered_at.isoformat(),
                "data": job.payload,
            },
            separators=(",", ":"),
            default=str,
        ).encode()
        stamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "alert-service-webhooks",
            TIMESTAMP_HEADER: str(stamp),
            SIGNATURE_HEADER: sign(job.secret, stamp, body),
        }
        return self.client.post(job.url, content=body, headers=headers).error, False

    def _settle(self, job: WebhookJob, *, error: str | None, final: bool) -> None:
        last = final or job.attempt >= self.backoff.max_attempts
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
