"""The balance cache (SPEC section 6): one entry per company, a TTL, stale serving when the database is slow.

    CacheUnavailable      the cache backend (Redis) did not answer; callers read the database instead

Each company has four entries: the fresh value (expires after the TTL), the
last known value (long-lived, served marked stale only when the database is
past its timeout), the newest version stored (kept a fence longer than the
TTL), and an invalidation fence.

Values are ordered by the pool's version (`storage.versions`): a change that
commits hands the cache its new figures under the version it wrote (the
write-through), a read that missed stores what it loaded under the version it
read, and a value older than the one stored is refused. So neither a late
write-through nor a load that began before a change can put an old balance
back over a newer one. The version is remembered only as long as an older
value can still be on its way (a load is cut off at the database timeout, a
write-through is sent as its change commits): past that, a database restored
to older versions is cached again instead of refused.

The fence covers the changes that come without figures (the worker's resets,
provisioning, a write-through that failed, the invalidate-cache endpoint):
`delete` drops the fresh value and raises the fence for longer than a load
may take (`CachedBalances` checks the database timeout is shorter); while it
stands a value only refreshes the last known one.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol

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


# What `set` did: stored as the fresh value; kept as the last known only (fenced); refused (a newer one is stored).
SetOutcome = Literal["stored", "fenced", "superseded"]


class CacheUnavailable(Exception):
    """The cache backend did not answer (connection refused, timeout, unreadable value)."""


class BalanceCache(Protocol):
    """Per-company balance values: JSON-serializable dicts of ints and strings."""

    invalidation_fence_seconds: float

    async def get(self, company_id: int) -> dict[str, Any] | None:
        """The fresh value, or None when absent or expired."""
        ...

    async def set(self, company_id: int, value: dict[str, Any], *, version: int | None) -> SetOutcome:
        """Store the value of pool version `version`, unless a newer one is stored: as last known, and fresh
        unless fenced. A value without a version is ordered by the fence alone."""
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


@dataclass(slots=True)
class _Entry:
    """One company in the in-process cache."""

    version: int | None = None  # the newest version stored; None while only unversioned values were
    version_until: float = 0.0
    fresh: str | None = None
    fresh_until: float = 0.0
    last: str | None = None
    fenced_until: float = 0.0


class InProcessCache:
    """The embedded-mode cache: a bounded LRU dictionary, an injected monotonic clock.

    No await between reading an entry and writing it, so each operation is
    atomic on the event loop: the version comparison needs no lock.
    """

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
        self._entries: OrderedDict[int, _Entry] = OrderedDict()

    def _entry(self, company_id: int) -> _Entry:
        entry = self._entries.get(company_id)
        if entry is None:
            entry = self._entries[company_id] = _Entry()
            while len(self._entries) > self._max_companies:
                self._entries.popitem(last=False)
        self._entries.move_to_end(company_id)
        return entry

    async def get(self, company_id: int) -> dict[str, Any] | None:
        entry = self._entries.get(company_id)
        if entry is None or entry.fresh is None:
            return None
        if self._clock() >= entry.fresh_until:
            entry.fresh = None
            return None
        self._entries.move_to_end(company_id)
        return decode(entry.fresh)

    async def set(self, company_id: int, value: dict[str, Any], *, version: int | None) -> SetOutcome:
        encoded = encode(value)
        entry = self._entry(company_id)
        now = self._clock()
        if version is not None:
            if entry.version is not None and now < entry.version_until and version < entry.version:
                return "superseded"
            entry.version = version
            entry.version_until = now + self.ttl_seconds + self.invalidation_fence_seconds
        entry.last = encoded
        if now < entry.fenced_until:
            return "fenced"
        entry.fresh, entry.fresh_until = encoded, now + self.ttl_seconds
        return "stored"

    async def delete(self, company_id: int) -> None:
        entry = self._entry(company_id)
        entry.fresh = None
        entry.fenced_until = self._clock() + self.invalidation_fence_seconds

    async def last_known(self, company_id: int) -> dict[str, Any] | None:
        entry = self._entries.get(company_id)
        return None if entry is None or entry.last is None else decode(entry.last)

    async def close(self) -> None:
        self._entries.clear()


# KEYS: fresh, last known, fence, newest version.
# ARGV: value, version ('' for none), fresh TTL ms, last known TTL ms, newest version TTL ms.
# Versions are a pool's change counter, far below 2^53, so Lua's numbers compare them exactly.
_SET_SCRIPT = """
if ARGV[2] ~= '' then
  local newest = redis.call('GET', KEYS[4])
  if newest and tonumber(newest) > tonumber(ARGV[2]) then
    return 'superseded'
  end
  redis.call('SET', KEYS[4], ARGV[2], 'PX', ARGV[5])
