"""The worker process: deliver the outbox and run the monthly reset until stopped.

Polls every `WABAPOOL_WORKER_POLL_SECONDS`; on PostgreSQL it also LISTENs on `wabapool_outbox` (a
trigger NOTIFYs on every outbox insert) and wakes at once. Polling is the guarantee: a lost
notification or a dropped listening connection only delays an event to the next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import structlog
from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    import asyncpg

from wabapool import metrics
from wabapool.service import events
from wabapool.service.context import Clock, utc_now
from wabapool.storage.database import TRANSACTION_POOLING, async_url
from wabapool.worker.alerts import AlertSweeper
from wabapool.worker.cycles import CycleScheduler
from wabapool.worker.relay import Relay

log = structlog.get_logger("wabapool.worker")
NOTIFY_CHANNEL = "wabapool_outbox"
# How often the worker asks whether a pool's cycle has ended: a reset is at most this late.
RESET_CHECK_SECONDS = 30.0


class Worker:
    """One relay and one cycle scheduler in a loop."""

    def __init__(
        self,
        relay: Relay,
        scheduler: CycleScheduler | None,
        *,
        poll_seconds: float = 1.0,
        reset_check_seconds: float = RESET_CHECK_SECONDS,
        clock: Clock = utc_now,
        listen_url: str | None = None,
        sweeper: AlertSweeper | None = None,
    ) -> None:
        """`listen_url`: where LISTEN connects when the database is reached through PgBouncer in transaction
        pooling (a LISTEN there would sit on a server connection other clients get): the server itself
        (`WABAPOOL_DATABASE_DIRECT_URL`). Without one the worker only polls there."""
        self.listen_url = listen_url
        self.relay = relay
        self.scheduler = scheduler
        self.sweeper = sweeper
        self.poll_seconds = poll_seconds
        self.reset_check_seconds = reset_check_seconds
        self.clock = clock
        self._wake = asyncio.Event()
        self._next_reset_check: datetime | None = None
        self._listener: asyncpg.Connection | None = None

    def wake(self) -> None:
        self._wake.set()

    async def run_once(self) -> int:
        """One round: due resets (now and then), then every due event; returns events handled."""
        await self._maybe_reset()
        handled = 0
        while True:
            outcomes = await self.relay.deliver_due()
            handled += len(outcomes)
            if not outcomes:
                break
        await self._update_lag()
        return handled

    async def _maybe_reset(self) -> None:
        if self.scheduler is None:
            return
        now = self.clock()
        if self._next_reset_check is not None and now < self._next_reset_check:
            return
        try:
            await self.scheduler.run_due()
        except Exception:  # one failed round must not stop delivery; the next check retries
            log.exception("cycle_reset_failed")
        if self.sweeper is not None:
            try:
                await self.sweeper.run_due()
            except Exception:  # as above: the next check retries
                log.exception("alert_sweep_failed")
        self._next_reset_check = self.clock() + timedelta(seconds=self.reset_check_seconds)

    async def _update_lag(self) -> None:
        oldest = await events.oldest_pending_created_at(self.relay.database)
        lag = 0.0 if oldest is None else max((self.clock() - oldest).total_seconds(), 0.0)
        metrics.OUTBOX_LAG.set(lag)

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop` is set: a round, then sleep until a notification or the next poll."""
        await self._listen()
        try:
            while not stop.is_set():
                # Cleared before the round, not after: a notification that comes during the round wakes the
                # next one at once instead of being lost until the poll.
                self._wake.clear()
                try:
                    await self.run_once()
                except Exception:  # the database went away, a bug in one round: log, wait, go on
                    log.exception("worker_round_failed")
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.poll_seconds):
                        await _first(self._wake.wait(), stop.wait())
        finally:
            await self._unlisten()

    async def _listen(self) -> None:
        database = self.relay.database
        if database.is_sqlite:
            return
        direct = self.listen_url if database.pooling == TRANSACTION_POOLING else database.url
        if direct is None:
            log.info("worker_listen_skipped", reason="transaction pooling without WABAPOOL_DATABASE_DIRECT_URL")
            return
        try:
            import asyncpg

            url = make_url(async_url(direct)).set(drivername="postgresql").render_as_string(hide_password=False)
            self._listener = await asyncpg.connect(url)
            await self._listener.add_listener(NOTIFY_CHANNEL, lambda *_: self._wake.set())
        except Exception:  # polling still delivers everything
            log.warning("worker_listen_failed", exc_info=True)
            self._listener = None

    async def _unlisten(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
            self._listener = None


async def _first(*awaitables: Awaitable[object]) -> None:
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
