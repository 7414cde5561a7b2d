"""The in-process cache: one process's own (embedded mode, tests), a bounded LRU dictionary."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from wabapool.cache._protocol import (
    DEFAULT_TTL_SECONDS,
    IN_PROCESS_MAX_COMPANIES,
    INVALIDATION_FENCE_SECONDS,
    CachedValue,
    SetOutcome,
    check_seconds,
    decode,
    encode,
)


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
        check_seconds("ttl_seconds", ttl_seconds)
        check_seconds("invalidation_fence_seconds", invalidation_fence_seconds)
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

    async def get(self, company_id: int) -> CachedValue | None:
        entry = self._entries.get(company_id)
        if entry is None or entry.fresh is None:
            return None
        if self._clock() >= entry.fresh_until:
            entry.fresh = None
            return None
        self._entries.move_to_end(company_id)
        return decode(entry.fresh)

    async def set(self, company_id: int, value: CachedValue, *, version: int | None) -> SetOutcome:
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

    async def last_known(self, company_id: int) -> CachedValue | None:
        entry = self._entries.get(company_id)
        return None if entry is None or entry.last is None else decode(entry.last)

    async def close(self) -> None:
        self._entries.clear()
