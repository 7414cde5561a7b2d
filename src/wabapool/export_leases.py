"""The per-company limit on CSV exports across every server process: leases in Redis.

Each company's running exports are the members of one sorted set (`<prefix><company>`), scored by when each
lease expires, in milliseconds on Redis's clock. One Lua script drops the expired members, counts the rest
and adds the new lease only while they are under the limit, so two processes can never both take the last
slot. The holder renews its lease every `EXPORT_LEASE_RENEW_SECONDS` while its export runs and removes it
when the export ends; a process that dies stops renewing, and its leases expire within
`EXPORT_LEASE_SECONDS`, giving their slots back.

A Redis that does not answer in REDIS_SOCKET_TIMEOUT_SECONDS grants the export without a lease (logged):
each process's own count still bounds the company's exports in it (`ExportSlots`), as without Redis.
"""

from __future__ import annotations

import uuid

import redis.asyncio as redis_asyncio
import structlog
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

log = structlog.get_logger("wabapool.export_leases")

# How long a lease outlives its last renewal: a dead process's slots come back within this.
EXPORT_LEASE_SECONDS = 30
# How often a running export renews its lease: three renewals fit in a lease, so one late renewal loses nothing.
EXPORT_LEASE_RENEW_SECONDS = 10
REDIS_SOCKET_TIMEOUT_SECONDS = 0.25
REDIS_MAX_CONNECTIONS = 16

# KEYS[1]: the company's leases. ARGV: the limit, the lease's milliseconds, the new lease's id. 1: taken.
_TAKE_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
"""
# KEYS[1]: the company's leases. ARGV: the lease's milliseconds, the lease's id. Only a lease still held is
# renewed (one that expired is gone: its slot may be another's now). 1: renewed.
_RENEW_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
if not redis.call('ZSCORE', KEYS[1], ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
return 1
"""


class RedisExportLeases:
    """Export slots of each company shared by every process through Redis (`key_prefix` keeps deployments
    and tests apart)."""

    def __init__(
        self, redis_url: str, *, key_prefix: str = "wabapool:exports:", lease_seconds: float = EXPORT_LEASE_SECONDS
    ) -> None:
        self.key_prefix = key_prefix
        self.renew_seconds = min(EXPORT_LEASE_RENEW_SECONDS, lease_seconds / 3)
        self._lease_ms = int(lease_seconds * 1000)
        self._client = redis_asyncio.Redis.from_url(
            redis_url,
            socket_timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
            retry=Retry(NoBackoff(), 0),
            max_connections=REDIS_MAX_CONNECTIONS,
        )
        self._take = self._client.register_script(_TAKE_SCRIPT)
        self._renew = self._client.register_script(_RENEW_SCRIPT)

    async def take(self, company_id: int, limit: int) -> str | None:
        """A lease on one of the company's `limit` slots (its id), None when every slot is held, or "" when
        Redis did not answer (granted without a lease)."""
        lease = uuid.uuid4().hex
        try:
            taken = await self._take(keys=[self._key(company_id)], args=[limit, self._lease_ms, lease])
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("export_leases_unavailable", error_type=type(exc).__name__)
            return ""
        return lease if int(taken) == 1 else None

    async def renew(self, company_id: int, lease: str) -> None:
        try:
            await self._renew(keys=[self._key(company_id)], args=[self._lease_ms, lease])
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("export_lease_not_renewed", error_type=type(exc).__name__)

    async def give_back(self, company_id: int, lease: str) -> None:
        try:
            await self._client.zrem(self._key(company_id), lease)
        except (RedisError, OSError, TimeoutError) as exc:  # it expires on its own
            log.warning("export_lease_not_given_back", error_type=type(exc).__name__)

    async def held(self, company_id: int) -> int:
        """Leases the company holds now, in every process (expired ones not counted)."""
        key = self._key(company_id)
        clock = await self._client.time()
        now_ms = int(clock[0]) * 1000 + int(clock[1]) // 1000
        return int(await self._client.zcount(key, now_ms + 1, "+inf"))

    async def close(self) -> None:
        await self._client.aclose()

    def _key(self, company_id: int) -> str:
        return f"{self.key_prefix}{company_id}"
