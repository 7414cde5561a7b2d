"""billings/info through the cache: fresh after every change, correct without Redis, stale when the DB is slow."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import event

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
from tests.waiting import eventually
from wabapool.api.context import AppContext
from wabapool.cache import BalanceCache, CacheUnavailable, InProcessCache, RedisCache, SetOutcome
from wabapool.metrics import REGISTRY
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
    # Under the lock wait (2 s, storage.database) so the blocked read times out here first, and long enough
    # that an unblocked read on a loaded CI machine is never mistaken for a slow one (0.5 s was, once).
    settings = settings_for(postgres_url, db_timeout_seconds=1.5)
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


# --- Write-through: a change hands the cache its new figures -----------------------------------

# Short enough to wait out after provisioning (which only invalidates); the database timeout stays below it.
SHORT_FENCE_SECONDS = 1.0
SHORT_DB_TIMEOUT_SECONDS = 0.9


class Statements:
    """Counts the statements SQLAlchemy sends for one app (every read of the balance goes through it)."""

    def __init__(self, context: AppContext) -> None:
        self.count = 0
        for engine in context.service.database.engines:
            event.listen(engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(self, *_: Any) -> None:
        self.count += 1


@pytest.fixture(params=["in_process", pytest.param("redis", marks=pytest.mark.redis)])
async def short_fence_cache(request: pytest.FixtureRequest) -> AsyncIterator[BalanceCache]:
    """The in-process cache or the real Redis (keys under a prefix of its own), with a short fence."""
    if request.param == "in_process":
        yield InProcessCache(invalidation_fence_seconds=SHORT_FENCE_SECONDS)
        return
    cache = RedisCache(
        require_redis(),
        key_prefix=f"wabapool:test:{uuid.uuid4().hex}:",
        invalidation_fence_seconds=SHORT_FENCE_SECONDS,
    )
    try:
        yield cache
    finally:
        await cache.close()


# A bound on waiting for a fence to lift (a failure past it, never the expected path).
FENCE_WAIT_SECONDS = 10.0


async def _read_until_cached(client: httpx.AsyncClient, cache: BalanceCache, company_id: int) -> None:
    """Read the balance until a read has filled the cache (while a change's fence stands, reads do not)."""

    async def a_read_filled_the_cache() -> bool:
        response = await client.get(f"{PUBLIC}/billings/info", headers=bearer(company_id))
        assert response.status_code == 200, response.text
        return await cache.get(company_id) is not None

    await eventually(
        a_read_filled_the_cache,
        what=f"a read to fill company {company_id}'s cache once the fence lifted",
        within_seconds=FENCE_WAIT_SECONDS,
        poll_seconds=0.02,
    )


async def _provisioned(
    client: httpx.AsyncClient,
    cache: BalanceCache,
    company_id: int,
    wabas: tuple[str, ...],
    *,
    allowance: int = 10_000,
) -> None:
    """A pool with its WABAs, then, once the fence its provisioning raised has lifted, a read fills the cache."""
    await provision(client, company_id, allowance=allowance, postpaid_limit=5_000, wabas=wabas)
    await _read_until_cached(client, cache, company_id)


async def _deduct(client: httpx.AsyncClient, company_id: int, code: str, waba_id: str, quantity: int = 1) -> None:
    response = await client.post(
        f"{INTERNAL}/quota-managements/deduction",
        json=deduction_body(company_id, code, waba_id=waba_id, quantity=quantity),
        headers=INTERNAL_HEADERS,
    )
    assert response.status_code == 200, response.text


async def test_after_a_deduction_the_next_read_is_served_from_the_cache_with_the_new_figures(
    tmp_path: Path, short_fence_cache: BalanceCache
) -> None:
    url = f"sqlite:///{tmp_path / 'through.db'}"
    upgrade(url)
    settings = settings_for(url, db_timeout_seconds=SHORT_DB_TIMEOUT_SECONDS)
    async with api_client(settings, cache=short_fence_cache) as (client, context):
        await _provisioned(client, short_fence_cache, 41, ("4101", "4102"))
        statements = Statements(context)
        await _deduct(client, 41, "m1", "4101", quantity=3)  # 3,000 of the allowance
        await _deduct(client, 41, "m2", "4102", quantity=8)  # the last 7,000 of it, then 1,000 of postpaid
        written = statements.count
        body = (await client.get(f"{PUBLIC}/billings/info", headers=bearer(41))).json()
        assert statements.count == written, "the read after the deductions ran a database statement"
        authoritative = (await client.get(f"{INTERNAL}/quota-managements/41/balance", headers=INTERNAL_HEADERS)).json()
    assert body["stale"] is False
    assert body["balance"] == authoritative
    assert body["balance"]["total"] == -1_000
    assert body["balance"]["postpaid"] == {"limit": 5_000, "used": 1_000}
    assert (body["below_zero"], body["low_balance"]) == (True, True)
    assert [(w["waba_id"], w["spent_this_cycle"]) for w in body["wabas"]] == [("4101", 3_000), ("4102", 8_000)]
    assert [w["name"] for w in body["wabas"]] == ["WABA 1", "WABA 2"]


async def test_refunds_and_top_ups_are_written_through_with_this_cycles_spend(
    tmp_path: Path, short_fence_cache: BalanceCache
) -> None:
    url = f"sqlite:///{tmp_path / 'refund.db'}"
    upgrade(url)
    settings = settings_for(url, db_timeout_seconds=SHORT_DB_TIMEOUT_SECONDS)
    async with api_client(settings, cache=short_fence_cache) as (client, context):
        await _provisioned(client, short_fence_cache, 42, ("4201",))
        await _deduct(client, 42, "m1", "4201", quantity=2)
        await client.post(
            f"{INTERNAL}/quota-managements/refund",
            json={"company_id": 42, "unique_code": "m1", "refund_code": "r1"},
            headers=INTERNAL_HEADERS,
        )
        await client.post(
            f"{INTERNAL}/quota-managements/top-up",
            json={"company_id": 42, "amount": 2_500, "payment_reference": "p1"},
            headers=INTERNAL_HEADERS,
        )
        statements = Statements(context)
        body = (await client.get(f"{PUBLIC}/billings/info", headers=bearer(42))).json()
        assert statements.count == 0
    assert body["balance"]["total"] == 12_500
    assert body["balance"]["additional"] == {"remaining": 2_500}
    assert body["wabas"][0]["spent_this_cycle"] == 0


async def test_a_failed_write_through_falls_back_to_invalidation(tmp_path: Path) -> None:
    cache = FailingSets(InProcessCache(invalidation_fence_seconds=SHORT_FENCE_SECONDS))
    url = f"sqlite:///{tmp_path / 'failing.db'}"
    upgrade(url)
    settings = settings_for(url, db_timeout_seconds=SHORT_DB_TIMEOUT_SECONDS)
    async with api_client(settings, cache=cache) as (client, context):
        await provision(client, 43, allowance=10_000)
        cache.failing = False
        await _read_until_cached(client, cache, 43)
        cache.failing = True
        errors = REGISTRY.get_sample_value("wabapool_cache_errors_total", {"operation": "write_through"}) or 0
        await _deduct(client, 43, "m1", "1001001")
        assert await cache.get(43) is None, "the entry the write-through could not replace was left in place"
        assert REGISTRY.get_sample_value("wabapool_cache_errors_total", {"operation": "write_through"}) == errors + 1
        cache.failing = False
        statements = Statements(context)
        assert await _total(client, 43) == (9_000, False)
        assert statements.count > 0  # read from the database, not from the entry that was dropped


class FailingSets:
    """A cache whose stores fail (Redis timing out on the write) while deletes still work."""

    def __init__(self, inner: InProcessCache) -> None:
        self.inner = inner
        self.failing = True
        self.invalidation_fence_seconds = inner.invalidation_fence_seconds

    async def get(self, company_id: int) -> dict[str, Any] | None:
        return await self.inner.get(company_id)

    async def set(self, company_id: int, value: dict[str, Any], *, version: int | None) -> SetOutcome:
        if self.failing:
            raise CacheUnavailable("Redis write failed: TimeoutError")
        return await self.inner.set(company_id, value, version=version)

    async def delete(self, company_id: int) -> None:
        await self.inner.delete(company_id)

    async def last_known(self, company_id: int) -> dict[str, Any] | None:
        return await self.inner.last_known(company_id)

    async def close(self) -> None:
        await self.inner.close()


CONCURRENT_DEDUCTIONS = 32


class RecordingRedisCache(RedisCache):
    """A Redis cache that remembers each value it was handed (its pool version, what `set` did with it).

    With `hold` given, a `set` waits for it once it is called (`entered`): a write-through held in flight.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sets: list[tuple[int | None, SetOutcome]] = []
        self.hold: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def set(self, company_id: int, value: dict[str, Any], *, version: int | None) -> SetOutcome:
        if self.hold is not None:
            self.entered.set()
            async with asyncio.timeout(30):
                await self.hold.wait()
        outcome = await super().set(company_id, value, version=version)
        self.sets.append((version, outcome))
        return outcome


@pytest.mark.postgres
@pytest.mark.redis
async def test_two_apps_racing_write_throughs_keep_the_newest_and_a_read_shows_the_final_figures(
    postgres_url: str,
) -> None:
    # Two apps (each its own engine and Redis client, as two API processes have) on one PostgreSQL and one
    # Redis: their groups commit in turn on the pool lock, and their write-throughs race to Redis; the version
    # decides which value stays.
    database = Database(postgres_url)
    await truncate_all(database)
    await database.dispose()
    prefix = f"wabapool:test:{uuid.uuid4().hex}:"
    caches = [
        RecordingRedisCache(require_redis(), key_prefix=prefix, invalidation_fence_seconds=SHORT_FENCE_SECONDS)
        for _ in range(2)
    ]
    settings = settings_for(postgres_url, db_timeout_seconds=SHORT_DB_TIMEOUT_SECONDS)
    wabas = ("4401", "4402")
    async with (
        api_client(settings, cache=caches[0]) as (first, first_context),
        api_client(settings, cache=caches[1]) as (second, _),
    ):
        await _provisioned(first, caches[0], 44, wabas, allowance=100_000)
        # The race, made to happen: the first app's write-through is still on its way when the second app's
        # newer change commits and writes through; arriving last, the older value is refused.
        caches[0].hold = asyncio.Event()
        late = asyncio.create_task(_deduct(first, 44, "race-first", wabas[0]))
        async with asyncio.timeout(30):
            await caches[0].entered.wait()  # the first app's change committed; its write-through waits
        await _deduct(second, 44, "race-second", wabas[1])
        caches[0].hold.set()
        await late
        caches[0].hold = None
        (first_version, first_outcome), (second_version, second_outcome) = caches[0].sets[-1], caches[1].sets[-1]
        assert first_version is not None and second_version is not None and first_version < second_version
        assert (first_outcome, second_outcome) == ("superseded", "stored")
        await asyncio.gather(
            *(
                _deduct((first, second)[index % 2], 44, f"c{index}", wabas[index // 2 % 2], quantity=1 + index % 3)
                for index in range(CONCURRENT_DEDUCTIONS)
            )
        )
        statements = Statements(first_context)
        body = (await first.get(f"{PUBLIC}/billings/info", headers=bearer(44))).json()
        assert statements.count == 0, "the read after the deductions ran a database statement"
        authoritative = (await second.get(f"{INTERNAL}/quota-managements/44/balance", headers=INTERNAL_HEADERS)).json()
    for cache in caches:
        await cache.close()
    charged = {waba: 1_000 for waba in wabas}  # the two racing deductions, one on each WABA
    for index in range(CONCURRENT_DEDUCTIONS):
        charged[wabas[index // 2 % 2]] += 1_000 * (1 + index % 3)
    assert body["balance"] == authoritative
    assert body["balance"]["total"] == 100_000 - sum(charged.values())
    assert {w["waba_id"]: w["spent_this_cycle"] for w in body["wabas"]} == charged