end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[4])
if redis.call('EXISTS', KEYS[3]) == 1 then
  return 'fenced'
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 'stored'
"""
_SET_OUTCOMES: dict[bytes, SetOutcome] = {b"stored": "stored", b"fenced": "fenced", b"superseded": "superseded"}


class RedisCache:
    """The production cache: `{prefix}{company_id}` with the TTL; `…:last` and `…:version` long-lived; `…:fence`."""

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

    def _keys(self, company_id: int) -> tuple[str, str, str, str]:
        fresh = f"{self.key_prefix}{int(company_id)}"
        return fresh, f"{fresh}:last", f"{fresh}:fence", f"{fresh}:version"

    async def get(self, company_id: int) -> dict[str, Any] | None:
        return await self._read(self._keys(company_id)[0])

    async def last_known(self, company_id: int) -> dict[str, Any] | None:
        return await self._read(self._keys(company_id)[1])

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

    async def set(self, company_id: int, value: dict[str, Any], *, version: int | None) -> SetOutcome:
        encoded = encode(value)
        ttl_ms = max(1, int(self.ttl_seconds * 1000))
        version_ttl_ms = max(1, int((self.ttl_seconds + self.invalidation_fence_seconds) * 1000))
        args = [encoded, "" if version is None else int(version), ttl_ms, self._last_known_ttl_ms, version_ttl_ms]
        try:
            outcome = await self._set_script(keys=list(self._keys(company_id)), args=args)
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(f"Redis write failed: {type(exc).__name__}") from exc
        if outcome not in _SET_OUTCOMES:
            raise CacheUnavailable(f"Redis answered the set script with {outcome!r}")
        return _SET_OUTCOMES[outcome]

    async def delete(self, company_id: int) -> None:
        fresh, _, fence, _ = self._keys(company_id)
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


class Versioned(NamedTuple):
    """A balance value and the pool version it is of (None: not ordered by version, only by the fence)."""

    value: dict[str, Any]
    version: int | None


class CachedBalances:
    """Reads of the balance: the cache, else the database, else (database too slow) the last known value.

    Writes keep it current: `write_through` after a change that brings its new
    figures, `invalidate` after one that does not.
    """

    def __init__(
        self,
        cache: BalanceCache,
        load: Callable[[int], Awaitable[Versioned]],
        *,
        db_timeout_seconds: float = DEFAULT_DB_TIMEOUT_SECONDS,
    ) -> None:
        _check_seconds("db_timeout_seconds", db_timeout_seconds)
        if db_timeout_seconds >= cache.invalidation_fence_seconds:
            raise ValueError("db_timeout_seconds must be shorter than the cache's invalidation fence")
        self.cache = cache
        self._load = load
        self._db_timeout_seconds = db_timeout_seconds
        # Reads that outlived the wait and finish on their own (each bounded by the statement timeout).
        self._late_loads: set[asyncio.Task[Versioned]] = set()

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
        # The read is waited for, never cancelled: cancelling a driver call half way can leave its
        # connection unusable. One that outlives the wait finishes on its own, its answer dropped.
        load = asyncio.ensure_future(self._load(company_id))
        try:
            loaded = await asyncio.wait_for(asyncio.shield(load), self._db_timeout_seconds)
        except TimeoutError:
            self._late_loads.add(load)
            load.add_done_callback(self._late_load_done)
            last = await self._last_known(company_id) if cache_up else None
            if last is None:
                raise
            metrics.CACHE_STALE_SERVED.inc()
            return last, True
        if cache_up:
            await self._store(company_id, loaded)
        return loaded.value, False

    def _late_load_done(self, load: asyncio.Task[Versioned]) -> None:
        self._late_loads.discard(load)
        if not load.cancelled():
            load.exception()  # retrieved: its failure was already answered as a timeout

    async def write_through(self, company_id: int, balance: Versioned) -> None:
        """After a change commits: its figures become the cached balance, unless a newer one is there already.

        If the cache fails, the entry is deleted instead (invalidation, as for a
        change without figures); if that fails too, the TTL bounds staleness.
        """
        try:
            outcome = await self.cache.set(company_id, balance.value, version=balance.version)
        except CacheUnavailable:
            metrics.CACHE_ERRORS.labels(operation="write_through").inc()
            await self.invalidate(company_id)
            return
        metrics.CACHE_WRITE_THROUGHS.labels(outcome=outcome).inc()

    async def invalidate(self, company_id: int) -> None:
        """Delete the company's entry; if the cache is down, count it and let the TTL bound staleness."""
        try:
            await self.cache.delete(company_id)
        except CacheUnavailable:
            metrics.CACHE_ERRORS.labels(operation="delete").inc()

    async def _store(self, company_id: int, loaded: Versioned) -> None:
        try:
            await self.cache.set(company_id, loaded.value, version=loaded.version)
        except CacheUnavailable:
            metrics.CACHE_ERRORS.labels(operation="set").inc()

    async def _last_known(self, company_id: int) -> dict[str, Any] | None:
        try:
            return await self.cache.last_known(company_id)
        except CacheUnavailable:
            metrics.CACHE_ERRORS.labels(operation="last_known").inc()
            return None
