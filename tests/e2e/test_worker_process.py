"""`wabapool worker` as a real process on PostgreSQL, SIGKILLed mid-delivery: the survivor resends, same webhook-id."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from tests.conftest import TEST_PII_KEYS, FakeClock, service_for, truncate_all
from tests.waiting import eventually
from tests.worker_receiver import Receiver
from wabapool.pii import PiiSealer
from wabapool.service import CompanyTerms, PackageTerms
from wabapool.service.webhooks import generate_secret
from wabapool.storage.database import Database
from wabapool.storage.tables import outbox_events
from wabapool.worker.relay import Relay, RelayOptions
from wabapool.worker.retry import RetrySchedule

COMPANIES = (601, 602)
TIMEOUT_SECONDS = 2  # the lease is twice this: how long the survivor waits for the dead worker's claims


@pytest.fixture
async def postgres(postgres_url: str) -> AsyncIterator[Database]:
    database = Database(postgres_url)
    await truncate_all(database)
    yield database
    await database.dispose()


def start_worker(postgres_url: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "WABAPOOL_DATABASE_URL": postgres_url,
        "WABAPOOL_PII_KEYS": TEST_PII_KEYS,
        "WABAPOOL_WEBHOOK_ALLOW_PRIVATE": "true",
        "WABAPOOL_WEBHOOK_TIMEOUT_SECONDS": str(TIMEOUT_SECONDS),
        "WABAPOOL_WORKER_POLL_SECONDS": "0.1",
        "WABAPOOL_WEBHOOK_RETRY_SECONDS": "0,0",
    }
    command = [sys.executable, "-m", "wabapool.cli.main", "worker"]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def test_a_worker_killed_mid_delivery_is_taken_over_with_the_same_webhook_id(
    postgres: Database, postgres_url: str
) -> None:
    service = service_for(postgres, clock=FakeClock(datetime(2026, 11, 10, 3, 0, tzinfo=UTC)))
    receiver_hold_seconds = 3 * TIMEOUT_SECONDS
    with Receiver(secret=generate_secret(), hold_seconds=receiver_hold_seconds) as receiver:
        for company_id in COMPANIES:
            await service.provision_company(company_id, CompanyTerms(package=PackageTerms(allowance=0)))
            await service.set_webhook(company_id, url=receiver.url, secret=receiver.secret)
        for index in range(3):
            for company_id in COMPANIES:
                await service.top_up(company_id, amount=10, payment_reference=f"pay-{index}")

        worker = start_worker(postgres_url)
        try:
            await eventually(lambda: receiver.received, what="the worker's first delivery (held open)")
            first = receiver.received[0]
            held, held_company = first.webhook_id, first.event["company_id"]
            # Meanwhile the other company's events go out (a held receiver holds back only its company): the
            # worker is killed mid-run, with deliveries behind it, not before it started.
            await eventually(
                lambda: any(r.event["company_id"] != held_company for r in receiver.received),
                what="a delivery to the other company while the first is held",
            )
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
        assert worker.returncode == -signal.SIGKILL
        # Killed mid-delivery: the receiver still held the first request open when the worker died.
        assert time.monotonic() - first.received_at < receiver_hold_seconds

        options = RelayOptions(retry=RetrySchedule.of((0, 0)), timeout_seconds=TIMEOUT_SECONDS, allow_private=True)
        survivor = Relay(postgres, PiiSealer(TEST_PII_KEYS), options=options)
        try:

            async def drain() -> None:
                while True:
                    async with postgres.read() as connection:
                        left = (
                            await connection.execute(
                                select(outbox_events.c.id).where(outbox_events.c.delivered_at.is_(None))
                            )
                        ).all()
                    if not left:
                        return
                    if not await survivor.deliver_due():
                        await asyncio.sleep(0.05)

            await asyncio.wait_for(drain(), 30)
        finally:
            await survivor.close()

    async with postgres.read() as connection:
        events = list(await connection.execute(select(outbox_events).order_by(outbox_events.c.id)))
    assert all(e.delivered_at is not None for e in events)  # nothing left undelivered
    sent = [r.webhook_id for r in receiver.received]
    assert sent.count(held) == 2  # the killed worker's attempt, then the survivor's: the same id
    assert set(sent) == {e.event_id for e in events}
    assert all(r.verified for r in receiver.received)
    for company_id in COMPANIES:
        raised = [e.event_id for e in events if e.company_id == company_id]
        first_seen = list(dict.fromkeys(r.webhook_id for r in receiver.received if r.event["company_id"] == company_id))
        assert first_seen == raised  # per-company order held throughout
    (held_row,) = [e for e in events if e.event_id == held]
    assert held_row.attempts == 2
