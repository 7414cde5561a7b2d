"""Webhook delivery end to end: outbox → worker → a real loopback receiver verifying Standard Webhooks signatures."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from tests.conftest import COMPANY_ID, TEST_PII_KEYS, WABA_IDS, FakeClock, provision_demo_pool
from tests.worker_receiver import Receiver
from wabapool.pii import PiiSealer
from wabapool.service import BillingService, DeductionRequest
from wabapool.storage import outbox as outbox_store
from wabapool.storage.database import Database
from wabapool.storage.tables import companies, outbox_events
from wabapool.worker.relay import Relay, RelayOptions
from wabapool.worker.retry import RetrySchedule

SEALER = PiiSealer(TEST_PII_KEYS)


def relay_for(database: Database, *, retry: tuple[float, ...] = (0, 0), timeout_seconds: float = 5.0) -> Relay:
    options = RelayOptions(retry=RetrySchedule.of(retry), timeout_seconds=timeout_seconds, allow_private=True)
    return Relay(database, SEALER, options=options)


async def drain(relay: Relay, *, rounds: int = 20) -> list[str]:
    """Deliver until nothing is due (retries with a zero delay are due at once)."""
    results: list[str] = []
    for _ in range(rounds):
        outcomes = await relay.deliver_due()
        if not outcomes:
            break
        results += [o.result for o in outcomes]
    return results


def deduction(code: str, quantity: int, waba_id: str = WABA_IDS[0]) -> DeductionRequest:
    return DeductionRequest(
        company_id=COMPANY_ID,
        billing_code="broadcast",
        deduction_code="wa_marketing_id",
        unique_code=code,
        quantity=quantity,
        waba_id=waba_id,
    )


async def events_of(database: Database) -> list[object]:
    async with database.read() as connection:
        return list(await connection.execute(select(outbox_events).order_by(outbox_events.c.id)))


async def test_deductions_crossing_the_threshold_deliver_low_then_below_zero_once_each_per_cycle(
    database: Database, service: BillingService, clock: FakeClock
) -> None:
    await provision_demo_pool(service)  # allowance 1000, postpaid 500, threshold 40 %, 10 per message
    relay = relay_for(database)
    with Receiver() as receiver:
        receiver.secret = await service.set_webhook(COMPANY_ID, url=receiver.url)
        for index, quantity in enumerate((30, 31, 30, 10, 5, 5)):  # 700 → 390 (low) … → -100 (below zero)
            await service.deduct(deduction(f"m-{index}", quantity))
        assert await drain(relay) == ["delivered", "delivered"]
        assert receiver.types() == ["balance_low", "balance_below_zero"]
        assert all(r.verified for r in receiver.received)
        low = receiver.received[0].event
        assert low["company_id"] == COMPANY_ID and low["id"] == receiver.received[0].webhook_id
        assert low["data"]["total"] == 390 and low["data"]["threshold_percent"] == "40"
        assert set(low) == {"id", "type", "company_id", "created_at", "data"}

        await service.deduct(deduction("m-more", 1))
        assert await drain(relay) == []  # still low and below zero: nothing new this cycle

        clock.now = datetime(2026, 11, 30, 18, 0, tzinfo=UTC)  # 1 Dec 01:00 in Jakarta: the next cycle
        for index, quantity in enumerate((70, 50)):  # 1000 → 300 (low) → -200 (below zero)
            await service.deduct(deduction(f"next-{index}", quantity))
        await drain(relay)
        assert receiver.types() == [
            "balance_low",
            "balance_below_zero",
            "cycle_reset",
            "balance_low",
            "balance_below_zero",
        ]
        assert all(r.verified for r in receiver.received)
    await relay.close()
    rows = await events_of(database)
    assert all(row.delivered_at is not None and row.attempts == 1 for row in rows)


async def test_a_receiver_failing_twice_gets_the_event_on_the_third_attempt_with_the_same_webhook_id(
    database: Database, service: BillingService
) -> None:
    await provision_demo_pool(service)
    relay = relay_for(database, retry=(0, 0, 0))
    with Receiver(script=[500, 500]) as receiver:
        receiver.secret = await service.set_webhook(COMPANY_ID, url=receiver.url)
        await service.top_up(COMPANY_ID, amount=100, payment_reference="pay-1")
        assert await drain(relay) == ["retry", "retry", "delivered"]
        assert [r.status for r in receiver.received] == [500, 500, 200]
        assert len({r.webhook_id for r in receiver.received}) == 1
        assert len({r.body for r in receiver.received}) == 1  # the same body, re-signed per attempt
        assert all(r.verified for r in receiver.received)
    await relay.close()
    (row,) = await events_of(database)
    assert row.attempts == 3 and row.delivered_at is not None and row.last_status == 200


async def test_a_receiver_that_never_recovers_leaves_a_dead_letter_that_replay_delivers(
    database: Database, service: BillingService
) -> None:
    await provision_demo_pool(service)
    relay = relay_for(database, retry=(0, 0))
    with Receiver(default_status=503) as receiver:
        receiver.secret = await service.set_webhook(COMPANY_ID, url=receiver.url)
        await service.top_up(COMPANY_ID, amount=100, payment_reference="pay-1")
        assert await drain(relay) == ["retry", "retry", "dead"]
        (row,) = await events_of(database)
        assert row.dead_at is not None and row.last_status == 503 and "HTTP 503" in row.last_error
        assert row.attempts == 3

        receiver.default_status = 204
        async with database.transaction() as connection:
            assert await outbox_store.replay(connection, row.event_id, at=datetime.now(UTC))
        assert await drain(relay) == ["delivered"]
        assert receiver.received[-1].webhook_id == row.event_id and receiver.received[-1].verified
    await relay.close()
    (row,) = await events_of(database)
    assert row.delivered_at is not None and row.dead_at is None


async def test_410_gone_disables_the_webhook_and_later_events_are_kept_as_skipped(
    database: Database, service: BillingService
) -> None:
    await provision_demo_pool(service)
    relay = relay_for(database, retry=(0, 0))
    with Receiver(default_status=410) as receiver:
        receiver.secret = await service.set_webhook(COMPANY_ID, url=receiver.url)
        await service.top_up(COMPANY_ID, amount=100, payment_reference="pay-1")
        assert await drain(relay) == ["dead"]
        await service.top_up(COMPANY_ID, amount=100, payment_reference="pay-2")
        assert await drain(relay) == ["skipped"]
        assert len(receiver.received) == 1
    await relay.close()
    async with database.read() as connection:
        company = (await connection.execute(select(companies).where(companies.c.company_id == COMPANY_ID))).one()
    assert company.webhook_disabled_at is not None
    first, second = await events_of(database)
    assert first.dead_at is not None and first.last_status == 410
    assert second.skipped_at is not None and "disabled" in second.last_error


async def test_setting_the_webhook_again_enables_it_after_a_410(database: Database, service: BillingService) -> None:
    await provision_demo_pool(service)
    relay = relay_for(database)
    with Receiver(script=[410]) as receiver:
        receiver.secret = await service.set_webhook(COMPANY_ID, url=receiver.url)
        await service.top_up(COMPANY_ID, amount=100, payment_reference="pay-1")
        assert await drain(relay) == ["dead"]
        receiver.secret = await service.set_webhook(COMPANY_ID, url=receiver.url)
        await service.top_up(COMPANY_ID, amount=100, payment_reference="pay-2")
        assert await drain(relay) == ["delivered"]
    await relay.close()


async def test_events_of_a_company_without_a_webhook_are_skipped_not_lost(
    database: Database, service: BillingService
) -> None:
    await provision_demo_pool(service)
    relay = relay_for(database)
    await service.top_up(COMPANY_ID, amount=100, payment_reference="pay-1")
    assert await drain(relay) == ["skipped"]
    (row,) = await events_of(database)
    assert row.skipped_at is not None and row.delivered_at is None and row.last_error == "no webhook configured"
    assert row.attempts == 0
    await relay.close()


async def test_retry_after_on_429_is_honoured(database: Database, service: BillingService) -> None:
    await provision_demo_pool(service)
    relay = relay_for(database, retry=(0, 0))
    with Receiver(script=[429], extra_headers={"Retry-After": "120"}) as receiver:
        receiver.secret = await service.set_webhook(COMPANY_ID, url=receiver.url)
        await service.top_up(COMPANY_ID, amount=100, payment_reference="pay-1")
        before = datetime.now(UTC)
        assert await drain(relay) == ["retry"]  # not due again for two minutes, despite a zero schedule
    await relay.close()
    (row,) = await events_of(database)
    assert row.delivered_at is None and row.last_status == 429
    assert 119 <= (row.next_attempt_at - before).total_seconds() <= 125


async def test_a_webhook_host_that_now_resolves_to_a_private_address_is_not_called(
    database: Database, service: BillingService
) -> None:
    from wabapool.service.ssrf import UrlGuard

    await provision_demo_pool(service)
    with Receiver() as receiver:
        port = receiver.url.split(":")[2].split("/")[0]
        receiver.secret = await service.set_webhook(COMPANY_ID, url=f"https://hooks.example.com:{port}/billing")

        async def rebound(host: str, port: int) -> list[str]:  # DNS now points the name at loopback
            return ["127.0.0.1"]

        options = RelayOptions(retry=RetrySchedule.of((0,)), timeout_seconds=5, allow_private=False)
        relay = Relay(database, SEALER, options=options, guard=UrlGuard(resolver=rebound))
        await service.top_up(COMPANY_ID, amount=100, payment_reference="pay-1")
        assert await drain(relay) == ["retry", "dead"]
        assert receiver.received == []
    await relay.close()
    (row,) = await events_of(database)
    assert row.dead_at is not None and row.last_status is None and "loopback" in row.last_error
