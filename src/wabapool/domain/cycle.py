"""Monthly billing cycles anchored on the package's start day, in the company's timezone.

An anchor day past the month's end (31 in February) falls on the month's last day.
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo


def _anchor_date(year: int, month: int, anchor_day: int) -> date:
    return date(year, month, min(anchor_day, calendar.monthrange(year, month)[1]))


def _shift_month(year: int, month: int, months: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + months
    return index // 12, index % 12 + 1


def _local_midnight_utc(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def cycle_start(at: datetime, *, anchor_day: int, timezone: str) -> datetime:
    """Start (UTC) of the cycle that contains `at`."""
    if not 1 <= anchor_day <= 31:
        raise ValueError("anchor_day is 1..31")
    zone = ZoneInfo(timezone)
    local = at.astimezone(zone)
    year, month = local.year, local.month
    start = _local_midnight_utc(_anchor_date(year, month, anchor_day), zone)
    if at < start:
        year, month = _shift_month(year, month, -1)
        start = _local_midnight_utc(_anchor_date(year, month, anchor_day), zone)
    return start


def next_cycle_start(start: datetime, *, anchor_day: int, timezone: str) -> datetime:
    """Start (UTC) of the cycle after the one starting at `start`."""
    zone = ZoneInfo(timezone)
    local = start.astimezone(zone)
    year, month = _shift_month(local.year, local.month, 1)
    return _local_midnight_utc(_anchor_date(year, month, anchor_day), zone)


def cycle_bounds(at: datetime, *, anchor_day: int, timezone: str) -> tuple[datetime, datetime]:
    """[start, end) of the cycle containing `at`."""
    start = cycle_start(at, anchor_day=anchor_day, timezone=timezone)
    return start, next_cycle_start(start, anchor_day=anchor_day, timezone=timezone)


def missed_cycle_starts(
    current_start: datetime, at: datetime, *, anchor_day: int, timezone: str, limit: int
) -> list[datetime]:
    """Starts of every cycle that began after `current_start` and by `at`, oldest first."""
    starts: list[datetime] = []
    following = next_cycle_start(current_start, anchor_day=anchor_day, timezone=timezone)
    while following <= at:
        if len(starts) >= limit:
            raise ValueError(f"more than {limit} missed cycles: the clock or the data is wrong")
        starts.append(following)
        following = next_cycle_start(following, anchor_day=anchor_day, timezone=timezone)
    return starts
