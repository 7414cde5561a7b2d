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

The package holds plain data: the service hands it a balance view as a JSON
object (`wabapool.service.balance_cache`) and turns what it reads back into a
view; the API's JSON is built from that view, never stored here.

    _protocol.py     BalanceCache, the shared limits, the encoding of a value
    _in_process.py   InProcessCache (one process: embedded mode and tests)
    _redis.py        RedisCache (shared by every process)
    _balances.py     CachedBalances: the read-through, the write-through, the fence
"""

from wabapool.cache._balances import CachedBalances, Versioned
from wabapool.cache._in_process import InProcessCache
from wabapool.cache._protocol import (
    DEFAULT_DB_TIMEOUT_SECONDS,
    DEFAULT_TTL_SECONDS,
    INVALIDATION_FENCE_SECONDS,
    BalanceCache,
    CachedValue,
    CacheUnavailable,
    SetOutcome,
    decode,
    encode,
)
from wabapool.cache._redis import RedisCache

__all__ = [
    "DEFAULT_DB_TIMEOUT_SECONDS",
    "DEFAULT_TTL_SECONDS",
    "INVALIDATION_FENCE_SECONDS",
    "BalanceCache",
    "CacheUnavailable",
    "CachedBalances",
    "CachedValue",
    "InProcessCache",
    "RedisCache",
    "SetOutcome",
    "Versioned",
    "decode",
    "encode",
]
