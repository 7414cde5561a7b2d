"""Spend and messages per day (company timezone) and per WABA, from the daily roll-up; for the page's chart."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from wabapool.domain import cycle
from wabapool.domain.errors import BillingError, Rejection
from wabapool.storage import pools as pool_store
from wabapool.storage import usage as usage_store
from wabapool.storage.types import Record

# A year and a bit: the page asks for a cycle; a longer period is a report, not a chart.
USAGE_DAYS_MAX = 400


@dataclass(frozen=True, slots=True)
class WabaUsage:
    waba_id: str
    amount: int
    messages: int


@dataclass(frozen=True, slots=True)
class UsageDay:
    day: date
    amount: int
    messages: int
    by_waba: list[WabaUsage]


@dataclass(frozen=True, slots=True)
class UsageSeries:
    currency: str
    days: list[UsageDay]


def _as_day(value: date | datetime, timezone: str) -> date:
    """A date as it is; a time as its day in the company's timezone."""
    if isinstance(value, datetime):
        return usage_store.local_day(value, timezone)
    return value


def days_between(first_day: date, last_day: date) -> list[date]:
    return [first_day + timedelta(days=offset) for offset in range((last_day - first_day).days + 1)]


def usage_days(rows: list[Record], first_day: date, last_day: date) -> list[UsageDay]:
    """Every day of the period (empty ones too, so a chart has no gaps), WABAs by id within a day."""
    by_day: dict[date, list[WabaUsage]] = defaultdict(list)
    for row in rows:
        by_day[row.day].append(WabaUsage(row.waba_id, int(row.spent_minor), int(row.messages)))
    return [
        UsageDay(
            day,
            sum(w.amount for w in by_day.get(day, [])),
            sum(w.messages for w in by_day.get(day, [])),
            by_day.get(day, []),
        )
        for day in days_between(first_day, last_day)
    ]


async def usage_period(
    connection: AsyncConnection,
    company: Record,
    now: datetime,
    since: date | datetime | None,
    until: date | datetime | None,
) -> tuple[date, date]:
    """The days asked for, both ends included; by default the current cycle (the calendar month without one)."""
    timezone = company.timezone
    # The pool's cycle, or a v2 company's first package's (their anchor days are the company's terms).
    packages = await pool_store.company_packages(connection, company.company_id, for_update=False)
    pool = packages[0] if packages else None
    if pool is not None:
        starts_at, ends_at = cycle.cycle_bounds(now, anchor_day=pool.state.anchor_day, timezone=timezone)
        cycle_first, cycle_last = (
            usage_store.local_day(starts_at, timezone),
            usage_store.local_day(ends_at, timezone) - timedelta(days=1),
        )
    else:
        today = usage_store.local_day(now, timezone)
        cycle_first = today.replace(day=1)
        cycle_last = (cycle_first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    first_day = _as_day(since, timezone) if since is not None else cycle_first
    last_day = _as_day(until, timezone) if until is not None else max(cycle_last, first_day)
    if first_day > last_day:
        raise BillingError(Rejection.INVALID_REQUEST, "from is after to", {"field": "from"})
    if (last_day - first_day).days + 1 > USAGE_DAYS_MAX:
        raise BillingError(
            Rejection.INVALID_REQUEST, f"a usage period is at most {USAGE_DAYS_MAX} days", {"field": "to"}
        )
    return first_day, last_day
