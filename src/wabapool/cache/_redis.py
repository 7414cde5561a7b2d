"""The Redis cache: shared by every server process and the worker, so one process's change reaches the others."""

from __future__ import annotations

import redis.asyncio as redis_asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from wabapool.cache._protocol import (
    DEFAULT_TTL_SECONDS,
    INVALIDATION_FENCE_SECONDS,
    LAST_KNOWN_TTL_SECONDS,
    REDIS_MAX_CONNECTIONS,
    REDIS_SOCKET_TIMEOUT_SECONDS,
    CachedValue,
    CacheUnavailable,
    SetOutcome,
    check_seconds,
    decode,
    encode,
)

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
            check_seconds(name, seconds)
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

    async def get(self, company_id: int) -> CachedValue | None:
        return await self._read(self._keys(company_id)[0])

    async def last_known(self, company_id: int) -> CachedValue | None:
        return await self._read(self._keys(company_id)[1])

    async def _read(self, key: str) -> CachedValue | None:
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

    async def set(self, company_id: int, value: CachedValue, *, version: int | None) -> SetOutcome:
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
