"""The monthly reset in the worker: every pool at its cycle boundary, in its company's timezone.

Exactly once per company and cycle however many workers run: `BillingService.reset_cycles` resets
each pool under its row lock and only if its cycle has ended, the reset's statement is unique per
(company, cycle start) and the `cycle_reset` event per company and cycle. Cycles missed while no
worker ran are caught up one by one (each gets its event and statement). A cheap query first asks
whether any pool is due, so an idle worker locks nothing.
"""

from __future__ import annotations

import structlog

from wabapool import metrics
from wabapool.service import BillingService
from wabapool.service.context import Clock

log = structlog.get_logger("wabapool.worker")


class CycleScheduler:
    """Runs due cycle resets; the clock is injected."""

    def __init__(self, service: BillingService, *, clock: Clock | None = None) -> None:
        self.service = service
        self.clock = clock or service.clock

    async def run_due(self) -> dict[int, int]:
        """Reset every pool whose cycle has ended; returns cycles reset per company (by this worker)."""
        at = self.clock()
        if not await self.service.any_cycle_due(at=at):
            return {}
        reset = await self.service.reset_cycles(at=at)
        if reset:
            metrics.CYCLE_RESETS.inc(sum(reset.values()))
            log.info("cycles_reset", companies=len(reset), cycles=sum(reset.values()))
        return reset
