"""What every balance cache offers, the limits they share, and the one encoding of a value."""

from __future__ import annotations

import json
from typing import Literal, Protocol

from wabapool.domain.json_types import JSONObject

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

# A cached value: the service's plain view of a balance (a JSON object of ints, strings, bools and nulls).
CachedValue = JSONObject

# What `set` did: stored as the fresh value; kept as the last known only (fenced); refused (a newer one is stored).
SetOutcome = Literal["stored", "fenced", "superseded"]


class CacheUnavailable(Exception):
    """The cache backend did not answer (connection refused, timeout, unreadable value)."""


class BalanceCache(Protocol):
    """Per-company balance values: JSON-serializable dicts of ints and strings."""

    invalidation_fence_seconds: float

    async def get(self, company_id: int) -> CachedValue | None:
        """The fresh value, or None when absent or expired."""
        ...

    async def set(self, company_id: int, value: CachedValue, *, version: int | None) -> SetOutcome:
        """Store the value of pool version `version`, unless a newer one is stored: as last known, and fresh
        unless fenced. A value without a version is ordered by the fence alone."""
        ...

    async def delete(self, company_id: int) -> None:
        """Drop the fresh value and fence the company; the last known value stays."""
        ...

    async def last_known(self, company_id: int) -> CachedValue | None:
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


def encode(value: CachedValue) -> str:
    """The cached form of a value; refuses floats, NaN and anything JSON cannot carry."""
    if not isinstance(value, dict):
        raise TypeError("a balance value is a dict")
    _reject_floats(value)
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def decode(encoded: str | bytes) -> CachedValue:
    value = json.loads(encoded)
    if not isinstance(value, dict):
        raise ValueError("a cached balance value is not a JSON object")
    return value


def check_seconds(name: str, seconds: float) -> None:
    if not seconds > 0:
        raise ValueError(f"{name} must be positive")
