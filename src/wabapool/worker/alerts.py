"""The worker's part of the company's alerts: expired auto-recharge requests and the run-out forecast warning.

Both run with the reset check (every `RESET_CHECK_SECONDS`): expiring is an
index lookup that finds nothing nearly always; the forecast sweep reads every
company with recent spend, so it runs only every `FORECAST_CHECK_SECONDS`. It
warns days ahead (`forecast_warning_days`), so ten minutes late is on time.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog

from wabapool.service import BillingService
from wabapool.service.context import Clock

log = structlog.get_logger("wabapool.worker")
# The forecast's basis moves once a day and the warning looks days ahead: a sweep this often is in time.
FORECAST_CHECK_SECONDS = 600.0


class AlertSweeper:
    """Expires open top-up requests past 24 h and raises `balance_forecast_low`; the clock is injected."""

    def __init__(
        self,
        service: BillingService,
        *,
        clock: Clock | None = None,
        forecast_check_seconds: float = FORECAST_CHECK_SECONDS,
    ) -> None:
        self.service = service
        self.clock = clock or service.clock
        self.forecast_check_seconds = forecast_check_seconds
        self._next_forecast_check: datetime | None = None

    async def run_due(self) -> tuple[int, int]:
        """(requests expired, forecast warnings raised) by this round."""
        at = self.clock()
        expired = await self.service.expire_top_up_requests(at=at)
        warned = 0
        if self._next_forecast_check is None or at >= self._next_forecast_check:
            warned = await self.service.warn_forecast_low(at=at)
            self._next_forecast_check = at + timedelta(seconds=self.forecast_check_seconds)
        if expired or warned:
            log.info("alerts_swept", top_up_requests_expired=expired, forecast_warnings=warned)
        return expired, warned
