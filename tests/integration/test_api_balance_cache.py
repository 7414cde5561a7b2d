"""billings/info through the cache: fresh after every change, correct without Redis, stale when the DB is slow."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pytest

from tests.api_support import (
    INTERNAL,
    INTERNAL_HEADERS,
    PUBLIC,
    api_client,
    bearer,
    deduction_body,
    provision,
    settings_for,
)
from tests.conftest import truncate_all
from tests.services import require_redis
from wabapool.storage.database import Database
from wabapool.storage.migrate import upgrade

CLOSED_REDIS = "redis://127.0.0.1:6390/0"


async def _total(client: httpx.AsyncClient, company_id: int) -> tuple[int, bool]:
    body = (await client.get(f"{PUBLIC}/billings/info", headers=bearer(company_id))).json()
    return body["balance"]["total"], body["stale"]


async def _changes_show_at_once(client: httpx.AsyncClient, company_id: int) -> None:
    await provision(client, company_id, allowance=10_000)
    assert await _total(client, company_id) == (10_000, False)
    await client.post(
        f"{INTERNAL}/quota-managements/deduction", json=deduction_body(company_id, "m1"), headers=INTERNAL_HEADERS
    )
    assert await _total(client, company_id) == (9_000, False)
    await client.post(
        f"{INTERNAL}/quota-managements/top-up",
        json={"company_id": company_id, "amount": 2_500, "payment_reference": "p1"},
        headers=INTERNAL_HEADERS,
    )
    assert await _total(client, company_id) == (11_500, False)
    await client.post(
        f"{INTERNAL}/quota-managements/refund",
        json={"company_id": company_id, "unique_code": "m1", "refund_code": "r1"},
        headers=INTERNAL_HEADERS,
    )
    assert await _total(client, company_id) == (12_500, False)


@pytest.mark.redis
async def test_balance_on_redis_shows_every_change_at_once(tmp_path) -> None:
    redis_url = require_redis()
    url = f"sqlite:///{tmp_path / 'redis.db'}"
    upgrade(url)
    async with api_client(settings_for(url, redis_url=redis_url)) as (client, context):
        await context.balances.cache.delete(31)
        await _changes_show_at_once(client, 31)


async def test_balance_in_process_shows_every_change_at_once(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'local.db'}"
    upgrade(url)
    async with api_client(settings_for(url)) as (client, _):
        await _changes_show_at_once(client, 32)


async def test_balance_with_redis_down_is_read_from_the_database_and_counted(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'down.db'}"
    upgrade(url)
    async with api_client(settings_for(url, redis_url=CLOSED_REDIS)) as (client, _):
        await _changes_show_at_once(client, 33)
        metrics = (await client.get("/metrics")).text
        errors = [line for line in metrics.splitlines() if line.startswith("wabapool_cache_errors_total")]
        assert errors and any(float(line.rsplit(" ", 1)[1]) > 0 for line in errors)


@pytest.mark.postgres
async def test_balance_is_served_stale_when_the_database_is_slow(postgres_url: str) -> None:
    database = Database(postgres_url)
    await truncate_all(database)
    await database.dispose()
    settings = settings_for(postgres_url, db_timeout_seconds=0.5)
    async with api_client(settings) as (client, _):
        await provision(client, 34, allowance=10_000)
        assert await _total(client, 34) == (10_000, False)
        await client.put(f"{INTERNAL}/quota-managements/34/invalidate-cache", headers=INTERNAL_HEADERS)
        # Make the database slow for real: another session holds an exclusive lock on the buckets.
        blocker = await asyncpg.connect(postgres_url)
        try:
            transaction = blocker.transaction()
            await transaction.start()
            await blocker.execute("LOCK TABLE quota_buckets IN ACCESS EXCLUSIVE MODE")
            total, stale = await asyncio.wait_for(_total(client, 34), timeout=10)
            assert (total, stale) == (10_000, True)
            await transaction.rollback()
        finally:
            await blocker.close()
        assert await _total(client, 34) == (10_000, False)
