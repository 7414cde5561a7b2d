"""The companies whose pool another writer got to first, remembered for a moment, per process.

A lone deduction tried without the lock (`deductions.DeductionGroups`) pays a
wasted read and decision when its guarded write finds the pool moved: another
process, or a top-up, wrote it in between. Where that happens the pool is
busy, and there the lock is the cheaper path (measured: one pool with 64
senders over two processes charged 0.63x as fast when every group of one
company tried the guarded write first). So such a company's deductions take
the lock for a moment, then try without it again.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

# How long a company whose guarded write found its pool moved takes the lock. Long enough that a pool busy
# with several senders pays the wasted attempt about once a second (against hundreds of deductions), short
# enough that a pool that went quiet is back on the two-round-trip path within a second.
CONTENDED_SECONDS = 1.0
# Companies remembered at once: a few dozen bytes each; past it the oldest is forgotten (it then costs one
# wasted attempt, never a wrong write).
MAX_CONTENDED_COMPANIES = 10_000


class ContendedPools:
    """Which companies' pools were found moved under a guarded write within the last `seconds`."""

    def __init__(
        self,
        *,
        seconds: float | None = None,
        max_companies: int = MAX_CONTENDED_COMPANIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._seconds = CONTENDED_SECONDS if seconds is None else seconds
        self._max_companies = max_companies
        self._clock = clock
        self._until: OrderedDict[int, float] = OrderedDict()

    def contended(self, company_id: int) -> bool:
        """Whether the company's pool was found moved within the last `seconds`."""
        until = self._until.get(company_id)
        if until is None:
            return False
        if self._clock() < until:
            return True
        del self._until[company_id]
        return False

    def found_moved(self, company_id: int) -> None:
        """Another writer changed the company's pool between a read and its guarded write."""
        self._until[company_id] = self._clock() + self._seconds
        self._until.move_to_end(company_id)
        while len(self._until) > self._max_companies:
            self._until.popitem(last=False)
