"""The per-company export limit across server processes: each export holds a lease in Redis, shared by every app."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import redis.asyncio as redis_asyncio

from tests.api_support import PUBLIC, api_client, bearer, settings_for
from tests.conftest import FakeClock
from tests.reports_support import provision, report_app
from tests.services import require_redis
from tests.waiting import eventually
from wabapool.domain import limits
from wabapool.export_leases import RedisExportLeases
from wabapool.service.reports import ExportSlots, LogFilter

WABA = "6660001"


async def test_the_eleventh_export_across_two_apps_sharing_redis_is_refused_with_429_and_retry_after(tmp_path) -> None:
    redis_url = require_redis()
    database_url = f"sqlite:///{tmp_path / 'reports.db'}"
    clock = FakeClock(datetime(2026, 11, 10, 16, 30, tzinfo=UTC))
    redis = redis_asyncio.Redis.from_url(redis_url)
    await redis.delete("wabapool:exports:1")  # a lease an earlier run left would expire on its own, later
    await redis.aclose()
    async with report_app(database_url, clock, redis_url=redis_url) as (first, first_context):
        await provision(first, 1, wabas=(WABA,))
        async with api_client(settings_for(database_url, redis_url=redis_url), clock=clock) as (second, context):
            apps = {first: first_context.reports, second: context.reports}
            leases = first_context.reports.export_slots.leases
            assert isinstance(leases, RedisExportLeases)
            # Six in one app, four in the other: each is under its own limit, only the shared leases are full.
            held = [await first_context.reports.export(1, LogFilter(), unmasked=True) for _ in range(6)]
            held += [await context.reports.export(1, LogFilter(), unmasked=True) for _ in range(4)]
            assert [reports.export_slots.running(1) for reports in apps.values()] == [6, 4]
            assert await leases.held(1) == limits.EXPORTS_PER_COMPANY
            for client in apps:
                response = await client.get(f"{PUBLIC}/download_broadcast_deduction", headers=bearer(1, "owner"))
                assert response.status_code == 429
                assert response.json()["error"]["code"] == "too_many_exports"
                assert response.headers["retry-after"] == str(limits.EXPORT_RETRY_AFTER_SECONDS)
            assert [reports.export_slots.running(1) for reports in apps.values()] == [6, 4]  # nothing kept
            held.pop().close()  # an export of the second app ends: its lease goes back to every app

            async def nine_held() -> bool:
                return await leases.held(1) == limits.EXPORTS_PER_COMPANY - 1

            await eventually(nine_held, what="the ended export's lease to be given back")
            response = await first.get(f"{PUBLIC}/download_broadcast_deduction", headers=bearer(1, "owner"))
            assert response.status_code == 200 and response.content.startswith("\ufeff".encode())
            for export in held:
                export.close()

            async def none_held() -> bool:
                return await leases.held(1) == 0

            await eventually(none_held, what="every lease to be given back")
            await context.reports.close()
        await first_context.reports.close()


async def test_a_lease_no_one_renews_expires_and_its_slot_comes_back() -> None:
    leases = RedisExportLeases(
        require_redis(), key_prefix=f"wabapool:test:exports:{uuid.uuid4().hex}:", lease_seconds=0.3
    )
    try:
        dead = await leases.take(7, 1)  # a process that took its lease and died: never renewed, never given back
        assert dead and await leases.take(7, 1) is None

        async def taken_again() -> bool:
            return bool(await leases.take(7, 1))

        await eventually(taken_again, what="the dead process's lease to expire")
    finally:
        await leases.close()


async def test_a_running_export_renews_its_lease_past_the_lease_s_length() -> None:
    leases = RedisExportLeases(
        require_redis(), key_prefix=f"wabapool:test:exports:{uuid.uuid4().hex}:", lease_seconds=0.3
    )
    renewals = 0
    renew = leases.renew

    async def counted(company_id: int, lease: str) -> None:
        nonlocal renewals
        await renew(company_id, lease)
        renewals += 1

    leases.renew = counted  # type: ignore[method-assign]
    slots = ExportSlots(per_company=1, total=10, leases=leases)
    try:
        lease = await slots.take(7)
        await eventually(lambda: renewals >= 4, what="four renewals (over a lease's length)")
        assert await leases.held(7) == 1 and await leases.take(7, 1) is None  # still held: no slot for another
        slots.give_back(7, lease)

        async def given_back() -> bool:
            return await leases.held(7) == 0

        await eventually(given_back, what="the lease to be given back")
        assert slots.running() == 0
    finally:
        await slots.close()
