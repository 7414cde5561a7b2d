"""A burst of concurrent deductions from several services (each its own connection pool, as processes would be)
on PostgreSQL raises each alert once and exactly one auto-recharge request."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from tests.conftest import FakeClock, provision_demo_pool, service_for, truncate_all, waba_ids_of
from wabapool.domain.errors import BillingError
from wabapool.service import BillingService, DeductionRequest
from wabapool.storage.database import Database
from wabapool.storage.tables import outbox_events

pytestmark = [pytest.mark.postgres]

SERVICES = 4
SENDS_PER_SERVICE = 60
COMPANY_ID = 3001


async def test_a_concurrent_burst_raises_one_request_and_each_alert_once(postgres_url: str) -> None:
    databases = [Database(postgres_url) for _ in range(SERVICES)]
    await truncate_all(databases[0])
    clock = FakeClock(datetime(2026, 11, 10, 3, 0, tzinfo=UTC))
    services = [service_for(database, clock=clock) for database in databases]
    try:
        await provision_demo_pool(
            services[0], company_id=COMPANY_ID, allowance=24_000, postpaid_limit=0, unit_price=100
        )
        await services[0].set_alert_settings(
            COMPANY_ID,
            balance_alerts=[{"kind": "percent", "value": 75}, {"kind": "amount", "value": 6_000}],
            auto_recharge={"below": 12_000, "amount": 50_000, "max_per_cycle": 3},
        )
        waba = waba_ids_of(COMPANY_ID)[0]

        async def send(service: BillingService, index: int) -> None:
            for n in range(SENDS_PER_SERVICE):
                request = DeductionRequest(
                    company_id=COMPANY_ID,
                    billing_code="whatsapp",
                    deduction_code="wa_marketing_id",
                    unique_code=f"s{index}-{n}",
                    quantity=1,
                    waba_id=waba,
                )
                with contextlib.suppress(BillingError):
                    await service.deduct(request)

        # 240 sends of 100 want 24,000: the pool drains to zero through every bound.
        await asyncio.gather(*(send(service, index) for index, service in enumerate(services)))
        async with databases[0].read() as connection:
            counts = dict(
                (
                    await connection.execute(
                        select(outbox_events.c.event_type, func.count())
                        .where(outbox_events.c.company_id == COMPANY_ID)
                        .group_by(outbox_events.c.event_type)
                    )
                ).all()
            )
        assert counts["top_up_requested"] == 1
        assert counts["balance_alert"] == 2
        assert counts["balance_low"] == 1
        balance = await services[0].balance(COMPANY_ID)
        assert balance.available == 0
        assert balance.top_up_request is not None and balance.top_up_request.amount_minor == 50_000
    finally:
        for database in databases:
            await database.dispose()
