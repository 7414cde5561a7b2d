"""Reads through the cache with the database behind it, and the writes that keep it current."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from wabapool import metrics
from wabapool.cache._protocol import (
    DEFAULT_DB_TIMEOUT_SECONDS,
    BalanceCache,
    CachedValue,
    CacheUnavailable,
    check_seconds,
)


class Versioned(NamedTuple):
    """A balance value and the pool version it is of (None: not ordered by version, only by the fence)."""

    value: CachedValue
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
        check_seconds("db_timeout_seconds", db_timeout_seconds)
        if db_timeout_seconds >= cache.invalidation_fence_seconds:
            raise ValueError("db_timeout_seconds must be shorter than the cache's invalidation fence")
        self.cache = cache
        self._load = load
        self._db_timeout_seconds = db_timeout_seconds
        # Reads that outlived the wait and finish on their own (each bounded by the statement timeout).
        self._late_loads: set[asyncio.Task[Versioned]] = set()

    async def get(self, company_id: int) -> tuple[CachedValue, bool]:
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

    async def _last_known(self, company_id: int) -> CachedValue | None:
        try:
            return await self.cache.last_known(company_id)
        except CacheUnavailable:
            metrics.CACHE_ERRORS.labels(operation="last_known").inc()
            return None
