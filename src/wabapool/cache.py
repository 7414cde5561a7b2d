"""The balance cache (SPEC section 6): one entry per company, a TTL, stale serving when the database is slow.

    CacheUnavailable      the cache backend (Redis) did not answer; callers read the database instead

Each company has three entries: the fresh value (expires after the TTL), the
last known value (long-lived, served marked stale only when the database is
past its timeout), and an invalidation fence. The fence closes a race: a read
that loaded the balance before a change committed must not put that old value
back after the change deleted it. `delete` raises the fence for longer than a
load may take (`CachedBalances` checks the database timeout is shorter), and a
`set` under the fence only refreshes the last known value.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import redis.asyncio as redis_asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from wabapool import metrics

# SPEC section 6 (WABAPOOL_CACHE_TTL_SECONDS).
DEFAULT_TTL_SECONDS = 30.0
# One embedded process serves a bounded number of companies; the least recently used fall out.
IN_PROCESS_MAX_COMPANIES = 10_000
# Stale serving needs an old value, not an eternal one: a week, then Redis reclaims it.
LAST_KNOWN_TTL_SECONDS = 7 * 24 * 3600
# Longer than any load may take (CachedBalances' database timeout), so no load that began before a change can
# repopulate the cache after it.
INVALIDATION_FENCE_SECONDS = 5.0
# Redis on the same network answers in a millisecond; past this it is down, and the database answers instead.
REDIS_SOCKET_TIMEOUT_SECONDS = 0.25
# Connections one process may open to Redis; past this the read falls back to the database.
REDIS_MAX_CONNECTIONS = 64
# SPEC section 6: the database is given this long before the last known value is served.
DEFAULT_DB_TIMEOUT_SECONDS = 2.0


class CacheUnavailable(Exception):
    """The cache backend did not answer (connection refused, timeout, unreadable value)."""


class BalanceCache(Protocol):
    """Per-company balance values: JSON-serializable dicts of ints and strings."""

    invalidation_fence_seconds: float

    async def get(self, company_id: int) -> dict[str, Any] | None:
        """The fresh value, or None when absent or expired."""
        ...

    async def set(self, company_id: int, value: dict[str, Any]) -> None:
        """Store the value as fresh (unless fenced) and as the last known value."""
        ...

    async def delete(self, company_id: int) -> None:
        """Drop the fresh value and fence the company; the last known value stays."""
        ...

    async def last_known(self, company_id: int) -> dict[str, Any] | None:
        """The most recently stored value, fresh or not."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


