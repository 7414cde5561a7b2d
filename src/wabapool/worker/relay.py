"""The outbox relay: claim company heads, send each as a Standard Webhook, record what happened.

One attempt per claimed event: check the URL again (SSRF, DNS may have changed), sign, POST to the
checked address, then in one short transaction record the outcome: delivered (2xx), retry later
(on the schedule, or `Retry-After` on 429/503), dead letter (last attempt, or 410 which also
disables the company's webhook), or skipped (no webhook / disabled). A crash after the POST and
before the record leaves the lease to expire: the event is sent again with the same `webhook-id`.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import timedelta

import structlog

from wabapool import metrics
from wabapool.domain import webhooks as standard
from wabapool.pii import PiiSealer
from wabapool.service.context import Clock, utc_now
from wabapool.service.ssrf import UnsafeUrl, UrlGuard
from wabapool.service.webhooks import open_secret
from wabapool.storage import outbox as outbox_store
from wabapool.storage.database import Database
from wabapool.worker.delivery import Attempt, Sender
from wabapool.worker.retry import RETRY_AFTER_STATUSES, RetrySchedule, parse_retry_after

log = structlog.get_logger("wabapool.worker")

# Events one worker has in flight at once (one per company by construction).
MAX_IN_FLIGHT = 64
GONE = 410


@dataclass(frozen=True, slots=True)
class RelayOptions:
    """How one worker delivers; `from_settings` maps the WABAPOOL_* settings."""

    retry: RetrySchedule
    timeout_seconds: float = 15.0
    allow_private: bool = False
    max_in_flight: int = MAX_IN_FLIGHT

    @property
    def lease_seconds(self) -> float:
        """How long a claim lasts: an attempt is cut at timeout_seconds, so twice that is never outlived."""
        return max(2 * self.timeout_seconds, 1.0)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the relay recorded for one event (for tests, metrics and logs)."""

    event_id: str
    result: str  # delivered | retry | dead | skipped | lost_lease
    attempt: Attempt | None = None


class Relay:
    """Delivers outbox events for one worker process."""

    def __init__(
        self,
        database: Database,
        sealer: PiiSealer,
        *,
        options: RelayOptions,
        clock: Clock = utc_now,
        guard: UrlGuard | None = None,
        sender: Sender | None = None,
    ) -> None:
        self.database = database
        self.sealer = sealer
        self.options = options
        self.clock = clock
        self.guard = guard or UrlGuard(allow_private=options.allow_private)
        self.sender = sender or Sender(timeout_seconds=options.timeout_seconds)
        self.worker_id = uuid.uuid4().hex[:12]

    async def claim(self, limit: int) -> list[outbox_store.ClaimedEvent]:
        """Lease up to `limit` due company heads."""
        now = self.clock()
        async with self.database.transaction() as connection:
            return await outbox_store.claim_heads(
                connection,
                now=now,
                lease_until=now + timedelta(seconds=self.options.lease_seconds),
                token=str(uuid.uuid4()),
                limit=limit,
            )

    async def deliver_due(self) -> list[Outcome]:
        """Claim a batch and deliver it concurrently; returns the outcomes (empty when nothing was due)."""
        events = await self.claim(self.options.max_in_flight)
        return list(await asyncio.gather(*(self.deliver(event) for event in events)))

    async def deliver(self, event: outbox_store.ClaimedEvent) -> Outcome:
        """One attempt of one claimed event, and its record."""
        if event.webhook_url is None or event.webhook_secret is None:
            return await self._skip(event, "no webhook configured")
        if event.webhook_disabled_at is not None:
            return await self._skip(event, "webhook disabled (the receiver answered 410 Gone)")
        attempt = await self._attempt(event, event.webhook_url, event.webhook_secret)
        outcome = await self._record(event, attempt)
        self._observe(event, outcome)
        return outcome

    async def _attempt(self, event: outbox_store.ClaimedEvent, url: str, stored_secret: str) -> Attempt:
        try:
            key = standard.secret_bytes(open_secret(self.sealer, stored_secret))
        except ValueError as exc:  # a secret sealed with a key no longer in the ring, or malformed
            return Attempt(None, f"secret unusable: {type(exc).__name__}", None, 0.0)
        body = standard.event_body(
            event_id=event.event_id,
            event_type=event.event_type,
            company_id=event.company_id,
            created_at=event.created_at,
            data=event.payload,
        )
        try:
            async with asyncio.timeout(self.options.timeout_seconds):
                target = await self.guard.check(url)
                stamp = int(self.clock().timestamp())
                headers = standard.headers(key, message_id=event.event_id, timestamp_seconds=stamp, body=body)
                return await self.sender.post(target, headers=headers, body=body)
        except UnsafeUrl as exc:
            return Attempt(None, f"refused: {exc}", None, 0.0)
        except TimeoutError:
            return Attempt(None, f"timeout: no answer within {self.options.timeout_seconds:g} s", None, 0.0)

    async def _record(self, event: outbox_store.ClaimedEvent, attempt: Attempt) -> Outcome:
        at = self.clock()
        async with self.database.transaction() as connection:
            if attempt.succeeded:
                status = attempt.status if attempt.status is not None else 200
                await outbox_store.record_delivered(connection, event, status=status, at=at)
                return Outcome(event.event_id, "delivered", attempt)
            error = attempt.error or "failed"
            if attempt.status == GONE:
                await outbox_store.disable_webhook(connection, event.company_id, at=at)
                recorded = await outbox_store.record_dead(connection, event, status=GONE, error=error, at=at)
                return Outcome(event.event_id, "dead" if recorded else "lost_lease", attempt)
            retry_after = (
                parse_retry_after(attempt.retry_after, now=at) if attempt.status in RETRY_AFTER_STATUSES else None
            )
            delay = self.options.retry.delay_after(event.attempts, retry_after_seconds=retry_after)
            if delay is None:
                recorded = await outbox_store.record_dead(connection, event, status=attempt.status, error=error, at=at)
                return Outcome(event.event_id, "dead" if recorded else "lost_lease", attempt)
            recorded = await outbox_store.record_retry(
                connection,
                event,
                status=attempt.status,
                error=error,
                next_attempt_at=at + timedelta(seconds=delay),
            )
            return Outcome(event.event_id, "retry" if recorded else "lost_lease", attempt)

    async def _skip(self, event: outbox_store.ClaimedEvent, reason: str) -> Outcome:
        async with self.database.transaction() as connection:
            await outbox_store.record_skipped(connection, event, reason=reason, at=self.clock())
        metrics.record_webhook_delivery("skipped", "none")
        return Outcome(event.event_id, "skipped")

    def _observe(self, event: outbox_store.ClaimedEvent, outcome: Outcome) -> None:
        attempt = outcome.attempt
        status_class = attempt.status_class if attempt else "none"
        metrics.record_webhook_delivery(outcome.result, status_class)
        if attempt is not None:
            metrics.WEBHOOK_LATENCY.observe(attempt.elapsed_seconds)
            if not attempt.succeeded:
                metrics.WEBHOOK_FAILURES.labels(reason=attempt.reason).inc()
        if outcome.result == "dead":
            metrics.WEBHOOK_FAILURES.labels(reason="dead_letter").inc()
            metrics.DEAD_LETTERS.inc()
        log.info(
            "webhook_attempt",
            event_id=event.event_id,
            company_id=event.company_id,
            event_type=event.event_type,
            attempt=event.attempts,
            result=outcome.result,
            status=attempt.status if attempt else None,
        )

    async def close(self) -> None:
        await self.sender.close()
