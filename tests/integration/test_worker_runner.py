"""The worker loop: NOTIFY wakes it on PostgreSQL long before its poll; polling alone delivers on SQLite; metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import COMPANY_ID, TEST_PII_KEYS, FakeClock, provision_demo_pool
from tests.waiting import eventually
from tests.worker_receiver import Receiver
from wabapool import metrics
from wabapool.pii import PiiSealer
from wabapool.service import BillingService
from wabapool.storage.database import Database
from wabapool.worker.relay import Relay, RelayOptions
from wabapool.worker.retry import RetrySchedule
from wabapool.worker.runner import Worker


async def seconds_until(condition: Callable[[], bool], *, what: str) -> float:
    """How long `condition` took to hold (it is waited for, never guessed)."""
    started = time.monotonic()
    await eventually(condition, what=what, within_seconds=10)
    return time.monotonic() - started


def sample(name: str, **labels: str) -> float:
    value = metrics.REGISTRY.get_sample_value(name, labels or None)
    return value or 0.0


# Only PostgreSQL notifies: on SQLite the worker polls, and a prompt delivery would prove nothing.
@pytest.mark.parametrize("database", ["postgres"], indirect=True)
async def test_the_worker_wakes_on_a_new_event_sooner_than_its_poll(
    database: Database, service: BillingService, clock: FakeClock
) -> None:
    await provision_demo_pool(service)
    poll_seconds = 30.0  # a 30 s poll, so only the NOTIFY can explain a delivery within 5 s
    options = RelayOptions(retry=RetrySchedule.of((0,)), timeout_seconds=5, allow_private=True)
    relay = Relay(database, PiiSealer(TEST_PII_KEYS), options=options)
    rounds: list[int] = []
    deliver_due = relay.deliver_due

    async def counted_deliver_due() -> list[Any]:
        delivered = await deliver_due()
        rounds.append(len(delivered))
        return delivered

    relay.deliver_due = counted_deliver_due  # type: ignore[method-assign]
    worker = Worker(relay, None, poll_seconds=poll_seconds)
    delivered_before = sample("wabapool_webhook_deliveries_total", result="delivered", status_class="2xx")
    stop = asyncio.Event()
    with Receiver() as receiver:
        receiver.secret = await service.set_webhook(COMPANY_ID, url=receiver.url)
        running = asyncio.create_task(worker.run(stop))
        try:
            # The first round found nothing due and the worker now sleeps until a notification or the poll.
            await eventually(lambda: bool(rounds) and rounds[-1] == 0, what="a first round that found nothing due")
            await service.top_up(COMPANY_ID, amount=100, payment_reference="pay-1")
            waited = await seconds_until(lambda: len(receiver.received) == 1, what="the top-up's webhook")
            assert waited < 5
        finally:
            stop.set()
            await asyncio.wait_for(running, 10)
    await relay.close()
    assert receiver.received[0].verified
    assert sample("wabapool_webhook_deliveries_total", result="delivered", status_class="2xx") == delivered_before + 1
    assert sample("wabapool_outbox_lag_seconds") == 0.0


async def test_outbox_lag_is_the_age_of_the_oldest_event_still_waiting(
    database: Database, service: BillingService, clock: FakeClock
) -> None:
    await provision_demo_pool(service)
    options = RelayOptions(
        retry=RetrySchedule.of((3600,), lambda low, high: high), timeout_seconds=5, allow_private=True
    )
    relay = Relay(database, PiiSealer(TEST_PII_KEYS), options=options, clock=lambda: clock.now)
    worker = Worker(relay, None, clock=lambda: clock.now)
    with Receiver(default_status=500) as receiver:
        receiver.secret = await service.set_webhook(COMPANY_ID, url=receiver.url)
        await service.top_up(COMPANY_ID, amount=100, payment_reference="pay-1")
        clock.advance(seconds=90)
        await worker.run_once()  # one failed attempt; the retry is an hour away
    await relay.close()
    assert sample("wabapool_outbox_lag_seconds") == 90.0
    assert sample("wabapool_webhook_failures_total", reason="http_5xx") >= 1
