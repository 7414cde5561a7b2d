from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as redis_asyncio

from tests.services import REDIS_URL, require_redis
from wabapool.cache import BalanceCache, CachedBalances, CacheUnavailable, InProcessCache, RedisCache, Versioned
from wabapool.metrics import REGISTRY

# The cache tests use the test Redis database, and only keys under their own prefix.
CACHE_REDIS_URL = REDIS_URL
# Nothing listens here: a Redis that is down.
CLOSED_REDIS_URL = "redis://127.0.0.1:6390/14"
BALANCE = {"total": 1_000, "available": 1_500, "currency": "IDR", "wabas": [{"waba_id": "1022", "spent": 0}]}
SLOW_DB_TIMEOUT_SECONDS = 0.05

# A bound on waiting for Redis to expire a key (a failure, never the expected path).
WAIT_SECONDS = 10.0


class FakeMonotonic:
    """An injected monotonic clock the tests move by hand."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


class Loader:
    """The database side of CachedBalances: counts its calls, can be made slow."""

    def __init__(self, value: dict[str, Any] | None = None) -> None:
        self.value = value or dict(BALANCE)
        self.version = 1
        self.calls = 0
        self.slow = False
        self.during_load: Callable[[], Awaitable[None]] | None = None

    async def __call__(self, company_id: int) -> Versioned:
        self.calls += 1
        version = self.version  # read before the wait: a change during the load is newer than what was read
        if self.during_load is not None:
            await self.during_load()
        if self.slow:
            await asyncio.Event().wait()
        return Versioned({**self.value, "company_id": company_id}, version)


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    require_redis()
    prefix = f"wabapool:test:{uuid.uuid4().hex}:"
    yield prefix
    client = redis_asyncio.Redis.from_url(CACHE_REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
async def redis_client() -> AsyncIterator[redis_asyncio.Redis]:
    client = redis_asyncio.Redis.from_url(CACHE_REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture
async def redis_cache(redis_prefix: str) -> AsyncIterator[RedisCache]:
    cache = RedisCache(CACHE_REDIS_URL, key_prefix=redis_prefix)
    yield cache
    await cache.close()


@pytest.fixture
async def down_cache() -> AsyncIterator[RedisCache]:
    cache = RedisCache(CLOSED_REDIS_URL)
    yield cache
    await cache.close()


@pytest.fixture(params=["in_process", pytest.param("redis", marks=pytest.mark.redis)])
def any_cache(request: pytest.FixtureRequest) -> BalanceCache:
    if request.param == "in_process":
        return InProcessCache()
    return request.getfixturevalue("redis_cache")


# --- InProcessCache -----------------------------------------------------------------------------


async def test_in_process_cache_answers_until_the_ttl_passes() -> None:
    clock = FakeMonotonic()
    cache = InProcessCache(ttl_seconds=30, clock=clock)
    await cache.set(1001, BALANCE, version=1)
    clock.advance(29.9)
    assert await cache.get(1001) == BALANCE
    clock.advance(0.1)
    assert await cache.get(1001) is None


async def test_in_process_cache_keeps_the_last_known_value_after_expiry_and_delete() -> None:
    clock = FakeMonotonic()
    cache = InProcessCache(ttl_seconds=30, clock=clock)
    await cache.set(1001, BALANCE, version=1)
    clock.advance(60)
    assert await cache.get(1001) is None
    await cache.delete(1001)
    assert await cache.last_known(1001) == BALANCE


async def test_in_process_cache_forgets_the_least_recently_used_company_past_its_bound() -> None:
    cache = InProcessCache(max_companies=2, clock=FakeMonotonic())
    await cache.set(1, {"n": 1}, version=1)
    await cache.set(2, {"n": 2}, version=1)
    assert await cache.get(1) == {"n": 1}  # 1 is now the most recently used
    await cache.set(3, {"n": 3}, version=1)
    assert await cache.get(2) is None
    assert await cache.get(1) == {"n": 1}
    assert await cache.get(3) == {"n": 3}


async def test_in_process_cache_hands_out_copies_callers_cannot_corrupt() -> None:
    cache = InProcessCache(clock=FakeMonotonic())
    await cache.set(1001, BALANCE, version=1)
    got = await cache.get(1001)
    assert got is not None
    got["total"] = -1
    got["wabas"].clear()
    assert await cache.get(1001) == BALANCE


async def test_in_process_cache_refills_only_the_last_known_value_while_fenced_after_a_delete() -> None:
    clock = FakeMonotonic()
    cache = InProcessCache(ttl_seconds=30, clock=clock, invalidation_fence_seconds=5)
    await cache.set(1001, {"total": 1}, version=1)
    await cache.delete(1001)
    clock.advance(4.9)
    await cache.set(1001, {"total": 2}, version=2)
    assert await cache.get(1001) is None
    assert await cache.last_known(1001) == {"total": 2}
    clock.advance(0.1)
    await cache.set(1001, {"total": 3}, version=3)
    assert await cache.get(1001) == {"total": 3}


@pytest.mark.parametrize("value", [{"total": 1.5}, {"wabas": [{"spent": 0.1}]}, {"total": float("nan")}])
async def test_caches_refuse_float_values(value: dict[str, Any]) -> None:
    with pytest.raises(TypeError):
        await InProcessCache().set(1001, value, version=1)


# --- RedisCache (the real Redis, database 14) ---------------------------------------------------


@pytest.mark.redis
async def test_redis_cache_stores_a_value_under_the_company_key_with_the_ttl(
    redis_cache: RedisCache, redis_client: redis_asyncio.Redis, redis_prefix: str
) -> None:
    await redis_cache.set(1001, BALANCE, version=1)
    assert await redis_cache.get(1001) == BALANCE
    assert 0 < await redis_client.pttl(f"{redis_prefix}1001") <= 30_000
    assert await redis_client.pttl(f"{redis_prefix}1001:last") > 30_000


@pytest.mark.redis
async def test_redis_cache_expires_the_value_after_the_ttl_but_keeps_the_last_known(
    redis_prefix: str, redis_client: redis_asyncio.Redis
) -> None:
    cache = RedisCache(CACHE_REDIS_URL, ttl_seconds=1.0, key_prefix=redis_prefix)
    try:
        await cache.set(1001, BALANCE, version=1)
        # Stored, with the TTL as its expiry (a cache that stored nothing would pass the wait below alone).
        assert 0 < await redis_client.pttl(f"{redis_prefix}1001") <= 1_000
        async with asyncio.timeout(WAIT_SECONDS):  # Redis expires it after its second: wait for that, not a guess
            while await cache.get(1001) is not None:
                await asyncio.sleep(0.01)
        assert await cache.last_known(1001) == BALANCE
    finally:
        await cache.close()


@pytest.mark.redis
async def test_redis_cache_delete_drops_the_value_and_keeps_the_last_known(redis_cache: RedisCache) -> None:
    await redis_cache.set(1001, BALANCE, version=1)
    await redis_cache.delete(1001)
    assert await redis_cache.get(1001) is None
    assert await redis_cache.last_known(1001) == BALANCE


@pytest.mark.redis
async def test_redis_cache_refills_only_the_last_known_value_while_fenced_after_a_delete(
    redis_prefix: str, redis_client: redis_asyncio.Redis
) -> None:
    # A fence of a second, not 0.1 s: the fenced set comes right after the delete, and a loaded machine's pause
    # must not lift the fence before it (the outcome says "fenced", so a missed window fails, never passes).
    cache = RedisCache(CACHE_REDIS_URL, key_prefix=redis_prefix, invalidation_fence_seconds=1.0)
    try:
        await cache.delete(1001)
        assert 0 < await redis_client.pttl(f"{redis_prefix}1001:fence") <= 1_000  # the fence: its second, no more
        assert await cache.set(1001, {"total": 2}, version=2) == "fenced"
        assert await cache.get(1001) is None
        assert await cache.last_known(1001) == {"total": 2}
        async with asyncio.timeout(WAIT_SECONDS):  # the fence lifts after its second; until then a set only refreshes
            while (outcome := await cache.set(1001, {"total": 3}, version=3)) == "fenced":
                assert await cache.get(1001) is None
                await asyncio.sleep(0.01)
        assert outcome == "stored"
        assert await cache.get(1001) == {"total": 3}
    finally:
        await cache.close()


@pytest.mark.redis
async def test_redis_cache_keeps_companies_apart(redis_cache: RedisCache) -> None:
    await redis_cache.set(1, {"total": 1}, version=1)
    await redis_cache.set(2, {"total": 2}, version=1)
    await redis_cache.delete(1)
    assert await redis_cache.get(1) is None
    assert await redis_cache.get(2) == {"total": 2}


@pytest.mark.redis
async def test_redis_cache_reports_an_unreadable_value_as_unavailable(
    redis_cache: RedisCache, redis_client: redis_asyncio.Redis, redis_prefix: str
) -> None:
    await redis_client.set(f"{redis_prefix}1001", b"\xff not json")
    with pytest.raises(CacheUnavailable):
        await redis_cache.get(1001)


@pytest.mark.redis
async def test_redis_cache_refuses_float_values(redis_cache: RedisCache) -> None:
    with pytest.raises(TypeError):
        await redis_cache.set(1001, {"total": 1.5}, version=1)


async def test_redis_cache_raises_cache_unavailable_when_redis_refuses_connections(down_cache: RedisCache) -> None:
    for operation in (down_cache.get(1001), down_cache.last_known(1001), down_cache.delete(1001)):
        with pytest.raises(CacheUnavailable):
            await operation
    with pytest.raises(CacheUnavailable):
        await down_cache.set(1001, BALANCE, version=1)


async def test_redis_cache_gives_up_within_its_socket_timeout_when_redis_hangs() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        await reader.read()

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cache = RedisCache(f"redis://127.0.0.1:{port}/14", socket_timeout_seconds=0.1)
    try:
        started = time.monotonic()
        with pytest.raises(CacheUnavailable):
            await cache.get(1001)
        assert time.monotonic() - started < 1.0
    finally:
        await cache.close()
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


def test_redis_cache_repr_does_not_show_the_url_password() -> None:
    cache = RedisCache("redis://:hunter2-password@127.0.0.1:6390/14")
    assert "hunter2" not in repr(cache)


# --- CachedBalances -----------------------------------------------------------------------------


async def test_balance_is_loaded_on_a_miss_then_answered_from_the_cache(any_cache: BalanceCache) -> None:
    loader = Loader()
    balances = CachedBalances(any_cache, loader)
    hits, misses = sample("wabapool_cache_hits_total"), sample("wabapool_cache_misses_total")
    first = await balances.get(1001)
    second = await balances.get(1001)
    assert first == second == ({**BALANCE, "company_id": 1001}, False)
    assert loader.calls == 1
    assert sample("wabapool_cache_misses_total") == misses + 1
    assert sample("wabapool_cache_hits_total") == hits + 1


async def test_balance_is_reloaded_after_an_invalidation(any_cache: BalanceCache) -> None:
    loader = Loader()
    balances = CachedBalances(any_cache, loader)
    await balances.get(1001)
    loader.value = {**BALANCE, "total": 900}
    await balances.invalidate(1001)
    value, stale = await balances.get(1001)
    assert (value["total"], stale) == (900, False)
    assert loader.calls == 2


async def test_a_load_that_overlaps_an_invalidation_is_not_cached(any_cache: BalanceCache) -> None:
    # A deduction commits and invalidates while a reader is still loading the old balance.
    loader = Loader()
    balances = CachedBalances(any_cache, loader)
    loader.during_load = lambda: balances.invalidate(1001)
    await balances.get(1001)
    loader.during_load = None
    await balances.get(1001)
    assert loader.calls == 2


async def test_balance_comes_from_the_database_when_redis_is_down(down_cache: RedisCache) -> None:
    loader = Loader()
    balances = CachedBalances(down_cache, loader)
    get_errors = sample("wabapool_cache_errors_total", {"operation": "get"})
    set_errors = sample("wabapool_cache_errors_total", {"operation": "set"})
    value, stale = await balances.get(1001)
    assert (value["total"], stale) == (BALANCE["total"], False)
    assert sample("wabapool_cache_errors_total", {"operation": "get"}) == get_errors + 1
    # No write is attempted against a Redis that just failed: the read is not slowed down twice.
    assert sample("wabapool_cache_errors_total", {"operation": "set"}) == set_errors


async def test_invalidation_while_redis_is_down_is_counted_not_raised(down_cache: RedisCache) -> None:
    balances = CachedBalances(down_cache, Loader())
    errors = sample("wabapool_cache_errors_total", {"operation": "delete"})
    await balances.invalidate(1001)
    assert sample("wabapool_cache_errors_total", {"operation": "delete"}) == errors + 1


async def test_last_known_balance_is_served_stale_when_the_database_is_past_its_timeout(
    any_cache: BalanceCache,
) -> None:
    loader = Loader()
    balances = CachedBalances(any_cache, loader, db_timeout_seconds=SLOW_DB_TIMEOUT_SECONDS)
    known, _ = await balances.get(1001)
    await balances.invalidate(1001)
    loader.slow = True
    stale_served = sample("wabapool_cache_stale_served_total")
    assert await balances.get(1001) == (known, True)
    assert sample("wabapool_cache_stale_served_total") == stale_served + 1


async def test_slow_database_with_nothing_known_raises_the_timeout(any_cache: BalanceCache) -> None:
    loader = Loader()
    loader.slow = True
    balances = CachedBalances(any_cache, loader, db_timeout_seconds=SLOW_DB_TIMEOUT_SECONDS)
    with pytest.raises(TimeoutError):
        await balances.get(1001)


async def test_slow_database_while_redis_is_down_raises_the_timeout(down_cache: RedisCache) -> None:
    loader = Loader()
    loader.slow = True
    balances = CachedBalances(down_cache, loader, db_timeout_seconds=SLOW_DB_TIMEOUT_SECONDS)
    with pytest.raises(TimeoutError):
        await balances.get(1001)


async def test_database_errors_other_than_the_timeout_propagate() -> None:
    async def broken(company_id: int) -> Versioned:
        raise RuntimeError("database gone")

    with pytest.raises(RuntimeError, match="database gone"):
        await CachedBalances(InProcessCache(), broken).get(1001)


def test_database_timeout_must_be_shorter_than_the_invalidation_fence() -> None:
    with pytest.raises(ValueError, match="fence"):
        CachedBalances(InProcessCache(invalidation_fence_seconds=1.0), Loader(), db_timeout_seconds=2.0)


# --- Versions: the write-through and the fills it races --------------------------------------------


async def test_an_older_write_through_cannot_overwrite_a_newer_one(any_cache: BalanceCache) -> None:
    balances = CachedBalances(any_cache, Loader())
    superseded = sample("wabapool_cache_write_throughs_total", {"outcome": "superseded"})
    await balances.write_through(1001, Versioned({"total": 700}, 7))
    await balances.write_through(1001, Versioned({"total": 800}, 6))  # committed first, arrived last
    assert await any_cache.get(1001) == {"total": 700}
    assert await any_cache.last_known(1001) == {"total": 700}
    assert sample("wabapool_cache_write_throughs_total", {"outcome": "superseded"}) == superseded + 1


async def test_a_newer_write_through_replaces_the_cached_balance(any_cache: BalanceCache) -> None:
    loader = Loader()
    balances = CachedBalances(any_cache, loader)
    await balances.get(1001)
    await balances.write_through(1001, Versioned({"total": 900}, 2))
    assert await balances.get(1001) == ({"total": 900}, False)
    assert loader.calls == 1


async def test_a_load_that_read_before_a_write_through_cannot_overwrite_it(any_cache: BalanceCache) -> None:
    # The read missed and loaded version 1; a deduction committed version 2 and wrote it through meanwhile.
    loader = Loader()
    balances = CachedBalances(any_cache, loader)
    loader.during_load = lambda: balances.write_through(1001, Versioned({"total": 900}, 2))
    value, _ = await balances.get(1001)
    assert value["total"] == BALANCE["total"]  # the reader itself is answered with what it read
    loader.during_load = None
    assert await balances.get(1001) == ({"total": 900}, False)
    assert loader.calls == 1


async def test_a_write_through_while_fenced_only_refreshes_the_last_known_value(any_cache: BalanceCache) -> None:
    # An invalidation (a change that brought no figures, e.g. a WABA provisioned) stands for the fence.
    balances = CachedBalances(any_cache, Loader())
    await balances.invalidate(1001)
    await balances.write_through(1001, Versioned({"total": 900}, 2))
    assert await any_cache.get(1001) is None
    assert await any_cache.last_known(1001) == {"total": 900}


async def test_the_newest_version_is_forgotten_a_fence_after_the_ttl() -> None:
    # A database restored to older versions is cached again instead of refused for good.
    clock = FakeMonotonic()
    cache = InProcessCache(ttl_seconds=30, clock=clock, invalidation_fence_seconds=5)
    assert await cache.set(1001, {"total": 1}, version=50) == "stored"
    assert await cache.set(1001, {"total": 2}, version=3) == "superseded"
    clock.advance(35)
    assert await cache.set(1001, {"total": 2}, version=3) == "stored"
    assert await cache.get(1001) == {"total": 2}


@pytest.mark.redis
async def test_redis_cache_keeps_the_newest_version_a_fence_longer_than_the_ttl(
    redis_cache: RedisCache, redis_client: redis_asyncio.Redis, redis_prefix: str
) -> None:
    assert await redis_cache.set(1001, BALANCE, version=4) == "stored"
    assert await redis_client.get(f"{redis_prefix}1001:version") == b"4"
    assert 30_000 < await redis_client.pttl(f"{redis_prefix}1001:version") <= 35_000
