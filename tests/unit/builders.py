"""Small builders for domain tests: plain data, no database."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from wabapool.domain import cycle, operations
from wabapool.domain.operations import PoolState
from wabapool.domain.pool import Buckets

JAKARTA = "Asia/Jakarta"
COMPANY_ID = 7
# 2026-11-10 10:00 in Jakarta; the cycle anchored on day 1 started 2026-11-01 00:00 WIB = 2026-10-31 17:00 UTC.
NOW = datetime(2026, 11, 10, 3, 0, tzinfo=UTC)
NOVEMBER_START = datetime(2026, 10, 31, 17, 0, tzinfo=UTC)
DECEMBER_START = datetime(2026, 11, 30, 17, 0, tzinfo=UTC)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def opened_pool(
    *,
    allowance: int = 1000,
    postpaid_limit: int = 500,
    anchor_day: int = 1,
    threshold: Decimal | None = None,
    at: datetime = NOW,
) -> PoolState:
    """A pool as `open_pool` creates it: the first cycle's allowance granted."""
    return operations.open_pool(
        company_id=COMPANY_ID,
        allowance_minor=allowance,
        postpaid_limit_minor=postpaid_limit,
        anchor_day=anchor_day,
        timezone=JAKARTA,
        threshold_percent=threshold,
        at=at,
    ).state


def pool_state(
    *,
    initial_allowance: int = 1000,
    initial: int = 1000,
    additional: int = 0,
    postpaid_limit: int = 500,
    postpaid_used: int = 0,
    funded_base: int | None = None,
    threshold: Decimal | None = None,
    cycle_start: datetime = NOVEMBER_START,
    armed: bool = True,
) -> PoolState:
    """A pool in the November 2026 cycle with the given bucket figures."""
    return PoolState(
        company_id=COMPANY_ID,
        buckets=Buckets(
            initial_allowance=initial_allowance,
            initial_remaining=initial,
            additional_remaining=additional,
            postpaid_limit=postpaid_limit,
            postpaid_used=postpaid_used,
            initial_used=max(initial_allowance - initial, 0),
        ),
        cycle_start=cycle_start,
        cycle_end=cycle.next_cycle_start(cycle_start, anchor_day=1, timezone=JAKARTA),
        anchor_day=1,
        timezone=JAKARTA,
        funded_base_minor=initial_allowance + additional if funded_base is None else funded_base,
        low_balance_armed=armed,
        threshold_percent=threshold,
    )