def _reject_floats(value: object) -> None:
    if isinstance(value, float):
        raise TypeError("balance values hold integers and strings, never floats")
    if isinstance(value, dict):
        for item in value.values():
            _reject_floats(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _reject_floats(item)


def encode(value: dict[str, Any]) -> str:
    """The cached form of a value; refuses floats, NaN and anything JSON cannot carry."""
    if not isinstance(value, dict):
        raise TypeError("a balance value is a dict")
    _reject_floats(value)
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def decode(encoded: str | bytes) -> dict[str, Any]:
    value = json.loads(encoded)
    if not isinstance(value, dict):
        raise ValueError("a cached balance value is not a JSON object")
    return value


def _check_seconds(name: str, seconds: float) -> None:
    if not seconds > 0:
        raise ValueError(f"{name} must be positive")


class InProcessCache:
    """The embedded-mode cache: bounded LRU dictionaries, an injected monotonic clock."""

    def __init__(
        self,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_companies: int = IN_PROCESS_MAX_COMPANIES,
        invalidation_fence_seconds: float = INVALIDATION_FENCE_SECONDS,
    ) -> None:
        _check_seconds("ttl_seconds", ttl_seconds)
        _check_seconds("invalidation_fence_seconds", invalidation_fence_seconds)
        if max_companies < 1:
            raise ValueError("max_companies must be at least 1")
        self.ttl_seconds = ttl_seconds
        self.invalidation_fence_seconds = invalidation_fence_seconds
        self._clock = clock
        self._max_companies = max_companies
        # Values are stored encoded: callers cannot mutate a cached value, and both caches accept the same values.
        self._fresh: OrderedDict[int, tuple[float, str]] = OrderedDict()
        self._last: OrderedDict[int, str] = OrderedDict()
        self._fenced_until: OrderedDict[int, float] = OrderedDict()

    def _remember(self, table: OrderedDict[int, Any], company_id: int, item: Any) -> None:
        table[company_id] = item
        table.move_to_end(company_id)
        while len(table) > self._max_companies:
            table.popitem(last=False)

    async def get(self, company_id: int) -> dict[str, Any] | None:
        entry = self._fresh.get(company_id)
        if entry is None:
            return None
        expires_at, encoded = entry
        if self._clock() >= expires_at:
            del self._fresh[company_id]
            return None
        self._fresh.move_to_end(company_id)
        return decode(encoded)

    async def set(self, company_id: int, value: dict[str, Any]) -> None:
        encoded = encode(value)
        now = self._clock()
        self._remember(self._last, company_id, encoded)
        if now < self._fenced_until.get(company_id, now):
            return
        self._fenced_until.pop(company_id, None)
        self._remember(self._fresh, company_id, (now + self.ttl_seconds, encoded))

    async def delete(self, company_id: int) -> None:
        self._fresh.pop(company_id, None)
        self._remember(self._fenced_until, company_id, self._clock() + self.invalidation_fence_seconds)

    async def last_known(self, company_id: int) -> dict[str, Any] | None:
        encoded = self._last.get(company_id)
        return None if encoded is None else decode(encoded)

    async def close(self) -> None:
        self._fresh.clear()
        self._last.clear()
        self._fenced_until.clear()


# KEYS: fresh, last known, fence. ARGV: value, fresh TTL ms, last known TTL ms. Returns 1 when stored as fresh.
_SET_SCRIPT = """
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[3])
if redis.call('EXISTS', KEYS[3]) == 1 then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""


class RedisCache:
    """The production cache: `{prefix}{company_id}` with the TTL, `…:last` long-lived, `…:fence` after a change."""

    def __init__(
        self,
        redis_url: str,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        key_prefix: str = "wabapool:balance:",
        *,
        socket_timeout_seconds: float = REDIS_SOCKET_TIMEOUT_SECONDS,
        invalidation_fence_seconds: float = INVALIDATION_FENCE_SECONDS,
        last_known_ttl_seconds: float = LAST_KNOWN_TTL_SECONDS,
    ) -> None:
        for name, seconds in (
            ("ttl_seconds", ttl_seconds),
            ("socket_timeout_seconds", socket_timeout_seconds),
            ("invalidation_fence_seconds", invalidation_fence_seconds),
            ("last_known_ttl_seconds", last_known_ttl_seconds),
        ):
            _check_seconds(name, seconds)
        self.ttl_seconds = ttl_seconds
        self.key_prefix = key_prefix
        self.invalidation_fence_seconds = invalidation_fence_seconds
        self._last_known_ttl_ms = int(last_known_ttl_seconds * 1000)
        self._client = redis_asyncio.Redis.from_url(
            redis_url,
            socket_timeout=socket_timeout_seconds,
            socket_connect_timeout=socket_timeout_seconds,
            # A retry would multiply the wait on a Redis that is down; the database is the fallback.
            retry=Retry(NoBackoff(), 0),
            max_connections=REDIS_MAX_CONNECTIONS,
        )
        self._set_script = self._client.register_script(_SET_SCRIPT)

    def _keys(self, company_id: int) -> tuple[str, str, str]:
        fresh = f"{self.key_prefix}{int(company_id)}"
        return fresh, f"{fresh}:last", f"{fresh}:fence"

    async def get(self, company_id: int) -> dict[str, Any] | None:
        fresh, _, _ = self._keys(company_id)
        return await self._read(fresh)

    async def last_known(self, company_id: int) -> dict[str, Any] | None:
        _, last, _ = self._keys(company_id)
        return await self._read(last)

    async def _read(self, key: str) -> dict[str, Any] | None:
        try:
            encoded = await self._client.get(key)
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(f"Redis read failed: {type(exc).__name__}") from exc
        if encoded is None:
            return None
        try:
            return decode(encoded)
        except ValueError as exc:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise CacheUnavailable(f"Redis holds an unreadable value at {key}") from exc

    async def set(self, company_id: int, value: dict[str, Any]) -> None:
        encoded = encode(value)
        ttl_ms = max(1, int(self.ttl_seconds * 1000))
        try:
            await self._set_script(keys=list(self._keys(company_id)), args=[encoded, ttl_ms, self._last_known_ttl_ms])
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(f"Redis write failed: {type(exc).__name__}") from exc

    async def delete(self, company_id: int) -> None:
        fresh, _, fence = self._keys(company_id)
        fence_ms = max(1, int(self.invalidation_fence_seconds * 1000))
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.set(fence, b"1", px=fence_ms)
                pipe.delete(fresh)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(f"Redis delete failed: {type(exc).__name__}") from exc

    async def close(self) -> None:
        await self._client.aclose()

    def __repr__(self) -> str:
        # The URL may carry a password: not shown.
        return f"RedisCache(key_prefix={self.key_prefix!r}, ttl_seconds={self.ttl_seconds!r})"


class CachedBalances:
    """Cache-aside reads of the balance: the cache, else the database, else (database too slow) the last known value."""

    def __init__(
        self,
        cache: BalanceCache,
        load: Callable[[int], Awaitable[dict[str, Any]]],
        *,
        db_timeout_seconds: float = DEFAULT_DB_TIMEOUT_SECONDS,
    ) -> None:
        _check_seconds("db_timeout_seconds", db_timeout_seconds)
        if db_timeout_seconds >= cache.invalidation_fence_seconds:
            raise ValueError("db_timeout_seconds must be shorter than the cache's invalidation fence")
        self.cache = cache
        self._load = load
        self._db_timeout_seconds = db_timeout_seconds

    async def get(self, company_id: int) -> tuple[dict[str, Any], bool]:
        """The balance and whether it is stale (served from the last known value)."""
        cache_up = True
        try:
            cached = await self.cache.get(company_id)
        except CacheUnavailable:
            metrics.CACHE_ERRORS.labels(operation="get").inc()
            cache_up = False
        else:
            if cached is not None:
                metrics.CACHE_HITS.inc()
                return cached, False
            metrics.CACHE_MISSES.inc()
        try:
            value = await asyncio.wait_for(self._load(company_id), self._db_timeout_seconds)
        except TimeoutError:
            last = await self._last_known(company_id) if cache_up else None
            if last is None:
                raise
            metrics.CACHE_STALE_SERVED.inc()
            return last, True
        if cache_up:
            await self._store(company_id, value)
        return value, False

    async def invalidate(self, company_id: int) -> None:
        """Delete the company's entry; if the cache is down, count it and let the TTL bound staleness."""
        try:
            await self.cache.delete(company_id)
        except CacheUnavailable:
            metrics.CACHE_ERRORS.labels(operation="delete").inc()

    async def _store(self, company_id: int, value: dict[str, Any]) -> None:
        try:
            await self.cache.set(company_id, value)
        except CacheUnavailable:
            metrics.CACHE_ERRORS.labels(operation="set").inc()

    async def _last_known(self, company_id: int) -> dict[str, Any] | None:
        try:
            return await self.cache.last_known(company_id)
        except CacheUnavailable:
            metrics.CACHE_ERRORS.labels(operation="last_known").inc()
            return None
