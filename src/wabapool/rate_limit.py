"""Rate limits on the public API, per company and per token: token buckets (`domain/rate.py`) in a store.

- `RedisBuckets` when `WABAPOOL_REDIS_URL` is set: one Lua script refills and takes every bucket of a
  request at once, on Redis's clock, so every process of the deployment shares the same buckets;
- `InProcessBuckets` otherwise (one process: the embedded default), at most RATE_BUCKETS_MAX buckets.

A Redis that does not answer in REDIS_SOCKET_TIMEOUT_SECONDS lets the request through (counted in
`/metrics`): the limit protects the service, it must not become the reason it fails.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as redis_asyncio
import structlog
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from wabapool.domain.rate import Bucket, BucketRule, take

log = structlog.get_logger("wabapool.rate_limit")

# Buckets one process keeps (a company's and each of its tokens'): past this the least recently used are
# forgotten, which only ever lets a forgotten caller through with a full bucket.
RATE_BUCKETS_MAX = 100_000
# Redis on the same network answers in a millisecond; past this the request goes through unlimited.
REDIS_SOCKET_TIMEOUT_SECONDS = 0.25
REDIS_MAX_CONNECTIONS = 32

# KEYS: the buckets; ARGV: rate and burst of each, in KEYS' order. Returns the seconds to wait ("0": taken).
_TAKE_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local wait = 0
local levels = {}
for i, key in ipairs(KEYS) do
  local rate = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local state = redis.call('HMGET', key, 'tokens', 'at')
  local level = burst
  if state[1] then
    level = math.min(burst, tonumber(state[1]) + math.max(0, now - tonumber(state[2])) * rate)
  end
  levels[i] = level
  if level < 1 then wait = math.max(wait, (1 - level) / rate) end
end
local taken = 1
if wait > 0 then taken = 0 end
for i, key in ipairs(KEYS) do
  local rate = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  redis.call('HSET', key, 'tokens', string.format('%.6f', levels[i] - taken), 'at', string.format('%.6f', now))
  redis.call('PEXPIRE', key, math.ceil(burst / rate * 1000) + 1000)
end
return string.format('%.6f', wait)
"""


class Buckets(Protocol):
    async def take(self, keys: list[str], rules: list[BucketRule]) -> float:
        """One token from each bucket, or none; the seconds to wait (0 when taken)."""
        ...

    async def close(self) -> None: ...


class InProcessBuckets:
    """Buckets in this process's memory; the clock is injected (tests move it by hand)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, max_buckets: int = RATE_BUCKETS_MAX) -> None:
        self._clock = clock
        self._max_buckets = max_buckets
        self._buckets: OrderedDict[str, Bucket] = OrderedDict()

    async def take(self, keys: list[str], rules: list[BucketRule]) -> float:
        wait, buckets = take([self._buckets.get(key) for key in keys], rules, self._clock())
        for key, bucket in zip(keys, buckets, strict=True):
            self._buckets[key] = bucket
            self._buckets.move_to_end(key)
        while len(self._buckets) > self._max_buckets:
            self._buckets.popitem(last=False)
        return wait

    async def close(self) -> None:
        self._buckets.clear()


class RedisBuckets:
    """Buckets in Redis, shared by every process; `key_prefix` keeps deployments (and tests) apart."""

    def __init__(self, redis_url: str, *, key_prefix: str = "wabapool:rate:") -> None:
        self.key_prefix = key_prefix
        self._client = redis_asyncio.Redis.from_url(
            redis_url,
            socket_timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
            retry=Retry(NoBackoff(), 0),
            max_connections=REDIS_MAX_CONNECTIONS,
        )
        self._script = self._client.register_script(_TAKE_SCRIPT)

    async def take(self, keys: list[str], rules: list[BucketRule]) -> float:
        arguments: list[float] = []
        for rule in rules:
            arguments += [rule.rate_per_second, rule.burst]
        try:
            answer = await self._script(keys=[self.key_prefix + key for key in keys], args=arguments)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("rate_limit_unavailable", error_type=type(exc).__name__)
            return 0.0
        return float(answer)

    async def close(self) -> None:
        await self._client.aclose()


@dataclass(frozen=True, slots=True)
class PublicRateLimits:
    """The public API's limits: a bucket per company and one per token, taken together."""

    buckets: Buckets
    per_company: BucketRule
    per_token: BucketRule

    async def wait_seconds(self, company_id: int, token: str) -> float:
        """0 when the request may go on; else how long until it may (nothing taken)."""
        token_key = hashlib.sha256(token.encode()).hexdigest()[:32]  # never the token itself in a store
        return await self.buckets.take(
            [f"company:{company_id}", f"token:{token_key}"], [self.per_company, self.per_token]
        )
